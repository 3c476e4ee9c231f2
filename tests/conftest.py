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


class Recording:
    """A job context that keeps every metric record in ``records`` and is never cancelled (unless a test
    replaces ``cancelled``)."""

    def __init__(self, run_dir=None):
        self.run_dir, self.job_id, self.records = run_dir, None, []

    def progress(self, fraction, message=""):
        assert 0 <= fraction <= 1

    def log(self, text):
        pass

    def metric(self, record):
        self.records.append(record)

    def cancelled(self):
        return False

    def check_cancelled(self):
        pass


@pytest.fixture(scope="session")
def tiny_vh(tmp_path_factory):
    """5 procedural shoes (``data/``) and their visual-hull cache, fast preset (``cache/``), built once."""
    from engine.cache import build_cache
    from engine.data.sample_shoes import build_sample
    from engine.jobs import NULL_CONTEXT
    from engine.teachers.base import TeacherSettings

    root = tmp_path_factory.mktemp("tiny-vh")
    build_sample(NULL_CONTEXT, root / "data", count=5, seed=0)
    build_cache(NULL_CONTEXT, root / "data", root / "cache", settings=TeacherSettings(preset="fast"))
    return root


TINY_TEACHER = {"width": 4, "sampled": 4, "view_channels": 8, "hidden": 16, "layers": 2, "cnn_size": 32}


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory):
    """A tiny occupancy teacher pre-trained for 2 epochs on a 6-shoe, 64 px corpus (a few seconds):
    ``(folder, result, records)`` with the weights at ``folder / "w.pt"``."""
    from engine.data.corpus import build_corpus
    from engine.jobs import NULL_CONTEXT
    from engine.train.teacher_pretrain import pretrain_teacher

    base = tmp_path_factory.mktemp("tiny-teacher")
    build_corpus(NULL_CONTEXT, base / "corpus", families=["sneaker", "boot"], count=6, seed=2, image_size=64,
                 n_query=512)

    ctx = Recording(base / "run")
    result = pretrain_teacher(ctx, {"corpus": str(base / "corpus"), "out": str(base / "w.pt"), "epochs": 2,
                                    "val_shoes": 2, "batch_size": 2, "queries": 256, "val_resolution": 16,
                                    "model": TINY_TEACHER})
    return base, result, ctx.records
