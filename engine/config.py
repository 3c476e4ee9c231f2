"""Where things live, and the ID rule every user-facing name obeys.

Roots default to folders under the current working directory and can be moved with environment
variables (the studio and the CLI read the same ones):

    DS_DATA   datasets, the built-in sample at ``$DS_DATA/sample``   (default ./data)
    DS_CACHE  teacher caches                                        (default ./cache)
    DS_RUNS   run folders, one per job                              (default ./runs)
"""
from __future__ import annotations

import os
import re
from pathlib import Path

ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class UserError(Exception):
    """A mistake the user can fix (bad path, bad ID, bad config). The CLI prints it as one line and
    exits non-zero; the studio shows it as a message. Never used for bugs."""


def data_root() -> Path:
    return Path(os.environ.get("DS_DATA", "data")).resolve()


def sample_root() -> Path:
    return data_root() / "sample"


def cache_root() -> Path:
    return Path(os.environ.get("DS_CACHE", "cache")).resolve()


def runs_root() -> Path:
    return Path(os.environ.get("DS_RUNS", "runs")).resolve()


def validate_id(value: str, what: str = "ID") -> str:
    """Return ``value`` if it matches ``[A-Za-z0-9_-]{1,64}``; else raise ``UserError`` naming it.

    Rejects path tricks such as ``../x``, empty names, spaces and anything over 64 characters.
    """
    if not isinstance(value, str) or not ID_PATTERN.match(value):
        raise UserError(f"bad {what} {value!r}: use 1-64 characters from A-Z a-z 0-9 _ -")
    return value


def confine(path: str | os.PathLike, roots: list[Path], what: str = "path") -> Path:
    """Resolve ``path`` and require it to lie inside one of ``roots`` (symlinks resolved).

    Used for every path that arrives from the UI. Raises ``UserError`` otherwise.
    """
    p = Path(path).expanduser().resolve()
    for root in roots:
        root = Path(root).resolve()
        if p == root or root in p.parents:
            return p
    allowed = ", ".join(str(r) for r in roots)
    raise UserError(f"{what} {str(path)!r} is outside the allowed folders ({allowed})")
