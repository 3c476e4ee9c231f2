"""3D distillation end to end on tiny real data: sample shoes -> visual-hull cache -> training runs."""
from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import pytest
import torch

from engine import runs, storage
from engine.cli.train import RunContext
from engine.config import UserError
from engine.jobs import NULL_CONTEXT, JobCancelled, JobRunner
from engine.students.checkpoint import load_checkpoint, load_student
from engine.students.mesh_student import KIND, MeshStudent
from engine.train.distill3d import TrainingDiverged, train_student

torch.set_num_threads(1)
TINY = {"width": 4, "hidden": 16, "blocks": 1, "sampled": 8, "image_size": 32}


@pytest.fixture(scope="module")
def tiny(tiny_vh):
    """5 procedural shoes and their visual-hull cache (fast preset): conftest's ``tiny_vh``."""
    return tiny_vh


def base_cfg(tiny: Path, **kw) -> dict:
    cfg = {"data": str(tiny / "data"), "cache": str(tiny / "cache"), "epochs": 2, "batch_size": 2, "n_points": 800,
           "target_points": 800, "val_fraction": 0.4, "seed": 3, "checkpoint_every": 1, "student": TINY}
    cfg.update(kw)
    return cfg


class CancelAfter(RunContext):
    """A run context that asks to cancel once ``steps`` step records were written."""

    def __init__(self, run_dir, steps: int):
        super().__init__(run_dir, quiet=True)
        self.steps, self.seen = steps, 0

    def metric(self, record):
        super().metric(record)
        self.seen += record.get("scope") == "step"

    def cancelled(self):
        return self.seen >= self.steps

    def check_cancelled(self):
        if self.cancelled():
            raise JobCancelled("cancelled by the test")


def new_run(root: Path, cfg: dict) -> Path:
    return runs.create_run("train3d", cfg, root=root)


def numbers(run_dir: Path) -> list[dict]:
    return runs.without_timings(runs.read_history(run_dir))


@pytest.fixture(scope="module")
def trained(tiny, tmp_path_factory):
    """One uninterrupted 2-epoch distilled run and a 2-epoch baseline run on the same data."""
    root = tmp_path_factory.mktemp("runs")
    cfg = base_cfg(tiny)
    run = new_run(root, cfg)
    result = train_student(RunContext(run, quiet=True), cfg)
    bcfg = base_cfg(tiny, baseline=True)
    base = new_run(root, bcfg)
    bresult = train_student(RunContext(base, quiet=True), bcfg)
    return {"root": root, "run": run, "result": result, "base": base, "bresult": bresult, "cfg": cfg}


def test_run_writes_history_and_checkpoints_in_the_agreed_format(trained):
    run, result = trained["run"], trained["result"]
    assert result["last_epoch"] == 2 and result["train"] == 3 and result["val"] == 2
    hist = runs.read_history(run)
    steps = [r for r in hist if r["scope"] == "step"]
    epochs = [r for r in hist if r["scope"] == "epoch"]
    assert len(steps) == 4 and [r["epoch"] for r in epochs] == [1, 2]
    for key in ("loss", "cd", "cd_teacher", "cd_gt", "edge", "smooth", "alpha", "lr", "seconds", "step", "epoch"):
        assert all(key in r for r in steps), key
    assert [r["alpha"] for r in epochs] == [0.9, 0.3]  # default schedule over 2 epochs
    for key in ("val_cd_l1", "val_cd_l2", "val_fscore@1%", "val_fscore@2%", "val_normal_consistency", "seconds_per_step"):
        assert all(isinstance(r[key], float) for r in epochs), key
    ck = load_checkpoint(run / "checkpoints" / "last.pt")
    assert {"kind", "student_config", "train_config", "state_dict", "optimizer", "epoch", "best_val"} <= set(ck)
    assert ck["kind"] == KIND and ck["epoch"] == 2 and ck["train_config"]["lr"] == 1e-3
    assert ck["best_val"] == min(r["val_cd_l1"] for r in epochs)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.pt", "epoch_0001.pt", "epoch_0002.pt", "last.pt"]
    torch.load(run / "checkpoints" / "best.pt", weights_only=True)  # plain data only
    model, _ = load_student(run / "checkpoints" / "best.pt")
    assert model(torch.rand(1, 4, 4, 32, 32)).shape == (1, 2562, 3)


