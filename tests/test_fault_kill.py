"""Fault suite: SIGKILL real processes at seeded random points of a cache build and of a training run.

After every kill: every cache entry / checkpoint file that exists loads with ``weights_only=True``,
entries recorded in the metadata are never lost or rebuilt, at most one shoe / one epoch of finished
work is redone, and the Runs tab (``studio.tabs.runs.run_rows``) shows the killed run as
``interrupted``. Then the build / the run is resumed to the end: the resumed training run ends with
exactly the numbers of an uninterrupted one. The figures are printed (``-s``) and quoted in
docs/RELIABILITY.md.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from engine import runs
from engine.cache import build_cache, read_metadata
from engine.data.sample_shoes import build_sample
from engine.jobs import NULL_CONTEXT, JobRunner
from engine.students.checkpoint import load_checkpoint
from engine.teachers.base import TeacherSettings
from tests.integrity import check_cache, check_checkpoints, temp_files

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SEED = 20240817
KILLS = 10
SHOES = 6
EPOCHS = 12
LINES_PER_EPOCH = 3  # 2 step records + 1 epoch record (4 train shoes, batch 2)
TINY = {"width": 4, "hidden": 16, "blocks": 1, "sampled": 8, "image_size": 32}
ENV = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", GRADIO_ANALYTICS_ENABLED="False")

# The studio's Cache tab path: the job runner runs engine.cache.build_cache with a run folder.
RUNNER_DRIVER = """
import sys
from pathlib import Path
from engine import cache
from engine.jobs import JobRunner
from engine.teachers.base import TeacherSettings
data, out, runs_root = map(Path, sys.argv[1:4])
runner = JobRunner(runs_root=runs_root)
job = runner.submit(cache.build_cache, kind="cache", run_config={"dataset": str(data), "cache": str(out)},
                    data_root=data, cache_dir=out, teacher="visual-hull", settings=TeacherSettings(preset="fast"))
sys.exit(0 if runner.wait(job)["state"] == "succeeded" else 1)
"""


@pytest.fixture(scope="module")
def shoes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fault")
    build_sample(NULL_CONTEXT, root / "data", count=SHOES, seed=1)
    return root


def _runs_tab_state(runs_root: Path, run_id: str) -> str:
    """The state the Runs tab shows for ``run_id`` (its own table function, a fresh studio process)."""
    from studio.context import Studio
    from studio.tabs.runs import run_rows

    studio = Studio(runner=JobRunner(runs_root=runs_root), data_root=runs_root, cache_root=runs_root,
                    runs_root=runs_root, scratch=runs_root.parent / "scratch")
    return {row[0]: row[2] for row in run_rows(studio)}[run_id]


def _wait(proc: subprocess.Popen, ready, timeout: float = 90) -> bool:
    """Poll ``ready()`` until true (→ True) or the process ends (→ False)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            return False
        if ready():
            return True
        time.sleep(0.005)
    raise AssertionError("the process neither reached its kill point nor ended")


def _kill(proc: subprocess.Popen) -> bool:
    """SIGKILL; False when the process had already ended by itself."""
    if proc.poll() is not None:
        return False
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    return proc.returncode == -signal.SIGKILL


