"""ONNX export of the 3D student, INT8, inference on photos and the infer / export CLIs (tiny model, tiny data)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import trimesh
from PIL import Image

from engine import runs, storage
from engine.cli import main as cli_main
from engine.cli.train import RunContext
from engine.config import UserError
from engine.data.layout import list_shoes
from engine.data.sample_shoes import build_sample
from engine.data.views import load_views_tensor
from engine.export import export_onnx, export_student, ort_session, parity, run_ort
from engine.export.mesh_student import (FACES_NAME, float_layers, INPUT_NAME, INT8_NAME, META_NAME, ONNX_NAME, OUTPUT_NAME,
                                        quantize_int8, recommend, sidecar_paths)
from engine.geometry.camera import VIEW_NAMES
from engine.infer import infer, load_predictor, views_from_photos
from engine.jobs import NULL_CONTEXT
from engine.students.checkpoint import load_student
from engine.students.mesh_student import MeshStudent, StudentConfig
from engine.train.distill_config import STUDENT_PRESETS
from engine.train.distill3d import train_student

torch.set_num_threads(1)
TINY = {"width": 4, "hidden": 8, "blocks": 1, "sampled": 4, "image_size": 32}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """4 procedural shoes and a 1-epoch GT-only (baseline) run of a tiny student with 2 val shoes."""
    root = tmp_path_factory.mktemp("export3d")
    build_sample(NULL_CONTEXT, root / "data", count=4, seed=0)
    cfg = {"data": str(root / "data"), "baseline": True, "epochs": 1, "batch_size": 2, "n_points": 300,
           "target_points": 300, "val_fraction": 0.5, "seed": 1, "device": "cpu", "student": TINY}
    run = runs.create_run("train3d", cfg, root=root / "runs")
    train_student(RunContext(run, quiet=True), cfg)
    return {"root": root, "run": run, "data": root / "data"}


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    out = tmp_path_factory.mktemp("exported")
    report = export_student(NULL_CONTEXT, trained["run"], out_dir=out, int8=True, threads=1, repeats=1, rounds=1)
    return {"out": out, "report": report}


def cli(argv, capsys) -> tuple[int, str, str]:
    code = cli_main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def mesh_vertices(path: Path) -> int:
    mesh = trimesh.load(path, force="mesh", process=False)
    return len(mesh.vertices)


def test_onnx_matches_torch_on_random_and_real_views_at_batch_1_and_3(trained, exported):
    student, ckpt = load_student(trained["run"] / "checkpoints" / "best.pt")
    session = ort_session(exported["out"] / ONNX_NAME, threads=1)
    val = [s for s in list_shoes(trained["data"]) if s.id in ckpt["split"]["val"]]
    assert len(val) == 2
    real = torch.stack([load_views_tensor(s, 32) for s in val]).float() / 255.0  # (2, 4, 4, 32, 32)
    rand = torch.rand(3, 4, 4, 32, 32, generator=torch.Generator().manual_seed(7))
    for x in (real[:1], real[[0, 1, 0]], rand[:1], rand):
        with torch.no_grad():
            ref = student(x).numpy()
        (out,) = run_ort(session, x)
        assert out.shape == (len(x), 2562, 3)
        assert np.abs(out - ref).max() <= 1e-4
    rows = exported["report"]["parity_rows"]
    assert {(r["inputs"], r["batch"]) for r in rows} == {(i, b) for i in ("val shoes", "random views") for b in (1, 3)}
    assert all(r["ok"] and r["max_abs_err"] <= 1e-4 and r["cd_l1"] < 1e-4 for r in rows)
    assert exported["report"]["parity_ok"] and exported["report"]["val_shoes"] == ckpt["split"]["val"]


def test_export_files_report_and_int8_model(trained, exported):
    out, rep = exported["out"], exported["report"]
    assert rep["files"] == {"onnx": str(out / ONNX_NAME), "onnx_int8": str(out / INT8_NAME),
                            "faces": str(out / FACES_NAME), "meta": str(out / META_NAME),
                            "web": str(out / "web"), "web_zip": str(out / "student-web.zip")}
    meta = json.loads((out / META_NAME).read_text())
    assert meta["image_size"] == 32 and meta["views"] == list(VIEW_NAMES) and meta["student_config"]["width"] == 4
    assert meta["input"]["shape"] == ["batch", 4, 4, 32, 32] and meta["faces"] == FACES_NAME
    faces = np.asarray(json.loads((out / FACES_NAME).read_text())["faces"])
    student, _ = load_student(trained["run"] / "checkpoints" / "best.pt")
    assert np.array_equal(faces, student.faces.numpy())
    saved = json.loads((out / "export.json").read_text())
    assert saved["markdown"] == rep["markdown"] and "| val shoes | 3 |" in rep["markdown"]
    q = rep["int8"]
    assert q["bytes"] == (out / INT8_NAME).stat().st_size and q["size_pct"] < 100
    assert q["shoes"] == 2 and q["cd_l1_change"] == pytest.approx(q["cd_l1_int8"] - q["cd_l1_fp32"])
    assert 0 < q["max_abs_err_vs_fp32"] < 0.1  # quantised: not identical, not broken
    assert [r["runtime"] for r in rep["latency_rows"]] == ["torch eager", "onnxruntime fp32", "onnxruntime int8"]
    assert all(r["ms_per_shoe"] > 0 and r["threads"] == 1 for r in rep["latency_rows"])
    ops = {r["op"]: r for r in q["profile_rows"]}  # where each file's time goes, per operator type
    assert ops["Conv"]["fp32_ms"] > 0 and ops["Conv"]["int8_ms"] is None and ops["ConvInteger"]["int8_ms"] > 0
    assert "| ConvInteger | - |" in rep["markdown"] and "**Recommended: `student" in rep["markdown"]
    assert rep["recommended"]["file"] in (str(out / ONNX_NAME), str(out / INT8_NAME))
    int8 = load_predictor(out / INT8_NAME, threads=1)  # the INT8 model loads and runs
    verts = int8.predict(load_views_tensor(list_shoes(trained["data"])[0], 32))
    assert verts.shape == (2562, 3) and np.isfinite(verts).all() and int8.kind == "onnx"
    assert sidecar_paths(out / INT8_NAME) == (out / META_NAME, out / FACES_NAME)


def _index_bytes(path) -> int:
    """Bytes of a file's integer tables (the neighbour tables), checking that none is stored as int64."""
    graph = onnx.load(str(path)).graph
    tables = [onnx.numpy_helper.to_array(n.attribute[0].t) for n in graph.node if n.op_type == "Constant"]
    tables += [onnx.numpy_helper.to_array(t) for t in graph.initializer if t.data_type != onnx.TensorProto.FLOAT]
    tables = [t for t in tables if t.dtype.kind in "iu"]
    assert all(t.dtype != np.int64 or t.size < 64 for t in tables)  # large tables as uint16
    return sum(t.nbytes for t in tables)


