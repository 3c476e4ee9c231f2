"""The Data, Teacher and Cache tabs through gradio_client: handlers start jobs, timers pick up results."""
from __future__ import annotations

import json
import time

import pytest

from engine.data.sample_shoes import build_sample
from engine.jobs import NULL_CONTEXT
from tests.conftest import make_roots, served_studio


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from gradio_client import Client

    base = tmp_path_factory.mktemp("studio")
    roots = make_roots(base)
    build_sample(NULL_CONTEXT, roots["data"] / "sample", count=2, seed=0)
    with served_studio(roots, scratch=base / "scratch") as (url, studio):
        yield Client(url, verbose=False), studio, roots


def wait_idle(studio, timeout=60):
    end = time.time() + timeout
    while studio.runner.active() and time.time() < end:
        time.sleep(0.2)
    assert not studio.runner.active(), "jobs still running"


def test_shoe_preview_gives_four_views_and_a_glb(app):
    client, _, _ = app
    gallery, glb, note = client.predict("sample", "shoe_001", api_name="/shoe_preview")
    assert len(gallery) == 4 and [g["caption"] for g in gallery] == ["front", "left", "back", "right"]
    assert glb.endswith(".glb") and "vertices" in note


def test_bad_dataset_names_get_a_message_not_a_crash(app):
    client, _, _ = app
    _gallery, glb, note = client.predict("..etc", "shoe_001", api_name="/shoe_preview")
    assert glb is None and "bad dataset name" in note
    _gallery, glb, note = client.predict("../etc", "shoe_001", api_name="/shoe_preview")
    assert glb is None and "outside the allowed folders" in note
    bar, _timer = client.predict("/etc", api_name="/validate_dataset")
    assert "outside the allowed folders" in bar


def test_cache_tab_builds_and_summarises(app):
    client, studio, roots = app
    client.predict("sample", "visual-hull", "fast", 0, "", api_name="/build_cache")
    wait_idle(studio)
    summary, failures = client.predict("sample-visual-hull-fast", api_name="/cache_summary")
    assert "2 cached, 0 failed" in summary and "mean CD-L1" in summary
    assert (roots["cache"] / "sample-visual-hull-fast" / "shoe_000.pt").is_file()
    assert any(r["kind"] == "cache" and r["state"] == "succeeded" for r in studio.runner.jobs())


def test_teacher_tab_generates_and_offers_downloads(app):
    client, studio, _ = app
    client.predict("dataset shoe", "sample", "shoe_000", "visual-hull", "fast", None, 0, None, None, None, None,
                   api_name="/teacher_generate")
    wait_idle(studio)
    path = client.predict("stl", 300, api_name="/teacher_download")
    assert path.endswith(".stl")
    import trimesh

    assert len(trimesh.load(path).faces) <= 300


def ensure_fast_cache(client, studio, roots) -> None:
    """The visual-hull fast cache of the sample, built through the Cache tab once per module."""
    if not (roots["cache"] / "sample-visual-hull-fast").is_dir():
        client.predict("sample", "visual-hull", "fast", 0, "", api_name="/build_cache")
        wait_idle(studio)


def test_train3d_tab_trains_student_and_baseline_then_evaluates(app):
    client, studio, roots = app
    ensure_fast_cache(client, studio, roots)
    client.predict("sample", "sample-visual-hull-fast", "default", 0.9, 0.3, 2, 1e-3, 2, 2.0, 1.0, 4, 0, True, 0.0, 0,
                   "default", api_name="/train_start")
    wait_idle(studio, timeout=240)
    train = [j for j in studio.runner.jobs() if j["kind"] == "train3d"]
    # one job (engine.workflows.distill_with_baseline) trains both runs, evaluates and writes the report
    assert len(train) == 1 and train[0]["state"] == "succeeded", [j["error"] for j in train]
    main = train[0]["id"]
    assert (roots["runs"] / f"{main}-baseline" / "checkpoints" / "best.pt").is_file()
    report = json.loads((roots["runs"] / main / "distillation.json").read_text())
    assert report["verdict"].startswith("distillation ") and report["table"]["baseline"]
    poll = client.predict(None, main, api_name="/train_poll")
    assert any("baseline val CD-L1" in json.dumps(out) for out in poll)  # the distillation plot: both curves
    assert any("Distillation report" in str(out) for out in poll)  # and the report under it
    client.predict(main, api_name="/train_evaluate")
    wait_idle(studio, timeout=120)
    ev = [j for j in studio.runner.jobs() if j["kind"] == "evaluate"][-1]
    assert ev["state"] == "succeeded", ev["error"]
    assert (roots["runs"] / main / "evaluation.json").is_file()


def test_train3d_stop_then_resume_keeps_the_baseline_and_names_each_run_on_the_bar(app):
    """Issue 14 items 1-2: Stop during the student, the table says the baseline row is missing and why;
    Resume trains both (the table comes back with its baseline row); the one bar names the run it shows."""
    client, studio, roots = app
    ensure_fast_cache(client, studio, roots)
    client.predict("sample", "sample-visual-hull-fast", "default", 0.9, 0.3, 6, 1e-3, 2, 2.0, 1.0, 4, 1, True, 0.0, 0,
                   "fast", api_name="/train_start")  # the fast student size (its fields stored with the run)
    main = [j for j in studio.runner.jobs() if j["kind"] == "train3d"][-1]["id"]
    messages = set()

    def watch(until, timeout=240):
        end = time.time() + timeout
        while time.time() < end:
            snap = studio.runner.get(main)
            messages.add(snap["message"].split(" · ")[0])
            if until(snap):
                return snap
            time.sleep(0.05)
        raise AssertionError(f"{main}: {studio.runner.get(main)}")

    watch(lambda s: "epoch 2/" in s["message"])  # the student's second epoch
    studio.runner.cancel(main)  # what Stop does with the tab's job state (which a client cannot send)
    assert watch(lambda s: s["state"] != "running")["state"] == "cancelled"
    table = json.dumps(client.predict(None, main, api_name="/train_poll"))  # the run picked: its table
    assert "baseline row missing" in table and "Resume" in table and "was stopped" in table, table
    assert "| baseline |" not in table
    client.predict(main, api_name="/train_resume")
    watch(lambda s: s["state"] in ("succeeded", "failed"), timeout=300)
    assert studio.runner.get(main)["state"] == "succeeded", studio.runner.get(main)["error"]
    table = json.dumps(client.predict(None, main, api_name="/train_poll"))
    assert "| baseline |" in table and "| teacher |" in table and "missing" not in table, table
    assert {"1 of 2 student", "2 of 2 baseline"} <= messages and any(m.startswith("evaluating") for m in messages)
    rows = {r["id"]: r for r in studio_runs(studio)}
    assert rows[f"{main}-baseline"]["state"] == "succeeded"


def studio_runs(studio):
    from engine import runs

    return runs.list_runs(studio.runs_root, studio.runner.live_ids())
