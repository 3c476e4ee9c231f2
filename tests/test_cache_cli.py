"""CLI: ``teacher test|list`` and ``cache build|show`` end to end on tiny data (in-process)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from engine.cli import main
from engine.jobs import NULL_CONTEXT


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from engine.data.sample_shoes import build_sample

    root = tmp_path_factory.mktemp("data")
    build_sample(NULL_CONTEXT, root, count=2, seed=0)
    return root


def test_teacher_test_writes_each_format(data, tmp_path, capsys):
    from engine.data.layout import load_mesh

    out = tmp_path / "m.obj"
    assert main(["teacher", "test", "--shoe", "shoe_001", "--data", str(data), "--preset", "fast", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    v, f = load_mesh(out)
    assert f"{len(v)} vertices, {len(f)} faces" in text and "seconds" in text
    assert np.abs(v).max() <= 0.5 + 1e-5
    views = data / "input_images" / "shoe_000"
    for ext in ("glb", "ply", "stl"):
        path = tmp_path / f"m.{ext}"
        assert main(["teacher", "test", "--images", str(views / "front.png"), str(views / "left.png"),
                     "--preset", "fast", "--out", str(path)]) == 0
        assert path.stat().st_size > 1000
    assert main(["teacher", "test", "--front", str(views / "front.png"), "--right", str(views / "right.png"),
                 "--preset", "fast", "--out", str(tmp_path / "n.obj")]) == 0


def test_teacher_errors_are_one_line(data, tmp_path, capsys, monkeypatch):
    assert main(["teacher", "test", "--out", str(tmp_path / "x.obj")]) == 2
    assert "give exactly one input" in capsys.readouterr().err
    assert main(["teacher", "test", "--shoe", "shoe_000", "--data", str(data), "--out", str(tmp_path / "x.fbx")]) == 2
    assert "unknown mesh format" in capsys.readouterr().err
    assert main(["teacher", "test", "--shoe", "nope", "--data", str(data), "--out", str(tmp_path / "x.obj")]) == 2
    assert "not found" in capsys.readouterr().err
    models = tmp_path / "models"
    monkeypatch.setenv("HY3DGEN_MODELS", str(models))
    assert main(["teacher", "test", "--teacher", "hunyuan3d-2mv", "--shoe", "shoe_000", "--data", str(data),
                 "--out", str(tmp_path / "x.obj")]) == 2
    err = capsys.readouterr().err
    assert str(models / "tencent" / "Hunyuan3D-2mv" / "hunyuan3d-dit-v2-mv") in err and err.strip().count("\n") == 0  # one line (after the open progress bar)
    assert not (tmp_path / "x.obj").exists()
    assert main(["teacher", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0] == {"name": "visual-hull", "available": True, "reason": "embedded (CPU, no weights needed)"}


def test_cache_build_and_show(data, tmp_path, capsys):
    out = tmp_path / "cache"
    assert main(["cache", "build", "--data", str(data), "--preset", "fast", "--first", "1", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "MB written" in text and "entries  1: 1 ok, 0 failed" in text and "mean CD-L1" in text
    assert main(["cache", "build", "--data", str(data), "--preset", "fast", "--ids", "shoe_001", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["cache", "show", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["entries"], summary["ok"], summary["with_gt"]) == (2, 2, 2)
    assert [r["id"] for r in summary["rows"]] == ["shoe_000", "shoe_001"]
    assert all(r["status"] == "ok" and r["cd_l1"] > 0 and r["seconds"] > 0 and r["error"] is None for r in summary["rows"])
    assert main(["cache", "show", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "STATUS", "CD-L1", "F@1%", "SECONDS", "ERROR"]
    row = lines[2].split()
    assert row[:2] == ["shoe_001", "ok"] and float(row[2]) == pytest.approx(summary["rows"][1]["cd_l1"], abs=1e-4)
    assert main(["cache", "show", str(tmp_path / "nothing")]) == 2