@pytest.mark.parametrize("size", ["default", "fast"])
def test_default_student_fast_and_small_tables_and_int8_is_at_most_30_percent_of_fp32(tmp_path, size):
    """Issue 6: the default student's INT8 file <= 30 % of FP32 (with its float layers). The fast size (issue 17
    item 6, 2.3x fewer weights) shares the ~60 KB of neighbour tables, template and graph: a third of FP32."""
    torch.manual_seed(0)
    model = MeshStudent(StudentConfig(**STUDENT_PRESETS[size]))
    s = model.config.image_size
    g = torch.Generator().manual_seed(1)
    example = torch.rand(2, 4, 4, s, s, generator=g)
    fp32 = export_onnx(model, example, tmp_path / ONNX_NAME, (INPUT_NAME,), (OUTPUT_NAME,))
    small = export_onnx(model, example, tmp_path / "small.onnx", (INPUT_NAME,), (OUTPUT_NAME,), small_tables=True)
    int8 = quantize_int8(small, tmp_path / INT8_NAME, keep=float_layers(model))  # as export_student makes it
    assert int8.stat().st_size <= (0.30 if size == "default" else 0.34) * fp32.stat().st_size
    kept = {t.name for t in onnx.load(str(int8)).graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    assert set(float_layers(model)) <= kept and "stages.0.inp.own.weight" not in kept  # the rest is int8
    assert ("stages.1.inp.own.weight" in float_layers(model)) == (size == "fast")  # 0.6 % of its weights, 2.1 %
    assert 40_000 < _index_bytes(fp32) < 52_000 and _index_bytes(small) < 25_000  # slot tables vs edge tables
    ops = [n.op_type for n in onnx.load(str(fp32)).graph.node]
    assert ops.count("ReduceMean") == 1 and not set(ops) & {"ScatterND", "Split", "Pad"}  # the CNN's pooling only:
    # the neighbour sums are Gather + MatMul
    session = ort_session(fp32, threads=2)  # 2 threads: ONNX Runtime splits some ops (ScatterND: wrongly)
    for path in (fp32, small):
        for batch in (1, 3):
            assert parity(model, ort_session(path, threads=2), torch.rand(batch, 4, 4, s, s, generator=g)) <= 1e-5
    x = torch.rand(1, 4, 4, s, s, generator=g)
    (a,), (b,) = run_ort(session, x), run_ort(ort_session(int8, threads=1), x)
    err = np.abs(a - b)  # random weights quantise worse than trained ones (those: -0.2 % val CD-L1)
    assert b.shape == (1, 2562, 3) and 0 < err.mean() < 0.05 and err.max() < 0.3  # the compacted INT8 file runs


def _iou(a, b) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_views_from_photos_frames_like_training(trained, tmp_path):
    """Calibrated renders given as photos come back framed as training sees them (the framing rule is
    near identity on them); a front-only upload is framed from the length prior; bad inputs are named."""
    shoe = list_shoes(trained["data"])[0]
    calibrated = load_views_tensor(shoe, 64)
    full, prepared = views_from_photos(dict(shoe.view_paths), 64)
    assert full.dtype == torch.uint8 and full.shape == calibrated.shape and set(prepared.views) == set(VIEW_NAMES)
    for k in range(4):
        assert _iou(full[k, 3] > 127, calibrated[k, 3] > 127) > 0.9, VIEW_NAMES[k]
    front, prepared = views_from_photos({"front": shoe.view_paths["front"], "left": None}, 64)
    assert not front[1:].any() and list(prepared.views) == ["front"] and "alpha" in prepared.summary()
    rgba = np.asarray(Image.open(shoe.view_paths["front"]).convert("RGBA"))  # RGB on white: mask from backdrop
    rgb = np.where(rgba[:, :, 3:] > 127, rgba[:, :, :3], 255).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "front.jpg", quality=95)
    jpg, prepared = views_from_photos({"front": tmp_path / "front.jpg"}, 64)
    assert _iou(jpg[0, 3] > 127, front[0, 3] > 127) > 0.95 and "plain backdrop" in prepared.summary()
    for bad, msg in (({}, "no photos"), ({"top": tmp_path / "front.jpg"}, "unknown view"),
                     ({"front": tmp_path / "missing.png"}, "no such file")):
        with pytest.raises(UserError, match=msg):
            views_from_photos(bad, 64)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match="bad.png"):
        views_from_photos({"front": tmp_path / "bad.png"}, 64)
    # one bad view among good ones: left out and named, the others still used
    views, prepared = views_from_photos({"front": shoe.view_paths["front"], "back": tmp_path / "bad.png"}, 64)
    assert list(prepared.views) == ["front"] and "bad.png" in prepared.errors["back"] and not views[2].any()


