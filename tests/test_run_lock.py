"""One writer per run (issue 16, cases 5 and 6): a run being written is locked (``engine.runs.RunLock``: a
lock file naming the owner's pid, dropped by the kernel when the owner dies) and a second writer — CLI or
studio — gets one clear line before it writes anything; a VAE run killed with the studio resumes from the
studio, and a run's status follows the last process that wrote it (a CLI ``--resume`` of a studio run)."""
from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine import runs
from engine.cli import main
from engine.config import UserError
from engine.jobs import JobRunner

ROOT = Path(__file__).resolve().parent.parent
HOLD = "import sys, time; from engine.runs import RunLock; RunLock(sys.argv[1]).acquire(); print('held', flush=True); " \
       "time.sleep(120)"


@contextlib.contextmanager
def held_by_another_process(run_dir: Path):
    """A real process holding ``run_dir``'s lock; SIGKILLed on exit (its lock is then stale)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=30)


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_second_writer_is_refused_and_a_killed_owners_lock_is_stale(tmp_path):
    run_dir = runs.create_run("train3d", {"epochs": 1}, root=tmp_path, run_id="r1")
    runs.append_history(run_dir, {"scope": "epoch", "epoch": 1})
    with held_by_another_process(run_dir) as owner:
        with pytest.raises(UserError, match=rf"run r1 is being written by another process \(pid {owner.pid}"):
            runs.RunLock(run_dir).acquire()
        rc, out, err = run_cli(["train", "--resume", "r1", "--out-runs", str(tmp_path), "--quiet"])
        assert rc == 2 and "Traceback" not in err
        errors = [line for line in err.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and re.fullmatch(rf"error: run r1 is being written by another process \(pid "
                                                 rf"{owner.pid}, since \d\d:\d\d:\d\d\); wait for it to finish "
                                                 r"or stop it first", errors[0]), err
        runner = JobRunner(runs_root=tmp_path)  # the studio's path: refused at submit, nothing queued
        with pytest.raises(UserError, match="is being written by another process"):
            runner.submit(lambda ctx: None, kind="train3d", existing_run=run_dir)
        assert runner.jobs() == []
    assert len(runs.read_history(run_dir)) == 1  # nothing written by the refused writers
    with runs.RunLock(run_dir):  # the owner was SIGKILLed: its lock is stale and taken over
        assert (run_dir / runs.LOCK_NAME).read_text().startswith(f'{{"pid": {os.getpid()}')
    assert (run_dir / runs.LOCK_NAME).read_text() == ""  # released


def test_two_jobs_of_one_studio_on_the_same_run_are_refused(tmp_path):
    import threading

    gate = threading.Event()
    runner = JobRunner(runs_root=tmp_path)
    first = runner.submit(lambda ctx, config: gate.wait(30), kind="train3d", config={"epochs": 1})
    with pytest.raises(UserError, match=rf"run {first} is being written by this studio"):
        runner.submit(lambda ctx: None, kind="train3d", existing_run=tmp_path / first)
    gate.set()
    assert runner.wait(first, timeout=30)["state"] == "succeeded"
    again = runner.submit(lambda ctx: None, kind="train3d", existing_run=tmp_path / first)  # free once it ended
    assert runner.wait(again, timeout=30)["state"] == "succeeded"


@pytest.fixture
def fmnist(tmp_path, monkeypatch):
    from tests.test_vae_train import _fake_fashion_mnist

    folder = tmp_path / "fmnist"
    folder.mkdir()
    _fake_fashion_mnist(folder)
    monkeypatch.setenv("DS_FASHION_MNIST", str(folder))
    return folder


def _killed(run_dir: Path) -> None:
    """The run as a SIGKILL of its studio leaves it: running at 17 %, owned by a dead process."""
    runs.write_status(run_dir, state="running", progress=0.17, message="distill epoch 1", pid=_dead_pid(),
                      finished=None)


def test_a_killed_vae_run_resumes_from_the_studio_and_its_status_follows_the_cli(fmnist, roots):
    from gradio_client import Client

    from studio.tabs.runs import run_rows
    from tests.conftest import served_studio

    cfg = {"dataset": "fashion-mnist", "limit": 16, "val_images": 8, "batch_size": 16, "teacher_epochs": 1,
           "epochs": 1, "finetune_epochs": 0, "perceptual_weight": 0.0, "report": False, "teacher_latent_dim": 8,
           "student_latent_dim": 8, "student_base_channels": 4}
    with served_studio(roots) as (url, studio):
        from engine.workflows import distil_and_report

        run_id = studio.runner.submit(distil_and_report, kind="vae", config=cfg)
        assert studio.runner.wait(run_id, timeout=300)["state"] == "succeeded"
        run_dir = roots["runs"] / run_id
        _killed(run_dir)
        state = {r[0]: r for r in run_rows(studio)}[run_id]
        assert (state[2], state[5]) == ("interrupted", "17%")

        client = Client(url, verbose=False)
        client.predict(run_id, api_name="/vae_resume")
        assert studio.runner.wait(run_id, timeout=300)["state"] == "succeeded"
        assert {r[0]: r for r in run_rows(studio)}[run_id][2] == "succeeded"
        assert "resuming after" in (run_dir / "log.txt").read_text()

        _killed(run_dir)  # killed again, then finished by the CLI
        rc, out, err = run_cli(["vae", "distill", "--resume", "--checkpoint-dir", str(run_dir), "--quiet",
                                "--no-report"])
        assert rc == 0, err
        row = {r[0]: r for r in run_rows(studio)}[run_id]
        assert (row[2], row[5]) == ("succeeded", "100%")
        assert runs.load_run(run_id, roots["runs"])["status"]["pid"] == os.getpid()

        with held_by_another_process(run_dir):  # a writer at work: neither face starts a second one
            shown = client.predict(run_id, api_name="/vae_resume")
            assert "is being written by another process" in shown[0]
            rc, _, err = run_cli(["vae", "distill", "--resume", "--checkpoint-dir", str(run_dir), "--quiet"])
            assert rc == 2 and "is being written by another process" in err
        bad = client.predict("nope", api_name="/vae_resume")
        assert "no run 'nope'" in bad[0]


def test_a_run_written_inside_a_live_job_reads_as_running(tmp_path):
    """The baseline of a student + baseline job is a second run the job writes (holding its lock): the
    Runs tab shows it running while the job runs, not interrupted."""
    import threading

    from studio.context import Studio
    from studio.tabs.runs import run_rows

    gate, inside = threading.Event(), threading.Event()
    sub = runs.create_run("train3d", {"epochs": 1}, root=tmp_path, run_id="pair-baseline")

    def pair(ctx, config):
        with runs.RunLock(sub):
            runs.RunRecorder(sub).start("running")
            inside.set()
            gate.wait(30)
            runs.RunRecorder(sub).finish("succeeded", "done")

    runner = JobRunner(runs_root=tmp_path)
    studio = Studio(runner=runner, data_root=tmp_path, cache_root=tmp_path, runs_root=tmp_path,
                    scratch=tmp_path / "scratch")
    job = runner.submit(pair, kind="train3d", config={"epochs": 1})
    assert inside.wait(30)
    states = {r[0]: r[2] for r in run_rows(studio)}
    assert states == {job: "running", "pair-baseline": "running"}, states
    gate.set()
    assert runner.wait(job, timeout=30)["state"] == "succeeded"
    assert {r[0]: r[2] for r in run_rows(studio)}["pair-baseline"] == "succeeded"
