"""Checks shared by the fault and bad-input suites: is a cache / checkpoint folder still whole?

A folder is whole when every file that looks like a real entry (``*.pt``, not hidden) loads with
``torch.load(weights_only=True)`` and through the engine's own loader, and every entry that the cache's
``metadata.json`` records as ``ok`` has its file with the recorded size (so a resumed build skips it).
Leftover temporary files of an interrupted atomic write (``.<name>.<random>.tmp``) are hidden and never
match ``*.pt``; they are counted, not loaded.
"""
from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

import torch


def temp_files(folder: Path) -> list[Path]:
    """Leftovers of atomic writes cut short (``engine.storage`` names them ``.<target>.<random>.tmp``)."""
    return sorted(Path(folder).glob(".*.tmp"))


def check_cache(cache_dir: Path) -> dict:
    """Assert the cache folder is whole; returns ``{files, ok, orphans, temps, ok_ids}``.

    ``orphans``: entry files written but not yet recorded in the metadata (a kill between the two
    writes) — the shoe a resumed build redoes.
    """
    from engine.cache import load_entry, read_metadata

    cache_dir = Path(cache_dir)
    files = sorted(cache_dir.glob("*.pt"))
    for f in files:
        raw = torch.load(f, weights_only=True)
        assert sorted(raw) == ["faces", "fingerprint", "normals", "points", "shoe_id", "vertices"], f
        load_entry(cache_dir, f.stem)
    meta = read_metadata(cache_dir) or {"entries": {}}
    ok = {sid: e for sid, e in meta["entries"].items() if e.get("status") == "ok"}
    for sid, e in ok.items():
        path = cache_dir / f"{sid}.pt"
        assert path.is_file() and path.stat().st_size == e["bytes"], f"{sid}: recorded ok, its file gone or changed"
    orphans = [f.stem for f in files if f.stem not in ok]
    return {"files": len(files), "ok": len(ok), "orphans": orphans, "temps": len(temp_files(cache_dir)),
            "ok_ids": {sid: e["updated"] for sid, e in ok.items()}}


def check_checkpoints(ckpt_dir: Path) -> dict:
    """Assert every checkpoint loads (``weights_only``, then ``load_checkpoint``); ``{files, temps, last_epoch}``."""
    from engine.students.checkpoint import load_checkpoint

    ckpt_dir = Path(ckpt_dir)
    files = sorted(p for p in ckpt_dir.glob("*.pt"))
    last = None
    for f in files:
        torch.load(f, weights_only=True)
        ck = load_checkpoint(f)
        if f.name == "last.pt":
            last = ck["epoch"]
    return {"files": len(files), "temps": len(temp_files(ckpt_dir)), "last_epoch": last}


@contextlib.contextmanager
def disk_full(monkeypatch, match: str = ".pt.", after: int = 0, temp_only: bool = True):
    """Simulate a full disk: ``os.fsync`` of a file whose name contains ``match`` (with ``temp_only``: an
    atomic write's temp file) fails with ``ENOSPC`` after ``after`` such writes succeeded (fsync is where a
    full disk with delayed allocation reports). Other files are written normally. Yields the counters."""
    real = os.fsync
    seen = {"writes": 0, "failed": 0}

    def fsync(fd):
        try:
            name = Path(os.readlink(f"/proc/self/fd/{fd}")).name
        except OSError:
            name = ""
        if match in name and (not temp_only or (name.startswith(".") and name.endswith(".tmp"))):
            seen["writes"] += 1
            if seen["writes"] > after:
                seen["failed"] += 1
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    with monkeypatch.context() as m:
        m.setattr(os, "fsync", fsync)
        yield seen


@contextlib.contextmanager
def read_only(monkeypatch, folder: Path):
    """Simulate a read-only ``folder`` (the tests run as root, whom chmod does not stop): creating a folder
    or opening a file for writing under it fails with ``EROFS``, as on a read-only mount."""
    import builtins

    folder = str(Path(folder).resolve())
    real_mkdir, real_open, real_builtin_open = os.mkdir, os.open, builtins.open

    def inside(path) -> bool:
        try:
            return os.path.abspath(os.fspath(path)).startswith(folder + os.sep) or os.path.abspath(path) == folder
        except TypeError:
            return False

    def refuse(path):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))

    def mkdir(path, *a, **k):
        return refuse(path) if inside(path) else real_mkdir(path, *a, **k)

    def os_open(path, flags, *a, **k):
        writing = flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND)
        return refuse(path) if writing and inside(path) else real_open(path, flags, *a, **k)

    def builtin_open(path, mode="r", *a, **k):
        return refuse(path) if any(c in mode for c in "wax+") and inside(path) else real_builtin_open(path, mode, *a, **k)

    with monkeypatch.context() as m:
        m.setattr(os, "mkdir", mkdir)
        m.setattr(os, "open", os_open)
        m.setattr(builtins, "open", builtin_open)
        yield