def test_infer_cli_writes_2562_vertex_meshes_from_a_shoe_dir_a_front_photo_and_the_onnx_file(trained, exported,
                                                                                          tmp_path, capsys):
    shoe = list_shoes(trained["data"])[1]
    ckpt = trained["run"] / "checkpoints" / "best.pt"
    folder = trained["data"] / "input_images" / shoe.id
    cases = [([ckpt, "--shoe-dir", folder], "a.glb"), ([ckpt, "--front", shoe.view_paths["front"]], "b.obj"),
             ([exported["out"] / ONNX_NAME, "--shoe-dir", folder], "c.glb")]
    for args, name in cases:
        code, out, err = cli(["infer", "--checkpoint", *args, "--out", tmp_path / name, "--threads", 1], capsys)
        assert code == 0, err
        assert mesh_vertices(tmp_path / name) == 2562 and "2562 vertices" in out
    torch_mesh = trimesh.load(tmp_path / "a.glb", force="mesh", process=False)
    onnx_mesh = trimesh.load(tmp_path / "c.glb", force="mesh", process=False)
    assert np.abs(np.asarray(torch_mesh.vertices) - np.asarray(onnx_mesh.vertices)).max() <= 1e-4
    res = infer(NULL_CONTEXT, ckpt, tmp_path / "d.obj", photos={"front": shoe.view_paths["front"]})
    assert res["vertices"] == 2562 and res["faces"] == 5120 and res["views"] == ["front"] and res["kind"] == "torch"


