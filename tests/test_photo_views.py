"""Photo-style training views (``engine.train.photo_views``): made from a shoe's renders through the photo
pipeline, swapped into training batches, stored in the run folder and reused on resume."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_train3d_cli import only_run, run_cli
from test_train3d_run import base_cfg, tiny  # noqa: F401  (module fixture reused)

from engine.config import UserError
from engine.data.layout import list_shoes, load_views
from engine.train.distill_config import resume_mismatch, validate_config
from engine.train.photo_views import FILE, load_or_build, make_versions, swap_views


def test_versions_are_framed_photo_views_of_the_shoe(tiny):  # noqa: F811
    shoe = list_shoes(tiny / "data")[0]
    views = load_views(shoe)
    versions = make_versions(views, 2, 32, np.random.default_rng(0))
    assert len(versions) == 2
    for v in versions:
        assert v.shape == (4, 4, 32, 32) and v.dtype == torch.uint8
        alpha = v[:, 3] > 0  # (4, 32, 32)
        assert all(0.05 < float(a.float().mean()) < 0.9 for a in alpha)  # every view shows the shoe, framed
    assert not torch.equal(versions[0], versions[1])  # other backgrounds, tilts and scales


def test_swap_views_swaps_with_the_probability_and_leaves_unknown_shoes():
    views = torch.zeros(3, 4, 4, 8, 8, dtype=torch.uint8)
    table = {"ids": ["a", "b"], "views": torch.stack([torch.full((1, 4, 4, 8, 8), 7, dtype=torch.uint8),
                                                      torch.full((1, 4, 4, 8, 8), 9, dtype=torch.uint8)]),
             "made": torch.tensor([True, False])}
    gen = torch.Generator().manual_seed(0)
    out = swap_views(views, ["a", "b", "c"], table, 1.0, gen)
    assert int(out[0].max()) == 7 and int(out[1].max()) == 0 and int(out[2].max()) == 0  # b: none made; c: unknown
    assert int(views.max()) == 0  # the input is not changed
    assert int(swap_views(views, ["a"] * 3, table, 0.0, gen).max()) == 0
    half = [int(swap_views(views[:1], ["a"], table, 0.5, gen).max()) == 7 for _ in range(400)]
    assert 0.4 < np.mean(half) < 0.6


def test_config_checks_and_older_checkpoints_resume():
    cfg = validate_config({"data": "/x", "baseline": True, "photo_views": 2, "photo_prob": 0.25})
    assert cfg["photo_views"] == 2 and cfg["photo_prob"] == 0.25
    with pytest.raises(UserError, match="photo_prob must be a probability"):
        validate_config({"data": "/x", "baseline": True, "photo_prob": 1.5})
    with pytest.raises(UserError, match="photo_views must be an integer"):
        validate_config({"data": "/x", "baseline": True, "photo_views": -1})
    old = {k: v for k, v in validate_config({"data": "/x", "baseline": True}).items()
           if k not in ("photo_views", "photo_prob")}  # a checkpoint written before these keys existed
    assert resume_mismatch(old, validate_config({"data": "/x", "baseline": True})) == []
    assert resume_mismatch(old, cfg) == ["photo_prob", "photo_views"]


def test_cli_trains_with_photo_views_and_a_resume_reuses_them(tiny, tmp_path, capsys):  # noqa: F811
    cfg = base_cfg(tiny, epochs=1)
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(json.dumps({k: v for k, v in cfg.items() if k not in ("data", "cache")}))
    out = tmp_path / "runs"
    assert run_cli(["train", "--data", cfg["data"], "--cache", cfg["cache"], "--config", str(cfg_file),
                    "--photo-views", "1", "--out-runs", str(out), "--quiet"]) == 0
    run = only_run(out)
    saved = json.loads((run / "config.json").read_text())
    assert saved["photo_views"] == 1 and saved["photo_prob"] == 0.5
    table = torch.load(run / FILE, weights_only=True)
    assert table["views"].shape[1:] == (1, 4, 4, 32, 32) and bool(table["made"].all())
    assert "photo-style views: 3 of 3 shoes x 1 made" in (run / "log.txt").read_text()
    assert run_cli(["train", "--resume", run.name, "--epochs", "2", "--out-runs", str(out), "--quiet"]) == 0
    assert "photo-style views: reused" in (run / "log.txt").read_text()


def test_with_baseline_makes_the_photo_views_once(tiny, tmp_path):  # noqa: F811
    cfg = base_cfg(tiny, epochs=1)
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(json.dumps({k: v for k, v in cfg.items() if k not in ("data", "cache")}))
    out = tmp_path / "runs"
    assert run_cli(["train", "--data", cfg["data"], "--cache", cfg["cache"], "--config", str(cfg_file),
                    "--photo-views", "1", "--with-baseline", "--out-runs", str(out), "--quiet"]) == 0
    student = only_run(out, exclude={p.name for p in out.iterdir() if p.name.endswith("-baseline")})
    baseline = out / f"{student.name}-baseline"
    assert "made" in (student / "log.txt").read_text()
    assert "photo-style views: reused" in (baseline / "log.txt").read_text()
    assert json.loads((baseline / "config.json").read_text())["photo_views"] == 1


def test_an_unreadable_photo_views_file_is_made_again(tiny, tmp_path):  # noqa: F811
    from conftest import Recording

    class Logged(Recording):
        def __init__(self):
            super().__init__()
            self.logs = []

        def log(self, text):
            self.logs.append(text)

    sid = list_shoes(tiny / "data")[0].id
    (tmp_path / FILE).write_bytes(b"not a torch file")
    ctx = Logged()
    table = load_or_build(ctx, tmp_path, tiny / "data", [sid], 32, 1, 0)
    assert bool(table["made"].all()) and any("unreadable" in line for line in ctx.logs), ctx.logs
    assert torch.equal(torch.load(tmp_path / FILE, weights_only=True)["views"], table["views"])