def test_cache_build_survives_sigkill_at_random_points(shoes, tmp_path):
    """Alternately the CLI (`cache build`) and the studio's job-runner path, each killed after a seeded
    number of recorded entries (0 or 1 more than it started with) plus a seeded delay of up to ~1 shoe."""
    rng = random.Random(SEED)
    data, runs_root = shoes / "data", tmp_path / "runs"
    driver = tmp_path / "driver.py"
    driver.write_text(RUNNER_DRIVER)
    figures = {"kills": 0, "entries_checked": 0, "orphans_redone": 0, "temps_left": 0, "lost": 0, "series": 1}
    cache = tmp_path / "cache-1"
    while figures["kills"] < KILLS:
        before = check_cache(cache) if cache.is_dir() else {"ok_ids": {}, "ok": 0}
        via_runner = figures["kills"] % 2 == 1
        argv = ([sys.executable, str(driver), str(data), str(cache), str(runs_root)] if via_runner else
                [sys.executable, "-m", "engine", "cache", "build", "--data", str(data), "--out", str(cache),
                 "--preset", "fast"])
        target = min(before["ok"] + rng.choice([0, 1]), SHOES - 1)
        delay = rng.uniform(0.0, 0.15)
        started = time.time()
        old_runs = set(runs_root.iterdir()) if runs_root.is_dir() else set()
        proc = subprocess.Popen(argv, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def working():  # this process rewrote metadata.json and recorded `target` entries
            meta_file = cache / "metadata.json"
            if not meta_file.is_file() or meta_file.stat().st_mtime < started:
                return False
            meta = read_metadata(cache) or {"entries": {}}
            return sum(e.get("status") == "ok" for e in meta["entries"].values()) >= target

        reached = _wait(proc, working)
        if reached:
            time.sleep(delay)
        if not _kill(proc):  # it finished first: the cache is complete; start a fresh one
            assert proc.returncode == 0
            assert check_cache(cache)["ok"] == SHOES
            figures["series"] += 1
            cache = tmp_path / f"cache-{figures['series']}"
            continue
        figures["kills"] += 1
        after = check_cache(cache)
        figures["entries_checked"] += after["files"]
        assert len(after["orphans"]) <= 1, after  # at most the shoe in progress is redone
        figures["orphans_redone"] += len(after["orphans"])
        lost = [sid for sid, t in before["ok_ids"].items() if after["ok_ids"].get(sid) != t]
        figures["lost"] += len(lost)  # recorded entries are neither lost nor rebuilt
        assert not lost
        if via_runner:
            (run_id,) = [p.name for p in set(runs_root.iterdir()) - old_runs]
            assert _runs_tab_state(runs_root, run_id) == "interrupted"
    final = subprocess.run([sys.executable, "-m", "engine", "cache", "build", "--data", str(data), "--out", str(cache),
                            "--preset", "fast"], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    done = check_cache(cache)
    figures["entries_checked"] += done["files"]
    assert done["ok"] == SHOES and not done["orphans"]
    figures["temps_left"] = sum(len(temp_files(c)) for c in tmp_path.glob("cache-*"))  # hidden, never loaded
    meta = read_metadata(cache)
    assert all(e["status"] == "ok" and e["error"] is None for e in meta["entries"].values())
    print(f"\nFAULT cache: {json.dumps(figures)}")
    assert figures["lost"] == 0


def _train_cfg(shoes: Path) -> dict:
    return {"data": str(shoes / "data"), "cache": str(shoes / "cache"), "epochs": EPOCHS, "batch_size": 2,
            "n_points": 500, "target_points": 500, "val_fraction": 0.34, "seed": 3, "checkpoint_every": 2,
            "student": TINY}


def _history_lines(run_dir: Path) -> int:
    try:
        return (run_dir / "history.jsonl").read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _numbers(run_dir: Path) -> list[dict]:
    return runs.without_timings(runs.read_history(run_dir))


def test_training_survives_sigkill_at_random_points(shoes, tmp_path):
    """`python -m engine train` killed at 10 seeded points spread over the whole run (a history line count
    plus a seeded delay of up to ~1/3 epoch), `--resume`d after each; it ends with the numbers of an
    uninterrupted run."""
    build_cache(NULL_CONTEXT, shoes / "data", shoes / "cache", settings=TeacherSettings(preset="fast"))
    rng = random.Random(SEED + 1)
    runs_root = tmp_path / "runs"
    (tmp_path / "cfg.json").write_text(json.dumps(_train_cfg(shoes)))
    base = [sys.executable, "-m", "engine", "train", "--out-runs", str(runs_root), "--quiet"]
    ref = subprocess.run(base + ["--config", str(tmp_path / "cfg.json"), "--run-id", "reference"], cwd=ROOT, env=ENV,
                         capture_output=True, text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr
    run = runs_root / "victim"
    ckpts = run / "checkpoints"
    figures = {"kills": 0, "checkpoints_checked": 0, "epochs_redone": 0, "temps_left": 0, "lost": 0}
    last_epoch = 0
    kill_lines = sorted(rng.sample(range(LINES_PER_EPOCH + 1, LINES_PER_EPOCH * EPOCHS - 1), KILLS))
    figures["kill_lines"] = kill_lines
    while figures["kills"] < KILLS:
        argv = base + (["--resume", "victim"] if last_epoch else ["--config", str(tmp_path / "cfg.json"),
                                                                   "--run-id", "victim"])
        target = max(kill_lines[figures["kills"]], LINES_PER_EPOCH * last_epoch + 1)
        delay = rng.uniform(0.0, 0.05)
        started = time.time()
        proc = subprocess.Popen(argv, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def working():  # this process wrote `target` history lines and a first last.pt exists
            hist = run / "history.jsonl"
            return ((ckpts / "last.pt").is_file() and hist.is_file() and hist.stat().st_mtime >= started
                    and _history_lines(run) >= target)

        if _wait(proc, working):
            time.sleep(delay)
        assert _kill(proc), "training ended before its kill point: raise EPOCHS"
        figures["kills"] += 1
        ck = check_checkpoints(ckpts)
        figures["checkpoints_checked"] += ck["files"]
        assert ck["last_epoch"] is not None and ck["last_epoch"] >= last_epoch  # never goes back: nothing lost
        figures["lost"] += int(ck["last_epoch"] < last_epoch)
        done = max([r["epoch"] for r in runs.read_history(run) if r.get("scope") == "epoch"], default=0)
        assert 0 <= done - ck["last_epoch"] <= 1, (done, ck)  # at most the epoch after last.pt is redone
        figures["epochs_redone"] += done - ck["last_epoch"]
        for e in range(2, ck["last_epoch"] + 1, 2):
            assert (ckpts / f"epoch_{e:04d}.pt").is_file()
        assert _runs_tab_state(runs_root, "victim") == "interrupted"
        last_epoch = ck["last_epoch"]
    final = subprocess.run(base + ["--resume", "victim"], cwd=ROOT, env=ENV, capture_output=True, text=True,
                           timeout=300)
    assert final.returncode == 0, final.stderr
    figures["checkpoints_checked"] += check_checkpoints(ckpts)["files"]
    figures["temps_left"] = len(temp_files(ckpts))  # hidden, never loaded
    assert _runs_tab_state(runs_root, "victim") == "succeeded"
    assert [r["epoch"] for r in runs.read_history(run) if r["scope"] == "epoch"] == list(range(1, EPOCHS + 1))
    assert _numbers(run) == _numbers(runs_root / "reference")  # resumed 10 times, same numbers
    a = load_checkpoint(ckpts / "last.pt")["state_dict"]
    b = load_checkpoint(runs_root / "reference" / "checkpoints" / "last.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in b)
    print(f"\nFAULT train: {json.dumps(figures)} (last kill after epoch {last_epoch} of {EPOCHS})")
    assert figures["lost"] == 0
