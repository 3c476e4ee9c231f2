"""The Compare and Export tabs: distance colours, per-shoe comparison in the engine, and both tabs through
gradio_client (dataset shoe, uploaded photos, ONNX export and the exported model on photos)."""
from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.cache import build_cache
from engine.data.sample_shoes import build_sample
from engine.evaluate.compare import (DISTANCE_SCALE, RAMP, compare_shoe, distance_colors, surface_distance,
                                     worst_shoes)
from engine.evaluate.mesh_eval import evaluate_run
from engine.geometry.mesh import icosphere
from engine.jobs import NULL_CONTEXT, JobRunner
from engine.teachers.base import TeacherSettings
from engine.train.distill3d import train_student
from tests.conftest import make_roots, served_studio

torch.set_num_threads(1)


def test_distance_colors_run_blue_to_red_and_saturate():
    c = distance_colors(np.array([0.0, DISTANCE_SCALE / 2, DISTANCE_SCALE, 10 * DISTANCE_SCALE]))
    assert c.shape == (4, 4) and c.dtype == np.uint8 and (c[:, 3] == 255).all()
    assert tuple(c[0, :3]) == RAMP[0][1] and tuple(c[2, :3]) == RAMP[-1][1] and (c[2] == c[3]).all()
    assert tuple(c[1, :3]) == RAMP[2][1]  # the middle stop
    assert distance_colors(np.zeros(0)).shape == (0, 4)
    with pytest.raises(ValueError):
        distance_colors(np.ones(3), scale=0)


def test_surface_distance_is_zero_on_the_surface_and_measures_a_dent():
    v, f = icosphere(3)  # radius 1: normalised, the diameter 2 becomes 1
    v, f = v.numpy().astype(np.float64), f.numpy()
    assert surface_distance(v, v, f, n_dense=100_000).max() < 0.01  # sample spacing only
    assert surface_distance(v * 0.5 + 0.05, v, f, n_dense=100_000).max() < 0.01  # scale and shift cancel
    dented = v.copy()
    j = int(np.argmin(np.abs(v).max(axis=1)))  # a vertex away from the bbox extremes: the bbox stays put
    dented[j] *= 0.8  # 0.2 inward = 0.1 in normalised units
    d = surface_distance(dented, v, f, n_dense=100_000)
    assert d[j] == pytest.approx(0.1, abs=0.01) and np.delete(d, j).max() < 0.01
    with pytest.raises(ValueError):
        surface_distance(np.zeros((0, 3)), v, f)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """3 sample shoes, their visual-hull cache and a 1-epoch tiny run, evaluated."""
    base = tmp_path_factory.mktemp("compare")
    roots = make_roots(base)
    build_sample(NULL_CONTEXT, roots["data"] / "sample", count=3, seed=0)
    build_cache(NULL_CONTEXT, roots["data"] / "sample", roots["cache"] / "c", settings=TeacherSettings(preset="fast"))
    runner = JobRunner(runs_root=roots["runs"])
    cfg = {"data": str(roots["data"] / "sample"), "cache": str(roots["cache"] / "c"), "epochs": 1, "batch_size": 2,
           "n_points": 500, "target_points": 500, "val_fraction": 0.34, "seed": 0,
           "student": {"width": 4, "hidden": 16, "image_size": 32}}
    job = runner.submit(train_student, kind="train3d", config=cfg)
    runner.wait(job, timeout=300)
    assert runner.get(job)["state"] == "succeeded", runner.get(job)["error"]
    report = evaluate_run(NULL_CONTEXT, roots["runs"] / job)
    return base, roots, runner, job, report


def test_compare_shoe_numbers_equal_the_evaluation(trained):
    base, roots, _, run_id, report = trained
    row = report["rows"][0]
    res = compare_shoe(NULL_CONTEXT, roots["runs"] / run_id, row["id"], base / "out")
    assert res["split"] == "val" and all(res[f"{k}_glb"].endswith(".glb") for k in ("teacher", "student", "gt"))
    by_model = {r["model"]: r for r in res["rows"]}
    for model in ("student", "teacher"):
        for key, value in row[model].items():
            assert by_model[model][key] == pytest.approx(value, rel=1e-9), (model, key)
    assert res["distances"]["student"]["mean"] > 0 and not res["notes"]
    assert worst_shoes(roots["runs"] / run_id)[0]["shoe"] == row["id"]


def test_a_stale_teacher_entry_is_not_scored_by_evaluation_or_compare(trained, tmp_path):
    """The entry training would refuse (fingerprint no longer matching the views) is left out too."""
    import json
    import shutil

    from engine import storage
    from engine.cache import usable_entry
    from engine.data.layout import find_shoe
    from engine.students.checkpoint import load_checkpoint

    _, roots, _, run_id, report = trained
    run, cache = tmp_path / "run", tmp_path / "cache"
    shutil.copytree(roots["runs"] / run_id, run)
    shutil.copytree(roots["cache"] / "c", cache)
    for name in ("best", "last"):  # the copied run reads the copied cache
        ckpt = load_checkpoint(run / "checkpoints" / f"{name}.pt")
        ckpt["train_config"]["cache"] = str(cache)
        storage.torch_save(run / "checkpoints" / f"{name}.pt", ckpt)
    sid = report["rows"][0]["id"]
    meta = json.loads((cache / "metadata.json").read_text())
    meta["entries"][sid]["fingerprint"] = "0" * 64  # as if the photos had changed after the build
    storage.write_json(cache / "metadata.json", meta)
    data, why = usable_entry(cache, meta, find_shoe(roots["data"] / "sample", sid))
    assert data is None and "stale" in why

    stale = evaluate_run(NULL_CONTEXT, run)
    assert report["teacher_shoes"] == report["val_shoes"] and stale["teacher_shoes"] == report["val_shoes"] - 1
    assert not next(r for r in stale["rows"] if r["id"] == sid).get("teacher")
    res = compare_shoe(NULL_CONTEXT, run, sid, tmp_path / "out")
    assert res["teacher_glb"] is None and [r["model"] for r in res["rows"]] == ["student"]
    assert any("stale" in n for n in res["notes"])


