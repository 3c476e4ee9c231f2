"""Safe by default: weights-only loading, limited and checked uploads, a localhost bind, UI paths kept
inside the roots, and heavy jobs from two sessions queued one after the other."""
from __future__ import annotations

import ast
import html
import re
import threading
import time
from pathlib import Path

import httpx
import pytest

from engine.config import UserError, confine
from engine.data.sample_shoes import build_sample
from engine.jobs import NULL_CONTEXT
from tests.conftest import make_roots, served_studio

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted([*ROOT.glob("engine/**/*.py"), *ROOT.glob("studio/**/*.py"), *ROOT.glob("bench/**/*.py"),
                  ROOT / "app.py"])


class _WritesAMarker:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


# -- loading ----------------------------------------------------------------------------------------
def _torch_load_calls(tree: ast.AST) -> list[ast.Call]:
    """Calls of ``torch.load`` / ``torch.serialization.load`` / a ``load`` imported from torch."""
    imported = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                and (n.module or "").startswith("torch") for a in n.names if a.name == "load"}
    calls = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        dotted = ast.unparse(f)
        if dotted in ("torch.load", "torch.serialization.load") or (isinstance(f, ast.Name) and f.id in imported):
            calls.append(node)
    return calls


def _call_text(text: str, start: int) -> str:
    """The argument text of a call whose ``(`` ends at ``start`` (up to the matching ``)``)."""
    depth = 1
    for i in range(start, min(len(text), start + 500)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return text[start:i]
    return text[start:start + 500]


def test_every_torch_load_passes_weights_only_true():
    assert len(SOURCES) > 50
    calls, mentions = 0, 0
    for path in SOURCES:
        text = path.read_text(encoding="utf-8")
        for call in _torch_load_calls(ast.parse(text)):
            calls += 1
            kw = {k.arg: k.value for k in call.keywords}
            assert isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True, \
                f"{path.relative_to(ROOT)}:{call.lineno}: torch.load without weights_only=True"
        for m in re.finditer(r"torch\.load\(", text):  # docstrings and examples too: nobody copies a bad one
            mentions += 1
            assert "weights_only=True" in _call_text(text, m.end()), \
                f"{path.relative_to(ROOT)}: {text[m.start():m.start() + 80]!r}"
    print(f"\nSECURITY torch.load: {calls} call(s) and {mentions} mention(s) in {len(SOURCES)} files, "
          "all weights_only=True")
    assert calls >= 1


def test_nothing_unpickles_without_a_whitelist():
    """No ``pickle.load(s)`` / ``np.load(allow_pickle=True)``; an ``Unpickler`` subclass must override
    ``find_class`` (the CIFAR-10 reader admits plain containers and numpy arrays only)."""
    for path in SOURCES:
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(ROOT)
        assert not re.search(r"\bpickle\.loads?\(|allow_pickle\s*=\s*True|\bdill\b|\bjoblib\.load", text), rel
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and any("Unpickler" in ast.unparse(b) for b in node.bases):
                assert any(isinstance(n, ast.FunctionDef) and n.name == "find_class" for n in node.body), rel


def test_a_pickled_checkpoint_cannot_run_code(tmp_path):
    import torch

    from engine import storage
    from engine.cache import load_entry
    from engine.students.checkpoint import load_checkpoint as load_mesh_checkpoint
    from engine.train import vae

    marker = tmp_path / "code-ran"
    torch.save({"state_dict": _WritesAMarker(marker)}, tmp_path / "shoe_000.pt")
    for load in (storage.torch_load, load_mesh_checkpoint, vae.load_checkpoint):
        with pytest.raises(UserError, match=r"safe loading \(weights_only\) refused it .*GLOBAL") as info:
            load(tmp_path / "shoe_000.pt")
        assert "add_safe_globals" not in str(info.value) and "False" not in str(info.value)  # no unsafe advice
    with pytest.raises(UserError, match="refused"):
        load_entry(tmp_path, "shoe_000")
    assert not marker.exists()


# -- the studio -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The studio launched as ``app.py`` launches it (upload limit, queue), on a free port."""
    from gradio_client import Client

    import app as app_module

    base = tmp_path_factory.mktemp("security")
    roots = make_roots(base)
    build_sample(NULL_CONTEXT, roots["data"] / "sample", count=2, seed=0)
    (roots["data"] / "escape").symlink_to("/etc")  # a link under the data root pointing out of it
    (roots["data"] / "alias").symlink_to(roots["data"] / "sample")  # one pointing inside is fine
    with served_studio(roots, scratch=base / "scratch", queue={"default_concurrency_limit": 4},
                       max_file_size=app_module.MAX_UPLOAD) as (url, studio):
        yield {"url": url, "client": Client(url, verbose=False), "studio": studio, "roots": roots, "base": base}


def _wait_idle(studio, timeout=120):
    end = time.time() + timeout
    while studio.runner.active() and time.time() < end:
        time.sleep(0.1)
    assert not studio.runner.active()


def test_app_launches_on_localhost_with_an_upload_limit_by_default(roots, monkeypatch):
    import gradio as gr

    import app as app_module

    seen = []
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kw: seen.append(kw))
    monkeypatch.delenv("DS_HOST", raising=False)
    app_module.main([])
    monkeypatch.setenv("DS_HOST", "0.0.0.0")
    app_module.main([])
    monkeypatch.delenv("DS_HOST")
    app_module.main(["--host", "192.0.2.1"])
    assert [kw["server_name"] for kw in seen] == ["127.0.0.1", "0.0.0.0", "192.0.2.1"]
    assert all(kw["max_file_size"] == app_module.MAX_UPLOAD == "20mb" for kw in seen)
    assert re.search(r"^HOST\s*\?=\s*127\.0\.0\.1$", (ROOT / "Makefile").read_text(), re.MULTILINE)


