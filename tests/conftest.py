"""Shared fixtures: isolated roots (never the repo's data/, cache/, runs/) and free ports."""
from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture
def roots(tmp_path, monkeypatch):
    """Point DS_DATA / DS_CACHE / DS_RUNS at fresh temporary folders."""
    paths = {name: tmp_path / name for name in ("data", "cache", "runs")}
    for name, path in paths.items():
        path.mkdir()
        monkeypatch.setenv(f"DS_{name.upper()}", str(path))
    return paths


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