@pytest.fixture(scope="module")
def client(trained):
    from gradio_client import Client

    base, roots, runner, _run_id, _ = trained
    with served_studio(roots, scratch=base / "scratch", runner=runner) as (url, _studio):
        yield Client(url, verbose=False)


def run_and_poll(client, start_api: str, poll_api: str, start_args=(), poll_args=(), timeout: float = 180):
    """Start a job through ``start_api`` and poll ``poll_api`` until its progress shows a final state."""
    first = client.predict(*start_args, api_name=start_api)
    if "job-progress" not in str(first[0]):
        return first  # refused up front (a message, no job)
    end = time.time() + timeout
    while time.time() < end:
        out = client.predict(*poll_args, api_name=poll_api)
        if "data-state='succeeded'" in out[0] or "data-state='failed'" in out[0]:
            return out
        time.sleep(0.3)
    raise AssertionError(f"{start_api}: the job did not finish")


def test_compare_tab_returns_three_meshes_and_a_metrics_table(trained, client):
    from gradio_client import handle_file

    _, roots, _, run_id, _ = trained

    def compare(*args):
        return run_and_poll(client, "/compare_shoe", "/compare_poll", args, (run_id,))

    bar, teacher, student, gt, table, notes = compare(run_id, "best", "shoe_000")[:6]
    assert "succeeded" in bar and all(str(p).endswith(".glb") for p in (teacher, student, gt))
    assert [r[0] for r in table["data"]] == ["teacher", "student"] and table["headers"][1] == "cd_l1"
    assert all(isinstance(r[1], float) and r[1] > 0 for r in table["data"])
    assert "shoe_000" in notes
    bar = compare(run_id, "best", "no_such_shoe")[0]
    assert "failed" in bar and "not found" in bar
    bar, _timer = client.predict("../x", "best", "shoe_000", api_name="/compare_shoe")
    assert "bad run ID" in bar
    (roots["runs"] / "junk" / "checkpoints").mkdir(parents=True)
    (roots["runs"] / "junk" / "checkpoints" / "best.pt").write_bytes(b"not a checkpoint")
    bar = compare("junk", "best", "shoe_000")[0]
    assert "failed" in bar and "best.pt" in bar
    # uploaded photos: the student mesh at once, no GT
    front = roots["data"] / "sample" / "input_images" / "shoe_001" / "front.png"
    out = run_and_poll(client, "/compare_photos", "/compare_poll",
                       (run_id, "best", handle_file(str(front)), None, None, None), (run_id,))
    assert "succeeded" in out[0] and str(out[2]).endswith(".glb") and out[1] is None and out[3] is None
    assert not out[4]["data"], "the previous shoe's metrics are still shown beside the uploads' mesh"
    assert "Views given: 1 of 4" in out[5] and "missing: left, back, right" in out[5] and "blob" in out[5]


def test_export_tab_exports_measures_and_runs_the_onnx_student(trained, client):
    from gradio_client import handle_file

    _, roots, _, run_id, _ = trained
    out = run_and_poll(client, "/export_run", "/export_poll", (run_id, "best", True, 1))
    bar, parity, latency, summary, files = out[:5]
    assert "succeeded" in bar, bar
    rows = client.predict(api_name="/list_runs")["data"]  # the export is a run: the Runs tab lists it
    assert any(r[1] == "export" and r[2] == "succeeded" for r in rows), rows
    assert parity["headers"][:2] == ["model", "inputs"] and all(r[-1] == "yes" for r in parity["data"])
    err = parity["headers"].index("max_abs_err")  # errors of 1e-7 in scientific notation, never rounded to 0
    assert all(re.fullmatch(r"\d\.\d\de[-+]\d\d", r[err]) for r in parity["data"]), parity["data"]
    assert {r[0] for r in latency["data"]} == {"torch eager", "onnxruntime fp32", "onnxruntime int8"}
    ms = latency["headers"].index("ms_per_shoe")
    assert all(re.fullmatch(r"\d+\.\d ms", r[ms]) for r in latency["data"]), latency["data"]
    assert "Parity" not in summary and " ms" not in summary and "INT8" in summary  # one table, no prose copy
    names = sorted(Path(f).name for f in files)
    assert "student.onnx" in names and "student.int8.onnx" in names and "student.faces.json" in names
    assert (roots["runs"] / run_id / "export" / "export.json").is_file()
    shown = client.predict(run_id, api_name="/export_show")  # re-opening the run shows its last export
    assert shown[1] == latency and sorted(Path(f).name for f in shown[3]) == names
    front = roots["data"] / "sample" / "input_images" / "shoe_002" / "front.png"
    out = run_and_poll(client, "/export_try", "/export_poll", (run_id, "int8", handle_file(str(front)), None, None, None))
    assert "succeeded" in out[0] and str(out[5]).endswith(".glb") and "2562 vertices" in out[6]
    junk = roots["data"] / "not-a-photo.png"
    junk.write_text("#!/bin/sh\necho not an image\n")
    bar = run_and_poll(client, "/export_try", "/export_poll", (run_id, "fp32", handle_file(str(junk)), None, None, None))[0]
    assert "failed" in bar and "not-a-photo" in bar  # the engine's message naming the file, not a bare "Error"
    bar, _timer = client.predict("../x", "fp32", None, None, None, None, api_name="/export_try")
    assert "export the run first" in bar