def test_uploads_over_the_limit_are_refused(app, tmp_path):
    small, big = tmp_path / "small.png", tmp_path / "big.png"
    small.write_bytes(b"\x89PNG" + b"0" * 1000)
    big.write_bytes(b"\x89PNG" + b"0" * (21 * 1024 * 1024))  # 21 MB > 20 MB
    answers = {}
    for f in (small, big):
        with open(f, "rb") as fh:
            answers[f.name] = httpx.post(f"{app['url']}gradio_api/upload", files={"files": (f.name, fh, "image/png")},
                                         timeout=120)
    assert answers["small.png"].status_code == 200
    assert answers["big.png"].status_code == 413 and "maximum allowed size" in answers["big.png"].text


def test_uploads_are_type_checked_and_server_files_cannot_be_named(app, tmp_path):
    from gradio_client import handle_file

    client, studio = app["client"], app["studio"]
    fake = tmp_path / "front.png"
    fake.write_text("#!/bin/sh\necho I am a script named front.png\n")
    client.predict("uploaded photos", None, None, "visual-hull", "fast", None, 0, handle_file(str(fake)), None, None,
                   None, api_name="/teacher_generate")
    _wait_idle(studio)
    job = studio.runner.jobs()[-1]
    assert job["state"] == "failed" and re.search(r"front\.png: unreadable image", job["error"]), job["error"]
    # a hand-made request naming a server file instead of an upload: refused before any handler runs
    n_jobs = len(studio.runner.jobs())
    fd = {"path": "/etc/passwd", "orig_name": "front.png", "meta": {"_type": "gradio.FileData"}}
    r = httpx.post(f"{app['url']}gradio_api/call/teacher_generate",
                   json={"data": ["uploaded photos", None, None, "visual-hull", "fast", None, 0, fd, None, None, None]})
    events = httpx.get(f"{app['url']}gradio_api/call/teacher_generate/{r.json()['event_id']}", timeout=60).text
    assert "event: error" in events
    time.sleep(0.5)
    assert len(studio.runner.jobs()) == n_jobs
    for path in ("/etc/passwd", str(app["roots"]["data"] / "sample" / "OBJs" / "shoe_000.obj"), str(ROOT / "app.py")):
        assert httpx.get(f"{app['url']}gradio_api/file={path}").status_code == 403, path


