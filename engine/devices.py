"""One rule for the ``device`` setting of every job (training, teachers): ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``."""
from __future__ import annotations

from engine.config import UserError


def resolve_device(name: str = "auto", local_rank: int | None = None):
    """The ``torch.device`` for ``name``: ``auto`` = CUDA when available, else CPU; plain ``cuda`` becomes
    ``cuda:<local_rank>`` when a (torchrun) local rank is given. ``UserError`` when CUDA is asked for and
    absent."""
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {name!r}: CUDA is not available here")
    if name == "cuda" and local_rank is not None:
        name = f"cuda:{local_rank}"
    return torch.device(name)