def test_wrong_checkpoints_are_one_line_errors(trained, exported, tmp_path, capsys):
    shoe_dir = trained["data"] / "input_images" / list_shoes(trained["data"])[0].id
    storage.torch_save(tmp_path / "tinyvae_best.pth", {"student_state_dict": {"w": torch.zeros(2)}, "config": {}})
    storage.torch_save(tmp_path / "other.pt", {"kind": "tiny-vae", "state_dict": {}})
    (tmp_path / "junk.pt").write_text("junk\n")
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / ONNX_NAME).write_bytes((exported["out"] / ONNX_NAME).read_bytes())
    (tmp_path / "fake.onnx").write_bytes(b"\x00not onnx")
    (tmp_path / "fake.json").write_text((exported["out"] / META_NAME).read_text())
    (tmp_path / "fake.faces.json").write_text((exported["out"] / FACES_NAME).read_text())
    cases = {tmp_path / "tinyvae_best.pth": "TinyVAE", tmp_path / "other.pt": "kind 'tiny-vae'",
             tmp_path / "junk.pt": "not a readable weights file", lone / ONNX_NAME: "student.json is missing",
             tmp_path / "fake.onnx": "not a loadable ONNX model", tmp_path / "nothing.pt": "no such"}
    for path, msg in cases.items():
        code, _, err = cli(["infer", "--checkpoint", path, "--shoe-dir", shoe_dir, "--out", tmp_path / "x.glb"], capsys)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and msg in lines[0], (path, err)
    code, _, err = cli(["infer", "--checkpoint", tmp_path / "junk.pt", "--shoe-dir", shoe_dir, "--out",
                        tmp_path / "x.txt"], capsys)
    assert code == 2 and ".glb or .obj" in err
    assert not (tmp_path / "x.glb").exists()


def test_export_cli_end_to_end(trained, tmp_path, capsys):
    run = trained["run"]
    out = tmp_path / "export"
    code, printed, err = cli(["export", "--run", run.name, "--runs", run.parent, "--int8", "--threads", 1,
                              "--checkpoint", "last", "--out", out, "--quiet"], capsys)
    assert code == 0, err
    for name in (ONNX_NAME, INT8_NAME, FACES_NAME, META_NAME, "export.json", "export.md"):
        assert (out / name).is_file(), name
    report = json.loads((out / "export.json").read_text())
    assert report["checkpoint"] == "last" and report["run"] == run.name and report["parity_ok"]
    assert "## Latency" in printed and "onnxruntime int8" in printed
    code, _, err = cli(["export", "--run", run.name, "--runs", run.parent, "--out", out, "--quiet"], capsys)
    assert code == 0 and not (out / INT8_NAME).exists()  # a re-export without --int8 drops the stale file
    assert json.loads((out / "export.json").read_text())["int8"] is None
    code, _, err = cli(["export", "--run", "no-such-run", "--runs", run.parent], capsys)
    assert code == 2 and err.strip().startswith("error: ") and "no such run" in err
    exports = [r for r in runs.list_runs(run.parent) if r["kind"] == "export"]  # the Runs tab lists them
    assert [r["state"] for r in exports] == ["succeeded", "succeeded"]


