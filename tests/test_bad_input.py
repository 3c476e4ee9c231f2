"""Bad input is answered by a clear message and never crashes anything.

Every case goes through the CLI (``engine.cli.main``: exit 2 with exactly one ``error:`` line and no
traceback; ``data check`` reports problems as rows and exits 1) and, where the studio takes that input,
through its handlers via ``gradio_client`` (the answer is the handler's return value, the message of the
job it started, or a ``gr.Error`` toast raised by a component's own range check; Gradio's bare
"has raised an exception" never counts). A few cases also run as a real ``python -m engine`` process.
After all of them the studio still answers good requests. The inputs are built by ``tests.bad_inputs``.
"""
from __future__ import annotations

import contextlib
import html
import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.cli import main
from engine.jobs import NULL_CONTEXT
from tests.bad_inputs import CASES, Case, build_inputs
from tests.conftest import served_studio
from tests.integrity import check_cache, disk_full, read_only

ROOT = Path(__file__).resolve().parent.parent
GRADIO_CRASH = "has raised an exception"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """The bad inputs on disk, the roots pointed at them, and the studio on a free port."""
    from gradio_client import Client

    paths = build_inputs(tmp_path_factory.mktemp("bad"))
    with pytest.MonkeyPatch.context() as mp:
        for name in ("data", "cache", "runs"):
            mp.setenv(f"DS_{name.upper()}", str(paths[name]))
        with served_studio(paths, scratch=paths["base"] / "scratch") as (url, studio):
            yield {"paths": paths, "studio": studio, "client": Client(url, verbose=False)}


def fill(value, paths: dict):
    """``{name}`` placeholders of a case argument filled with the input paths; ``upload:`` -> a file."""
    if not isinstance(value, str):
        return value
    value = value.format(**{k: str(v) for k, v in paths.items()})
    if value.startswith("upload:"):
        from gradio_client import handle_file

        return handle_file(value[len("upload:"):])
    return value


@contextlib.contextmanager
def condition(case: Case, monkeypatch, paths: dict):
    """The fault a case needs: NaN student output (``nan``), a full disk for cache entries (``disk-full``) or
    the history (``disk-full-history``), a read-only runs or cache root (``read-only-runs`` / ``-cache``)."""
    if case.fault == "nan":
        from engine.students.mesh_student import MeshStudent

        forward = MeshStudent.forward
        monkeypatch.setattr(MeshStudent, "forward", lambda self, views: forward(self, views) * float("nan"))
        yield
    elif case.fault == "disk-full":
        with disk_full(monkeypatch, match=".pt.", after=1):
            yield
    elif case.fault == "disk-full-history":
        with disk_full(monkeypatch, match="history.jsonl", after=0, temp_only=False):
            yield
    elif case.fault and case.fault.startswith("read-only-"):
        with read_only(monkeypatch, paths[case.fault.split("-")[-1]]):
            yield
    else:
        yield


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


CLI_CASES = [c for c in CASES if c.cli]
UI_CASES = [c for c in CASES if c.ui]


def test_the_suite_is_big_enough():
    assert len(CASES) >= 30 and len(CLI_CASES) >= 30 and len(UI_CASES) >= 20
    print(f"\nBAD INPUT: {len(CASES)} inputs, {len(CLI_CASES)} through the CLI, {len(UI_CASES)} through the studio")


