"""CLI: --help, runs list / show, one-line errors for user mistakes."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from engine import runs

ROOT = Path(__file__).resolve().parent.parent


def cli(*args, env_runs=None):
    import os

    env = dict(os.environ)
    if env_runs is not None:
        env["DS_RUNS"] = str(env_runs)
    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=120)


def test_help_lists_subcommands():
    out = cli("--help")
    assert out.returncode == 0
    assert "runs" in out.stdout


def test_runs_list_and_show(tmp_path):
    empty = cli("runs", "list", env_runs=tmp_path)
    assert empty.returncode == 0 and "no runs" in empty.stdout
    path = runs.create_run("vae", {"epochs": 2}, root=tmp_path)
    runs.append_history(path, {"epoch": 1, "loss": 0.25})
    runs.write_status(path, state="succeeded", started=10.0, finished=70.0)
    listed = cli("runs", "list", env_runs=tmp_path)
    assert listed.returncode == 0
    assert path.name in listed.stdout and "succeeded" in listed.stdout and "1m 00s" in listed.stdout
    as_json = json.loads(cli("runs", "list", "--json", env_runs=tmp_path).stdout)
    assert as_json[0]["id"] == path.name
    shown = cli("runs", "show", path.name, env_runs=tmp_path)
    assert shown.returncode == 0 and '"loss": 0.25' in shown.stdout


def test_user_mistakes_are_one_line_errors(tmp_path):
    for args in (("runs", "show", "../x"), ("runs", "show", "nope")):
        out = cli(*args, env_runs=tmp_path)
        assert out.returncode == 2
        assert out.stderr.startswith("error: ") and "Traceback" not in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1
