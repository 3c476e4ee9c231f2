"""The job runner: order, cancel, failures, live readings, run folders."""
from __future__ import annotations

import threading
import time

import pytest

from engine import runs
from engine.jobs import JobRunner


def wait_state(runner, job_id, states, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        snap = runner.get(job_id)
        if snap["state"] in states:
            return snap
        time.sleep(0.01)
    raise AssertionError(f"{job_id} never reached {states}: {runner.get(job_id)['state']}")


def test_jobs_run_in_submission_order_one_at_a_time(tmp_path):
    runner = JobRunner(runs_root=tmp_path)
    order, running, overlap = [], [], []
    lock = threading.Lock()

    def job(ctx, n):
        with lock:
            running.append(n)
            overlap.append(len(running))
        time.sleep(0.05)
        order.append(n)
        with lock:
            running.remove(n)

    ids = [runner.submit(job, kind="test", n=i) for i in range(4)]
    assert runner.get(ids[-1])["state"] in ("queued", "running")
    for i in ids:
        runner.wait(i, timeout=10)
    assert order == [0, 1, 2, 3]
    assert max(overlap) == 1
    assert all(runner.get(i)["state"] == "succeeded" for i in ids)


def test_lanes_are_independent(tmp_path):
    runner = JobRunner(runs_root=tmp_path)
    gate = threading.Event()
    blocker = runner.submit(lambda ctx: gate.wait(5), kind="block", lane="cpu")
    other = runner.submit(lambda ctx: "done", kind="other", lane="cuda", with_run=False)
    assert runner.wait(other, timeout=5)["state"] == "succeeded"
    assert runner.get(blocker)["state"] == "running"
    gate.set()
    assert runner.wait(blocker, timeout=5)["state"] == "succeeded"


def test_cancel_stops_within_one_step(tmp_path):
    runner = JobRunner(runs_root=tmp_path)
    steps = []

    def job(ctx):
        for i in range(10_000):
            ctx.check_cancelled()
            steps.append(i)
            ctx.progress(i / 10_000, f"step {i}")
            time.sleep(0.005)

    job_id = runner.submit(job, kind="train")
    wait_state(runner, job_id, ("running",))
    while len(steps) < 3:
        time.sleep(0.005)
    assert runner.cancel(job_id)
    n_at_cancel = len(steps)
    snap = runner.wait(job_id, timeout=5)
    assert snap["state"] == "cancelled"
    assert len(steps) - n_at_cancel <= 1
    status = runs.load_run(job_id, tmp_path)["status"]
    assert status["state"] == "cancelled"


def test_cancel_while_queued_never_starts(tmp_path):
    runner = JobRunner(runs_root=tmp_path)
    gate = threading.Event()
    started = []
    first = runner.submit(lambda ctx: gate.wait(5), kind="block")
    second = runner.submit(lambda ctx: started.append(1), kind="queued")
    assert runner.cancel(second)
    gate.set()
    runner.wait(first, timeout=5)
    assert runner.wait(second, timeout=5)["state"] == "cancelled"
    assert started == []


def test_failing_job_keeps_error_and_the_next_job_runs(tmp_path):
    runner = JobRunner(runs_root=tmp_path)

    def bad(ctx):
        ctx.log("about to fail")
        raise ValueError("the loss went NaN at step 3")

    bad_id = runner.submit(bad, kind="bad")
    good_id = runner.submit(lambda ctx: 42, kind="good")
    snap = runner.wait(bad_id, timeout=5)
    assert snap["state"] == "failed"
    assert snap["error"] == "the loss went NaN at step 3"
    assert "ValueError" in snap["traceback"]
    assert any("about to fail" in line for line in snap["log"])
    assert runner.wait(good_id, timeout=5)["state"] == "succeeded"
    assert runner.result(good_id) == 42
    status = runs.load_run(bad_id, tmp_path)["status"]
    assert status["state"] == "failed" and "NaN" in status["error"]


def test_progress_metrics_and_log_are_readable_while_running(tmp_path):
    runner = JobRunner(runs_root=tmp_path)
    gate, ready = threading.Event(), threading.Event()

    def job(ctx):
        ctx.progress(0.5, "half way")
        ctx.metric({"step": 1, "loss": 2.0})
        ctx.metric({"step": 2, "loss": 1.0})
        ctx.log("hello")
        ready.set()
        gate.wait(5)

    job_id = runner.submit(job, kind="live", run_config={"lr": 0.1})
    assert ready.wait(5)
    snap = runner.get(job_id)
    assert snap["state"] == "running"
    assert snap["progress"] == 0.5 and snap["message"] == "half way"
    assert [m["loss"] for m in snap["metrics"]] == [2.0, 1.0]
    assert runner.get(job_id, metrics_since=1)["metrics"][0]["step"] == 2
    assert any(line.endswith("hello") for line in snap["log"])
    run = runs.load_run(job_id, tmp_path)
    assert run["config"]["lr"] == 0.1
    assert [h["loss"] for h in run["history"]] == [2.0, 1.0]
    gate.set()
    assert runner.wait(job_id, timeout=5)["state"] == "succeeded"


def test_unknown_lane_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="lane"):
        JobRunner(runs_root=tmp_path).submit(lambda ctx: None, kind="x", lane="tpu")


def test_a_job_taking_one_config_dict_records_it_as_config_json(tmp_path):
    runner = JobRunner(runs_root=tmp_path)
    job_id = runner.submit(lambda ctx, config: config["epochs"], kind="train3d", config={"epochs": 3})
    assert runner.wait(job_id, timeout=5)["state"] == "succeeded"
    assert runner.result(job_id) == 3
    assert runs.load_run(job_id, tmp_path)["config"] == {"kind": "train3d", "epochs": 3}


def test_a_second_cancel_while_stopping_says_it_is_stopping(roots):
    """Cancel is asked twice while the job has not reached its next check: both answers say it stops (the
    second one: already stopping), the job's message says so until it ends — never "not running"."""
    from gradio_client import Client

    from tests.conftest import served_studio

    gate = threading.Event()

    def slow(ctx, config):
        gate.wait(30)  # a long step between two checks
        ctx.progress(0.5, "still working")
        ctx.check_cancelled()

    with served_studio(roots) as (url, studio):
        job_id = studio.runner.submit(slow, kind="train3d", config={"epochs": 1})
        wait_state(studio.runner, job_id, ("running",))
        client = Client(url, verbose=False)
        first = client.predict(job_id, api_name="/cancel_run")
        second = client.predict(job_id, api_name="/cancel_run")
        assert "Cancel requested" in first and "is stopping: cancel already requested" in second, second
        gate.set()
        time.sleep(0.05)
        snap = studio.runner.get(job_id)
        assert snap["state"] == "cancelled" or (snap["stopping"] and snap["message"].startswith("stopping"))
        assert studio.runner.wait(job_id, timeout=10)["state"] == "cancelled"
        assert studio.runner.cancel(job_id) is False  # over: now it is not running