@pytest.mark.parametrize("case", CLI_CASES, ids=[c.id for c in CLI_CASES])
def test_cli_answers_with_one_clear_line(case: Case, env, monkeypatch):
    paths = env["paths"]
    argv = [fill(a, paths) for a in case.cli]
    with condition(case, monkeypatch, paths):
        rc, out, err = run_cli(argv)  # anything but a UserError would raise out of main() here
    assert "Traceback" not in out + err
    if case.cli_rc == 2:
        assert rc == 2, (out, err)
        errors = [line for line in err.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, err
        assert re.search(case.expect, errors[0]), errors[0]
    else:  # a validator's report: a row per shoe, exit code = whether any has a problem
        assert rc == case.cli_rc, (out, err)
        assert re.search(case.expect, out, re.MULTILINE), out
    if case.check:
        case.check(paths, "cli")


def studio_answer(env, api_name: str, args: tuple) -> str:
    """Everything the UI shows for one request: the handler's outputs, then the message (or result) of
    each job the request started, as the tab's timer renders it."""
    from gradio_client.exceptions import AppError

    from studio.components import progress_html

    studio, client = env["studio"], env["client"]
    before = {j["id"] for j in studio.runner.jobs()}
    try:
        out = client.predict(*args, api_name=api_name)
    except AppError as exc:  # a gr.Error raised by a component's own check (e.g. a Number's minimum)
        assert GRADIO_CRASH not in str(exc), f"{api_name} crashed: {exc}"
        return str(exc)
    shown = [json.dumps(out, default=str)]
    for job in [j for j in studio.runner.jobs() if j["id"] not in before]:
        snap = studio.runner.wait(job["id"], timeout=300)
        assert snap["state"] in ("succeeded", "failed"), snap
        if snap["state"] == "failed":
            assert "Traceback" not in snap["error"]
        shown.append(progress_html(snap))
        if snap["state"] == "succeeded":
            shown.append(json.dumps(studio.runner.result(job["id"]), default=str))
    return html.unescape("\n".join(shown))


@pytest.mark.parametrize("case", UI_CASES, ids=[c.id for c in UI_CASES])
def test_studio_answers_with_a_clear_message(case: Case, env, monkeypatch):
    api_name, args = case.ui
    with condition(case, monkeypatch, env["paths"]):
        shown = studio_answer(env, api_name, tuple(fill(a, env["paths"]) for a in args))
    assert re.search(case.ui_expect or case.expect, shown), shown[:2000]
    assert "Traceback" not in shown
    if case.check:
        case.check(env["paths"], "ui")


@pytest.mark.parametrize("argv, expect", [
    (["runs", "show", "../x"], r"bad run ID '\.\./x'"),
    (["train", "--config", "{configs}/train_unknown_key.json"], r"unknown training config key\(s\): bogus"),
    (["vae", "report", "--checkpoint", "{ckpts}/junk.pt"], r"junk\.pt: not a (plain|readable) weights file"),
], ids=["bad-id", "unknown-config-key", "junk-checkpoint"])
def test_a_real_process_exits_2_with_one_line(argv, expect, env):
    proc = subprocess.run([sys.executable, "-m", "engine", *[fill(a, env["paths"]) for a in argv]], cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and re.search(expect, lines[0]), proc.stderr


def test_a_full_disk_keeps_the_cache_consistent_and_a_rerun_completes(env, monkeypatch):
    """The first entry is written, the second hits ENOSPC: the build stops with the message, the cache
    holds exactly the finished entry (no orphan, no temp file), and a rerun finishes the rest."""
    from engine.cache import build_cache
    from engine.config import UserError
    from engine.teachers.base import TeacherSettings

    paths = env["paths"]
    cache = paths["cache"] / "disk-full-direct"
    with disk_full(monkeypatch, match=".pt.", after=1) as seen, pytest.raises(UserError, match="no space left"):
        build_cache(NULL_CONTEXT, paths["data"] / "sample", cache, settings=TeacherSettings(preset="fast"))
    assert seen["failed"] == 1
    state = check_cache(cache)
    assert (state["ok"], state["orphans"], state["temps"]) == (1, [], 0)
    totals = build_cache(NULL_CONTEXT, paths["data"] / "sample", cache, settings=TeacherSettings(preset="fast"))
    assert (totals["skipped"], totals["done"], totals["failed"]) == (1, 1, 0)
    assert check_cache(cache)["ok"] == 2


def test_evaluating_a_run_of_an_earlier_session_shows_its_error(env):
    """A new browser session picks a run the studio did not start and clicks Evaluate; the tab's timer
    then shows the job's message (it used to fail on the missing job snapshot of such a run)."""
    from gradio_client import Client

    client = Client(env["client"].src, verbose=False)
    client.predict("vae_run", api_name="/train_evaluate")
    end = time.time() + 60
    while env["studio"].runner.active() and time.time() < end:
        time.sleep(0.1)
    progress = html.unescape(client.predict("vae_run", api_name="/train_poll")[0])
    assert "failed" in progress and "best.pt: not a mesh-student checkpoint" in progress


def test_the_studio_still_answers_good_requests(env):
    """After every bad input above: a preview, a validation job and a run listing all work."""
    client, studio = env["client"], env["studio"]
    gallery, glb, note = client.predict("sample", "shoe_000", api_name="/shoe_preview")
    assert len(gallery) == 4 and glb.endswith(".glb") and "vertices" in note
    shown = studio_answer(env, "/validate_dataset", ("sample",))
    assert '"status": "ok"' in shown and "succeeded" in shown
    assert client.predict(api_name="/list_runs")["data"]
    assert not studio.runner.active()