@pytest.mark.parametrize("name", ["../..", "/etc", "sample/../../..", "escape", "../x", ".", "sample/../escape"])
def test_dataset_paths_from_the_ui_stay_inside_the_data_root(app, name):
    studio = app["studio"]
    with pytest.raises(UserError, match=r"outside the allowed folders|bad dataset name"):
        studio.dataset_path(name)
    _gallery, glb, note = app["client"].predict(name, "shoe_000", api_name="/shoe_preview")
    assert glb is None and re.search(r"outside the allowed folders|bad dataset name", note), note


def test_confine_resolves_symlinks_and_keeps_good_paths(app):
    data = app["roots"]["data"]
    assert app["studio"].dataset_path("sample") == data / "sample"
    assert app["studio"].dataset_path("alias") == data / "alias"  # a link that stays inside
    assert app["studio"].dataset_path(str(data / "sample")) == (data / "sample").resolve()
    roots = [data, app["roots"]["cache"], app["roots"]["runs"]]
    for bad in ("/etc/passwd", data / ".." / "..", data / "escape" / "passwd", "~"):
        with pytest.raises(UserError, match="outside the allowed folders"):
            confine(bad, roots)
    assert confine(app["roots"]["runs"] / "x" / ".." / "y", roots) == (app["roots"]["runs"] / "y").resolve()


VAE_REST = (16, 1, 1, 0, 8, 1e-3, 0.3, 0.1, 0.3, 0.2, 0.1, 3.0, 0)  # the VAE tab's other fields


@pytest.mark.parametrize("api_name, args, expect", [
    ("/vae_start", ("folder:/etc", *VAE_REST), "outside the allowed folders"),
    ("/vae_start", ("cifar10:../..", *VAE_REST), "outside the allowed folders"),
    ("/vae_start", ("folder:escape", *VAE_REST), "outside the allowed folders"),
    ("/cache_summary", ("../cache",), "bad cache name"),
    ("/build_cache", ("sample", "visual-hull", "fast", 0, "../../x"), "bad cache name"),
    ("/run_detail", ("../../etc",), "bad run ID"),
    ("/train_resume", ("/etc",), "bad run ID"),
], ids=["vae-folder-abs", "vae-cifar-dotdot", "vae-folder-symlink", "cache-name", "new-cache-name", "run-id",
        "resume-run-id"])
def test_other_ui_paths_stay_inside_their_roots(app, api_name, args, expect):
    out = app["client"].predict(*args, api_name=api_name)
    assert expect in html.unescape(str(out)), out
    assert not app["studio"].runner.active()


def test_two_sessions_starting_heavy_jobs_together_are_queued_and_both_complete(app):
    """Two browser sessions press Build at the same moment: the runner's one CPU lane runs the builds one
    after the other (the second waits queued) and both finish."""
    from gradio_client import Client

    studio = app["studio"]
    clients = [Client(app["url"], verbose=False) for _ in range(2)]
    gate = threading.Barrier(2)
    errors = []

    def press(i):
        try:
            gate.wait()
            clients[i].predict("sample", "visual-hull", "fast", 0, f"two-sessions-{i}", api_name="/build_cache")
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=press, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    _wait_idle(studio)
    jobs = sorted((j for j in studio.runner.jobs() if j["kind"] == "cache"),
                  key=lambda j: j["started"])
    assert len(jobs) == 2 and all(j["state"] == "succeeded" for j in jobs), [j["error"] for j in jobs]
    first, second = jobs
    assert second["created"] < first["finished"]  # both were submitted while the first one ran ...
    assert second["started"] >= first["finished"]  # ... and the second waited for it
    for i in range(2):
        assert (app["roots"]["cache"] / f"two-sessions-{i}" / "shoe_001.pt").is_file()