def test_resume_from_last_continues_with_identical_numbers(trained, tiny):
    cfg1 = base_cfg(tiny, epochs=1)
    run = new_run(trained["root"], cfg1)
    train_student(RunContext(run, quiet=True), cfg1)
    assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] == 1
    train_student(RunContext(run, quiet=True), base_cfg(tiny, epochs=2, resume=True))
    assert numbers(run) == numbers(trained["run"])
    a = load_checkpoint(run / "checkpoints" / "last.pt")["state_dict"]
    b = load_checkpoint(trained["run"] / "checkpoints" / "last.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in b)


def test_cancel_stops_at_the_next_step_and_resume_matches_the_uninterrupted_run(trained, tiny):
    cfg = trained["cfg"]
    run = new_run(trained["root"], cfg)
    with pytest.raises(JobCancelled):
        train_student(CancelAfter(run, steps=3), cfg)  # epoch 1 has 2 steps: stops after step 1 of epoch 2
    assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] == 1
    assert [r["epoch"] for r in runs.read_history(run) if r["scope"] == "step"] == [1, 1, 2]
    train_student(RunContext(run, quiet=True), {**cfg, "resume": True})  # history truncated to epoch 1
    assert numbers(run) == numbers(trained["run"])
    with pytest.raises(UserError, match="differs from the checkpoint's in lr"):
        train_student(RunContext(run, quiet=True), {**cfg, "lr": 0.01, "resume": True})


def test_train_student_runs_as_a_job(tiny, tmp_path):
    cfg = base_cfg(tiny, epochs=1)
    runner = JobRunner(runs_root=tmp_path)
    job = runner.submit(functools.partial(train_student, config=cfg), kind="train3d", config=cfg)
    snap = runner.wait(job, timeout=300)
    assert snap["state"] == "succeeded", snap["error"]
    assert runner.result(job)["last_epoch"] == 1
    run = tmp_path / job
    assert [r["scope"] for r in runs.read_history(run)].count("epoch") == 1
    assert (run / "checkpoints" / "last.pt").is_file()


def test_photo_only_shoes_use_the_teacher_alone_and_failed_teachers_the_gt_alone(tiny, tmp_path):
    data, cache = tmp_path / "data", tmp_path / "cache"
    shutil.copytree(tiny / "data", data)
    shutil.copytree(tiny / "cache", cache)
    (data / "OBJs" / "shoe_004.obj").unlink()  # photo-only
    meta = json.loads((cache / "metadata.json").read_text())
    meta["entries"]["shoe_002"].update(status="failed", error="no zero crossing")  # teacher failed
    storage.write_json(cache / "metadata.json", meta)
    cfg = base_cfg(tiny, data=str(data), cache=str(cache), epochs=1, batch_size=1, val_fraction=0.25, seed=1)
    run = new_run(tmp_path / "runs", cfg)
    result = train_student(RunContext(run, quiet=True), cfg)
    assert result["counts"]["teacher_only"] == 1 and result["counts"]["gt_only"] == 1
    log = (run / "log.txt").read_text()
    assert "shoe_002: teacher entry failed (no zero crossing)" in log
    steps = [r for r in runs.read_history(run) if r["scope"] == "step"]
    assert len(steps) == result["train"] == 4  # 5 shoes, 1 of the 4 GT shoes held out
    photo = [r for r in steps if r["cd_gt"] is None]
    gt_only = [r for r in steps if r["cd_teacher"] is None]
    train_ids = load_checkpoint(run / "checkpoints" / "last.pt")["split"]["train"]
    assert {"shoe_002", "shoe_004"} <= set(train_ids)
    assert len(photo) == 1 and photo[0]["alpha_batch"] == 1.0
    assert photo[0]["cd"] == pytest.approx(photo[0]["cd_teacher"])  # teacher term alone
    assert len(gt_only) == 1 and gt_only[0]["alpha_batch"] == 0.0
    assert gt_only[0]["cd"] == pytest.approx(gt_only[0]["cd_gt"])  # GT term alone
    # the baseline on the same data: GT alone, the photo-only shoe left out, the same val split
    bcfg = {**cfg, "baseline": True}
    brun = new_run(tmp_path / "runs", bcfg)
    bres = train_student(RunContext(brun, quiet=True), bcfg)
    assert bres["train"] == 3 and "1 photo-only shoe(s) left out" in (brun / "log.txt").read_text()
    bsteps = [r for r in runs.read_history(brun) if r["scope"] == "step"]
    assert all(r["alpha_batch"] == 0.0 and r["cd_teacher"] is None for r in bsteps)
    bsplit = load_checkpoint(brun / "checkpoints" / "last.pt")["split"]
    assert bsplit["val"] == load_checkpoint(run / "checkpoints" / "last.pt")["split"]["val"]


