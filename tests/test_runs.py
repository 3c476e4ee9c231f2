"""Run folders: listing, interrupted detection after a restart, torn history lines, bad IDs."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from engine import runs, storage
from engine.config import UserError


def test_create_list_and_load(tmp_path):
    path = runs.create_run("train3d", {"epochs": 3}, root=tmp_path)
    runs.append_history(path, {"epoch": 1, "loss": 0.5})
    runs.write_status(path, state="succeeded", started=1.0, finished=5.0)
    rows = runs.list_runs(tmp_path)
    assert [r["id"] for r in rows] == [path.name]
    assert rows[0]["state"] == "succeeded" and rows[0]["duration"] == 4.0 and rows[0]["kind"] == "train3d"
    run = runs.load_run(path.name, tmp_path)
    assert run["config"] == {"kind": "train3d", "epochs": 3}
    assert run["history"] == [{"epoch": 1, "loss": 0.5}]


def test_running_run_of_a_dead_process_shows_interrupted(tmp_path):
    """Simulated restart: a status left 'running' by a process that no longer exists."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    path = runs.create_run("cache", {}, root=tmp_path)
    runs.write_status(path, state="running", pid=int(dead.stdout), started=1.0)
    row = runs.list_runs(tmp_path)[0]
    assert row["state"] == "interrupted"
    assert "interrupted" in runs.load_run(path.name, tmp_path)["status"]["message"]
    # the file itself is untouched: resuming decides what happens next
    assert storage.read_json(path / "status.json")["state"] == "running"


def test_own_run_not_live_in_this_runner_shows_interrupted(tmp_path):
    path = runs.create_run("cache", {}, root=tmp_path)
    runs.write_status(path, state="running", pid=os.getpid())
    assert runs.list_runs(tmp_path, live_ids=set())[0]["state"] == "interrupted"
    assert runs.list_runs(tmp_path, live_ids={path.name})[0]["state"] == "running"


def test_torn_history_line_is_skipped(tmp_path):
    path = runs.create_run("x", {}, root=tmp_path)
    runs.append_history(path, {"step": 1})
    with open(path / "history.jsonl", "a") as f:
        f.write('{"step": 2, "lo')  # a write cut by SIGKILL
    assert runs.read_history(path) == [{"step": 1}]


@pytest.mark.parametrize("bad", ["../x", "", "a/b", "x" * 81, "with space"])
def test_bad_run_ids_are_rejected(tmp_path, bad):
    with pytest.raises(UserError, match="bad run ID"):
        runs.load_run(bad, tmp_path)


def test_folders_without_status_are_ignored(tmp_path):
    (tmp_path / "junk").mkdir()
    (tmp_path / "file.txt").write_text("x")
    assert runs.list_runs(tmp_path) == []
    assert runs.list_runs(tmp_path / "missing") == []


def test_atomic_json_write_leaves_no_temp_files(tmp_path):
    storage.write_json(tmp_path / "a.json", {"x": 1})
    storage.write_json(tmp_path / "a.json", {"x": 2})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
