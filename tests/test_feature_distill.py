"""Feature-level distillation: the hook, the loss, teacher features in the cache (fp16, NaN -> failed
entry), lambda_feat on a cache without features, and a tiny distilled run with the term plotted."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine import runs
from engine.cache import build_cache, load_entry, read_metadata
from engine.config import UserError
from engine.data.sample_shoes import build_sample
from engine.jobs import NULL_CONTEXT
from engine.students.checkpoint import load_checkpoint
from engine.students.mesh_student import MeshStudent, StudentConfig
from engine.teachers.base import TeacherSettings, get_teacher
from engine.train.distill3d import train_student
from engine.train.feature_distill import FeatureHook, FeatureTargets, feature_loss, make_projector

torch.set_num_threads(1)
STUDENT = {"width": 4, "hidden": 16, "blocks": 1, "sampled": 8, "image_size": 32}


def test_hook_reads_the_student_without_changing_it():
    student = MeshStudent(StudentConfig(**STUDENT)).eval()
    views = torch.rand(2, 4, 4, 32, 32)
    with torch.no_grad():
        plain = student(views)
        with FeatureHook(student) as hook:
            hooked = student(views)
    assert torch.equal(plain, hooked)
    assert hook.output.shape == (8, 8 * STUDENT["width"], 2, 2)  # (B * 4, 8w, S/16, S/16)
    assert not student.encoder.down2._forward_hooks  # removed on exit


def test_feature_loss_standardises_masks_and_has_gradients():
    feats = torch.randn(5, 4, 6, 4, 4).half() * 7 + 3  # (N, 4, C_t, H, W)
    has = torch.tensor([True, True, False, True, True])
    targets = FeatureTargets(feats, has, (2, 2))
    assert targets.values.shape == (5, 4, 6, 2, 2) and targets.kind == "maps"
    kept = targets.values[has]
    assert kept.mean().abs() < 1e-4 and (kept.transpose(0, 2).reshape(6, -1).std(1) - 1).abs().max() < 1e-3
    proj = make_projector(3, targets)
    student = torch.randn(5 * 4, 3, 2, 2, requires_grad=True)  # (B * 4, C_s, h, w)
    loss = feature_loss(student, targets.values, has, proj)
    loss.backward()
    assert loss > 0 and student.grad.abs().sum() > 0 and proj.weight.grad.abs().sum() > 0
    assert float(feature_loss(student, targets.values, torch.zeros(5, dtype=torch.bool), proj).detach()) == 0.0
    tokens = FeatureTargets(torch.randn(3, 10, 6).half(), torch.ones(3, dtype=torch.bool), (2, 2))
    assert tokens.kind == "tokens" and tokens.values.shape == (3, 6)
    assert feature_loss(torch.randn(12, 3, 2, 2), tokens.values, torch.ones(3, dtype=torch.bool),
                        make_projector(3, tokens), "tokens") > 0


@pytest.fixture(scope="module")
def occ_data(tiny_teacher, tmp_path_factory):
    """5 sample shoes and their cache by the tiny occupancy teacher (features stored)."""
    base, _, _ = tiny_teacher
    root = tmp_path_factory.mktemp("featdist")
    build_sample(NULL_CONTEXT, root / "data", count=5, seed=0)
    mp = pytest.MonkeyPatch()
    mp.setenv("DS_OCCUPANCY_WEIGHTS", str(base / "w.pt"))
    build_cache(NULL_CONTEXT, root / "data", root / "cache", teacher="occupancy",
                settings=TeacherSettings(octree_resolution=16))
    build_cache(NULL_CONTEXT, root / "data", root / "vh", settings=TeacherSettings(preset="fast"))
    yield root
    mp.undo()


def test_cache_stores_fp16_features_fingerprinted(occ_data):
    meta = read_metadata(occ_data / "cache")
    assert meta["teacher_settings"]["features"] is True
    entry = meta["entries"]["shoe_000"]
    assert entry["status"] == "ok" and entry["features"] == [4, 32, 4, 4]
    data = load_entry(occ_data / "cache", "shoe_000")
    assert data["features"].dtype == torch.float16 and torch.isfinite(data["features"]).all()
    assert "features" not in read_metadata(occ_data / "vh")["teacher_settings"]


def test_nan_features_fail_the_entry_and_the_build_goes_on(occ_data, tmp_path, monkeypatch, tiny_teacher):
    monkeypatch.setenv("DS_OCCUPANCY_WEIGHTS", str(tiny_teacher[0] / "w.pt"))
    teacher = get_teacher("occupancy")
    real = teacher.predict

    def poisoned(views, settings=None):
        result = real(views, settings)
        if poisoned.calls == 1:
            result.features = np.full_like(result.features, np.nan)
        poisoned.calls += 1
        return result

    poisoned.calls = 0
    monkeypatch.setattr(teacher, "predict", poisoned)
    totals = build_cache(NULL_CONTEXT, occ_data / "data", tmp_path / "c", teacher="occupancy",
                         settings=TeacherSettings(octree_resolution=16))
    assert totals["failed"] == 1 and totals["done"] == 4
    failed = [e for e in read_metadata(tmp_path / "c")["entries"].values() if e["status"] == "failed"]
    assert "NaN" in failed[0]["error"]


def _cfg(root, cache, **kw):
    return {"data": str(root / "data"), "cache": str(root / cache), "epochs": 2, "batch_size": 2, "n_points": 400,
            "target_points": 400, "val_fraction": 0.4, "seed": 1, "checkpoint_every": 0, "student": STUDENT, **kw}


def test_lambda_feat_on_a_cache_without_features_is_a_clear_error(occ_data):
    with pytest.raises(UserError, match="have no features.*--teacher occupancy"):
        train_student(NULL_CONTEXT, _cfg(occ_data, "vh", lambda_feat=0.5))


def test_distilled_run_with_features_logs_the_term_and_resumes(occ_data, tmp_path):
    from engine.cli.train import RunContext

    cfg = _cfg(occ_data, "cache", lambda_feat=0.5)
    run = runs.create_run("train3d", cfg, root=tmp_path)
    result = train_student(RunContext(run, quiet=True), cfg)
    history = runs.read_history(run)
    epochs = [r for r in history if r.get("scope") == "epoch"]
    assert len(epochs) == 2 and all(r["feat"] > 0 for r in epochs)
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert set(ckpt["extra"]["projector"]) == {"weight", "bias"}
    assert result["best_val"] is not None
    again = train_student(RunContext(run, quiet=True), {**cfg, "epochs": 3, "resume": True})
    assert again["last_epoch"] == 3
