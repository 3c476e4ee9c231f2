"""Schedules for distillation training: the teacher weight alpha over the epochs.

The distillation loss mixes two Chamfer terms, ``alpha * CD(student, teacher) + (1 - alpha) *
CD(student, GT)``. ``alpha`` moves linearly from ``start`` (epoch 1) to ``end`` (last epoch):

    progress(e) = (e - 1) / (epochs - 1)          e = 1 .. epochs  (0 when epochs == 1)
    alpha(e)    = start + (end - start) * progress(e)

so epoch 1 gives ``start`` and the last epoch gives ``end`` exactly. The named schedules implement the
*stated intent* of the original spec ("90 % -> 30 %" and so on). Its formulas, e.g.
``alpha = 0.9 * (1 - progress) + 0.3``, would start at 1.2 — outside [0, 1], a negative GT weight —
so they are not used literally.

    conservative  0.95 -> 0.50
    default       0.90 -> 0.30
    aggressive    0.80 -> 0.20
    custom        alpha_start -> alpha_end, both given by the user, each in [0, 1]
"""
from __future__ import annotations

import math

from engine.config import UserError

SCHEDULES: dict[str, tuple[float, float]] = {
    "conservative": (0.95, 0.5),
    "default": (0.9, 0.3),
    "aggressive": (0.8, 0.2),
}
SCHEDULE_NAMES: tuple[str, ...] = (*SCHEDULES, "custom")


def _fraction(value, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0.0 <= value <= 1.0:
        raise UserError(f"{key} must be a number in [0, 1] (got {value!r})")
    return float(value)


def resolve_schedule(name: str, alpha_start=None, alpha_end=None) -> tuple[float, float]:
    """``(start, end)`` of a named schedule, or of ``custom`` from ``alpha_start`` / ``alpha_end``.

    A named schedule may be overridden by either value (given values win). ``UserError`` for an
    unknown name, a custom schedule missing a value, or a value outside [0, 1].
    """
    if name not in SCHEDULE_NAMES:
        raise UserError(f"schedule must be one of {', '.join(SCHEDULE_NAMES)} (got {name!r})")
    if name == "custom":
        if alpha_start is None or alpha_end is None:
            raise UserError("schedule 'custom' needs both alpha_start and alpha_end")
        return _fraction(alpha_start, "alpha_start"), _fraction(alpha_end, "alpha_end")
    start, end = SCHEDULES[name]
    start = start if alpha_start is None else _fraction(alpha_start, "alpha_start")
    end = end if alpha_end is None else _fraction(alpha_end, "alpha_end")
    return start, end


def training_progress(epoch: int, epochs: int) -> float:
    """``(epoch - 1) / (epochs - 1)`` in [0, 1] for 1-based ``epoch``; 0 when ``epochs == 1``.

    ``ValueError`` unless ``1 <= epoch <= epochs``.
    """
    if not 1 <= epoch <= epochs:
        raise ValueError(f"epoch {epoch} is outside 1..{epochs}")
    return 0.0 if epochs == 1 else (epoch - 1) / (epochs - 1)


def alpha_at(epoch: int, epochs: int, start: float, end: float) -> float:
    """Teacher weight of 1-based ``epoch``: ``start + (end - start) * training_progress(epoch, epochs)``.

    Dimensionless, in [min(start, end), max(start, end)]; exactly ``start`` at epoch 1 and ``end`` at
    the last epoch; monotone in between.
    """
    p = training_progress(epoch, epochs)
    return end if p == 1.0 else start + (end - start) * p


def item_alphas(alpha: float, has_teacher, has_gt):
    """Per-shoe teacher weight: ``alpha`` where a shoe has both targets, 1 for a photo-only shoe (teacher
    only), 0 for a GT shoe without a usable teacher entry (GT only).

    ``has_teacher`` / ``has_gt``: (B,) bool tensors. Returns (B,) float32. A shoe with neither target
    is a caller bug: ``ValueError``.
    """
    import torch

    has_teacher, has_gt = torch.as_tensor(has_teacher, dtype=torch.bool), torch.as_tensor(has_gt, dtype=torch.bool)
    if bool((~has_teacher & ~has_gt).any()):
        raise ValueError("a training shoe needs a teacher entry or a GT mesh")
    a = torch.full(has_teacher.shape, float(alpha), dtype=torch.float32)  # (B,)
    a = torch.where(has_gt, a, torch.ones_like(a))
    return torch.where(has_teacher, a, torch.zeros_like(a))
