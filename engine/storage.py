"""Atomic writes and safe loads: the only way the engine puts bytes on disk that others read back.

Every write goes to a temporary file in the same folder, is flushed and fsynced, then moved over the
target with ``os.replace`` — a reader (or a process restarted after SIGKILL) sees the old file or the
new one, never half of one. Checkpoints and caches are loaded with ``torch.load(weights_only=True)``.
A full disk (``ENOSPC`` / ``EDQUOT``) during a write is a ``DiskFull`` error (a ``UserError``) naming the
file; the temporary file is removed and the previous version of the target is kept. A read-only or
foreign folder (``EACCES`` / ``EPERM`` / ``EROFS``) is a ``NotWritable`` error naming the folder.
"""
from __future__ import annotations

import errno
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable

from engine.config import UserError

DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
NOT_WRITABLE_ERRNOS = (errno.EACCES, errno.EPERM, errno.EROFS)


class DiskFull(UserError):
    """No space left (or quota exceeded) while writing a file: free space and run the job again."""


class NotWritable(UserError):
    """A folder the job must write into is read-only or not ours (``EACCES`` / ``EPERM`` / ``EROFS``)."""


def not_writable(path: Path, exc: OSError) -> NotWritable:
    """The one-line error for a write refused by the file system at ``path`` (a folder or a file)."""
    return NotWritable(f"cannot write to {path} ({os.strerror(exc.errno)}); make the folder writable or choose "
                       "another one")


def make_dirs(path: Path) -> Path:
    """``mkdir -p``; a read-only or foreign parent is a ``NotWritable`` error naming the folder."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if exc.errno in NOT_WRITABLE_ERRNOS:
            raise not_writable(path, exc) from None
        raise
    return path


def _atomic(path: Path, write: Callable[[Any], None], mode: str) -> Path:
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; data, caches and runs are ordinary readable files
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
            raise DiskFull(f"no space left on the device while writing {path} ({os.strerror(exc.errno)}); "
                           "free some space and run it again (files written before are kept)") from None
        if isinstance(exc, OSError) and exc.errno in NOT_WRITABLE_ERRNOS:
            raise not_writable(path.parent, exc) from None
        raise
    return path


def write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return _atomic(path, lambda f: f.write(data), "wb")


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return _atomic(path, lambda f: f.write(text.encode("utf-8")), "wb")


def write_json(path: Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON atomically."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path, default: Any = None) -> Any:
    """Read JSON; ``default`` when the file is missing or unreadable (never raises for those)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return default


def torch_save(path: Path, obj: Any) -> Path:
    """``torch.save`` atomically. ``obj`` must hold tensors, numbers, strings, lists and dicts only.

    Serialised in memory first: torch's zip writer turns a failing ``write`` (a full disk) into a bare
    ``RuntimeError``; writing the bytes ourselves keeps the ``OSError`` and so the ``DiskFull`` message.
    """
    import io

    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return write_bytes(path, buf.getbuffer())


def torch_load(path: Path, map_location: str = "cpu") -> Any:
    """``torch.load(..., weights_only=True)``: tensors and plain containers only, no pickled code.

    Raises ``engine.config.UserError`` with the file name when the file is missing, truncated or
    holds something other than weights.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - junk bytes make the unpickler raise nearly anything
        # (UnpicklingError, RuntimeError, EOFError, struct.error, IndexError, KeyError, ...)
        lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
        first = lines[0] if lines else type(exc).__name__
        if first.startswith("Weights only load failed"):  # torch's advice there (weights_only=False) is unsafe
            why = next((line for line in lines if "GLOBAL" in line or "Unsupported" in line), "not a weights file")
            why = re.split(r"\.?\s*(?:Please use|Re-running|Check the documentation)", why)[0]  # no unsafe advice
            raise UserError(f"{path.name}: not a plain weights file: safe loading (weights_only) refused it "
                            f"({why[:160]})") from None
        raise UserError(f"{path.name}: not a readable weights file ({first[:200]})") from None