def test_an_export_killed_midway_leaves_no_int8_work_folder(trained, tmp_path):
    """A SIGKILL during quantisation leaves ``.int8-<pid>-*/``; the next export removes it (and one of the
    first naming), never the work folder of a quantisation still running."""
    import os
    import subprocess

    dead = subprocess.Popen(["true"])
    dead.wait()
    out = tmp_path / "export"
    left = [out / f".int8-{dead.pid}-k1ll3d", out / ".int8-abc123"]
    live = out / f".int8-{os.getpid()}-running"
    for folder in (*left, live):
        folder.mkdir(parents=True)
        (folder / "model.onnx").write_bytes(b"half a model")
    export_student(NULL_CONTEXT, trained["run"], out_dir=out, int8=True, threads=1, repeats=1, rounds=1)
    assert [p.name for p in out.glob(".int8-*")] == [live.name]


@pytest.mark.parametrize("image_size, expect", [
    (None, r"student\.json: image_size must be an integer in 8\.\.1024 \(got missing\)"),
    ("abc", r"student\.json: image_size must be an integer in 8\.\.1024 \(got 'abc'\)"),
    (50000, r"student\.json: image_size must be an integer in 8\.\.1024 \(got 50000\)"),
    (48, r"student\.json: image_size 48 does not match the model, which takes 32x32 px views"),
], ids=["missing", "text", "huge", "mismatch"])
def test_a_bad_onnx_sidecar_is_one_line_before_anything_is_allocated(trained, exported, tmp_path, capsys,
                                                                    image_size, expect):
    """``student.json`` beside an exported model: every field is checked, with its range, before the views
    are made (50000 px asked for ~40 GB and a MemoryError after a minute)."""
    import re
    import shutil

    for name in (ONNX_NAME, FACES_NAME, META_NAME):
        shutil.copy(exported["out"] / name, tmp_path / name)
    meta = json.loads((tmp_path / META_NAME).read_text())
    meta.pop("image_size") if image_size is None else meta.update(image_size=image_size)
    (tmp_path / META_NAME).write_text(json.dumps(meta))
    front = list_shoes(trained["data"])[0].view_paths["front"]
    code, _, err = cli(["infer", "--checkpoint", tmp_path / ONNX_NAME, "--front", front, "--out", tmp_path / "x.glb"],
                       capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and re.search(expect, lines[0]), err


def test_recommendation_is_the_fastest_file_within_one_percent_cd_l1():
    files = {"onnxruntime fp32": Path("a.onnx"), "onnxruntime int8": Path("a.int8.onnx")}
    lat = [{"runtime": "torch eager", "ms_per_shoe": 9.0}, {"runtime": "onnxruntime fp32", "ms_per_shoe": 4.0},
           {"runtime": "onnxruntime int8", "ms_per_shoe": 3.0}]
    assert recommend(lat, {"cd_l1_change_pct": 0.9}, files)["file"] == "a.int8.onnx"  # faster and within 1 %
    assert recommend(lat, {"cd_l1_change_pct": -1.5}, files)["file"] == "a.onnx"  # faster but off by 1.5 %
    off = recommend(lat, {"cd_l1_change_pct": None}, files)
    assert off["file"] == "a.onnx" and "not measured" in off["reason"]  # no GT: INT8's quality unknown
    slow = recommend(lat[:2] + [{"runtime": "onnxruntime int8", "ms_per_shoe": 8.0}], {"cd_l1_change_pct": 0.0}, files)
    assert slow["file"] == "a.onnx" and "slower" in slow["reason"] and slow["ms_per_shoe"] == 4.0
    assert recommend(lat[:2], None, files)["reason"] == "the only file exported"