def test_overfits_one_shoe(tiny, tmp_path):
    one = tmp_path / "one"
    (one / "OBJs").mkdir(parents=True)
    shutil.copy(tiny / "data" / "OBJs" / "shoe_000.obj", one / "OBJs")
    shutil.copytree(tiny / "data" / "input_images" / "shoe_000", one / "input_images" / "shoe_000")
    cfg = base_cfg(tiny, data=str(one), epochs=80, batch_size=1, val_fraction=0.0, chamfer_norm=2, n_points=2000,
                   target_points=2000, checkpoint_every=0, student={**TINY, "hidden": 32})
    ctx = RunContext(None, quiet=True)
    seen = []
    ctx.metric = seen.append
    result = train_student(ctx, cfg)
    losses = [r["loss"] for r in seen if r["scope"] == "step"]
    assert len(losses) == 80 and result["best_metric"] == "train_loss"
    assert losses[0] / min(losses[-5:]) >= 10, (losses[0], losses[-5:])


def test_nan_guard_skips_bad_steps_and_stops_after_repeated_ones(tiny, tmp_path, monkeypatch):
    forward = MeshStudent.forward
    calls = {"n": 0}

    def sometimes_nan(self, views):
        out = forward(self, views)
        calls["n"] += 1
        return out * float("nan") if self.training and calls["n"] in bad else out

    monkeypatch.setattr(MeshStudent, "forward", sometimes_nan)
    bad = {2}
    cfg = base_cfg(tiny, epochs=1, val_fraction=0.0, batch_size=1)
    run = new_run(tmp_path, cfg)
    train_student(RunContext(run, quiet=True), cfg)
    steps = [r for r in runs.read_history(run) if r["scope"] == "step"]
    assert [r.get("skipped", False) for r in steps] == [False, True, False, False, False]
    assert "non-finite loss or gradients, step skipped" in (run / "log.txt").read_text()
    bad = set(range(1, 100))
    with pytest.raises(TrainingDiverged, match="3 non-finite steps in a row"):
        train_student(RunContext(None, quiet=True), {**cfg, "max_nan_steps": 3})


def test_bad_inputs_raise_user_errors(tiny, tmp_path):
    with pytest.raises(UserError, match="no teacher cache here"):
        train_student(NULL_CONTEXT, base_cfg(tiny, cache=str(tmp_path / "nope")))
    with pytest.raises(UserError, match="dataset folder not found"):
        train_student(NULL_CONTEXT, base_cfg(tiny, data=str(tmp_path / "nope")))
    bad = tmp_path / "vae.pt"
    storage.torch_save(bad, {"kind": "tiny-vae", "state_dict": {}})
    with pytest.raises(UserError, match="not a mesh-student checkpoint"):
        load_checkpoint(bad)
    run = new_run(tmp_path, base_cfg(tiny))
    with pytest.raises(UserError, match="last.pt: no such file"):
        train_student(RunContext(run, quiet=True), base_cfg(tiny, resume=True))
