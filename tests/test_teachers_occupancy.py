"""The learned teacher: coarse-to-fine surface extraction, a tiny teacher pre-trained in seconds, its
weights' failure modes, its feature hook and, when shipped, the shipped weights' recorded figure."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from engine.data.corpus import build_corpus, corpus_shoe, corpus_shoes
from engine.geometry.implicit import extract_surface, refine_grid
from engine.config import UserError
from engine.jobs import NULL_CONTEXT, JobCancelled
from engine.teachers.base import TeacherSettings, TeacherUnavailable, teacher_availability
from engine.teachers.occupancy import ASSET, OccupancyTeacher, load_weights, predict_mesh
from engine.teachers.occupancy_net import OccupancyConfig, OccupancyNet, count_parameters
from engine.train.teacher_pretrain import pretrain_teacher, validate_teacher

from tests.conftest import TINY_TEACHER as TINY
from tests.conftest import Recording


def test_refined_grid_meshes_a_sphere_with_few_evaluations():
    """A sphere of radius 0.3 at 64 cells: every vertex within 0.002 of it, watertight, outward (positive
    volume), and far fewer than 65^3 evaluations."""
    def fn(p):
        return 0.3 - p.norm(dim=-1)

    verts, faces, evaluated = extract_surface(fn, [-0.5] * 3, [0.5] * 3, 64, levels=2)
    r = np.linalg.norm(verts, axis=1)
    assert np.abs(r - 0.3).max() < 0.002
    mesh = trimesh.Trimesh(verts, faces)
    assert mesh.is_watertight and mesh.volume > 0
    assert evaluated < 0.4 * 65 ** 3
    dense, _ = refine_grid(fn, [-0.5] * 3, [0.5] * 3, 64, levels=0)
    fine, _ = refine_grid(fn, [-0.5] * 3, [0.5] * 3, 64, levels=2)
    assert ((dense > 0) == (fine > 0)).all()  # same signs everywhere as the dense grid
    empty = extract_surface(lambda p: -torch.ones(len(p)), [-0.5] * 3, [0.5] * 3, 16, levels=1)
    assert empty[0].shape == (0, 3) and empty[1].shape == (0, 3)


def test_full_size_network_is_ten_times_the_student():
    from engine.students.mesh_student import MeshStudent
    from engine.students.mesh_student import count_parameters as student_params

    assert count_parameters(OccupancyNet()) >= 10 * student_params(MeshStudent())


@pytest.fixture(scope="module")
def tiny_weights(tiny_teacher):
    """conftest's tiny teacher (6-shoe corpus, 2 epochs) as (folder, result, records)."""
    return tiny_teacher


def test_pretrain_writes_weights_history_and_resumes_to_the_same_weights(tiny_weights, tmp_path):
    base, result, records = tiny_weights
    assert [r["epoch"] for r in records if r.get("scope") == "epoch"] == [1, 2]
    assert records[-1]["scope"] == "final" and 0 <= result["val_iou"] <= 1
    model, ckpt = load_weights(base / "w.pt")
    assert ckpt["record"]["train_shoes"] == 4 and "teacher pretrain" in ckpt["record"]["command"]
    cfg = {"corpus": str(base / "corpus"), "out": str(tmp_path / "r.pt"), "val_shoes": 2, "batch_size": 2,
           "queries": 256, "val_resolution": 16, "model": TINY, "epochs": 2}
    pretrain_teacher(Recording(tmp_path / "whole"), cfg)
    whole, _ = load_weights(tmp_path / "r.pt")
    (tmp_path / "r.pt").unlink()
    stopped = Recording(tmp_path / "run")
    stopped.cancelled = lambda: len(stopped.records) >= 1  # stop at the first step of epoch 2
    with pytest.raises(JobCancelled):
        pretrain_teacher(stopped, cfg)
    assert not (tmp_path / "r.pt").exists()
    pretrain_teacher(Recording(tmp_path / "run"), {**cfg, "resume": True})
    resumed, _ = load_weights(tmp_path / "r.pt")
    for key, value in whole.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    with pytest.raises(UserError, match="nothing to resume"):
        pretrain_teacher(Recording(tmp_path / "fresh"), {**cfg, "resume": True})


def test_teacher_predicts_a_mesh_and_exposes_features_through_the_hook(tiny_weights, monkeypatch):
    base, _, _ = tiny_weights
    monkeypatch.setenv("DS_OCCUPANCY_WEIGHTS", str(base / "w.pt"))
    teacher = OccupancyTeacher()
    shoe = corpus_shoe(corpus_shoes(["sneaker"], 1, 9)[0][1], 9, 0, 64, 16)
    views = {name: shoe["views"][k].permute(1, 2, 0).numpy() for k, name in enumerate(("front", "left", "back", "right"))}
    model, _ = load_weights(base / "w.pt")
    # the tiny teacher may not have learnt a surface; the hull prior makes one at random weights too
    result = teacher.predict(views, TeacherSettings(octree_resolution=16))
    assert result.vertices.shape[1] == 3 and len(result.faces) > 0
    assert result.features.dtype == np.float16 and result.features.shape == (4, 8 * TINY["width"], 4, 4)
    fp = teacher.fingerprint_settings(TeacherSettings(octree_resolution=16))
    assert fp["grid"] == 16 and len(fp["weights"]) == 16
    row = next(r for r in teacher_availability() if r["name"] == "occupancy")
    assert row["available"]


def test_bad_weights_say_which_file_and_what_to_run(tmp_path, tiny_weights):
    base, _, _ = tiny_weights
    with pytest.raises(TeacherUnavailable, match="not found.*teacher pretrain"):
        load_weights(tmp_path / "missing.pt")
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes((base / "w.pt").read_bytes()[:500])
    with pytest.raises(TeacherUnavailable, match="trunc.pt.*teacher pretrain"):
        load_weights(trunc)
    ckpt = torch.load(base / "w.pt", weights_only=True)
    for name, change, message in (("kind.pt", {"kind": "mesh-student"}, "not occupancy-teacher weights"),
                                  ("arch.pt", {"config": {**ckpt["config"], "width": 6}}, "do not fit"),
                                  ("cam.pt", {"camera": {**ckpt["camera"], "ortho_extent": 2.0}}, "camera convention")):
        torch.save({**ckpt, **change}, tmp_path / name)
        with pytest.raises(TeacherUnavailable, match=message):
            load_weights(tmp_path / name)


@pytest.mark.skipif(not ASSET.is_file(), reason="no shipped teacher weights")
def test_shipped_weights_reproduce_their_recorded_validation():
    """The shipped file's record names its corpus and held-out shoes; rebuild two of them and mesh them
    again: the per-shoe CD-L1 matches the recorded one (same code, same numbers, to 2 %)."""
    model, ckpt = load_weights(ASSET)
    rec = ckpt["record"]
    settings = rec["corpus"]
    shoes = corpus_shoes(settings["families"], settings["count"], settings["seed"])
    rows = []
    for k, idx in enumerate(rec["held_out"][:2]):
        d = corpus_shoe(shoes[idx][1], settings["seed"], idx, settings["image_size"], settings["n_query"])
        got = validate_teacher(model, d["views"][None], d["surface"][None], rec["val_resolution"])[0]
        rows.append((got["cd_l1"], rec["val_per_shoe"][k]["cd_l1"]))
    for got, want in rows:
        assert got == pytest.approx(want, rel=0.02)
    assert rec["val_cd_l1"] is not None and rec["val_cd_l1"] < 0.02
