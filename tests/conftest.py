"""Shared fixtures: isolated roots (never the repo's data/, cache/, runs/) and free ports."""
from __future__ import annotations

import os
import socket
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture
def roots(tmp_path, monkeypatch):
    """Point DS_DATA / DS_CACHE / DS_RUNS at fresh temporary folders."""
    paths = make_roots(tmp_path)
    for name, path in paths.items():
        monkeypatch.setenv(f"DS_{name.upper()}", str(path))
    return paths


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_roots(base: Path) -> dict[str, Path]:
    """Fresh ``data`` / ``cache`` / ``runs`` folders under ``base``."""
    paths = {name: base / name for name in ("data", "cache", "runs")}
    for path in paths.values():
        path.mkdir(parents=True, exist_ok=True)
    return paths


@contextmanager
def served_studio(roots: dict[str, Path], scratch: Path | None = None, runner=None, queue: dict | None = None,
                  **launch):
    """The studio (``studio.app.build_app``) on ``roots``, launched in this process on a free port of
    127.0.0.1; yields ``(url, studio)`` and closes it on exit. ``queue`` / ``launch``: extra keywords for
    ``Blocks.queue`` / ``Blocks.launch`` (e.g. ``max_file_size`` as ``app.py`` sets it)."""
    from engine.jobs import JobRunner
    from studio.app import build_app
    from studio.context import Studio

    kwargs = {"scratch": scratch} if scratch is not None else {}
    studio = Studio(runner=runner or JobRunner(runs_root=roots["runs"]), data_root=roots["data"],
                    cache_root=roots["cache"], runs_root=roots["runs"], **kwargs)
    demo = build_app(studio)
    port = free_port()
    demo.queue(**(queue or {})).launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True,
                                       quiet=True, **launch)
    try:
        yield f"http://127.0.0.1:{port}/", studio
    finally:
        demo.close()
