"""The TinyVAE checkpoint format (``tinyvae_*.pth``): one owner for training, the report and the CLI.

A checkpoint is a plain dict (``weights_only`` loadable) with ``student_state_dict``,
``teacher_state_dict``, ``projector_state_dict`` and ``config`` (the training config it was made
with), plus what its writer adds (``phase``, ``epoch``, ``best``, ``optimizer_state_dict``,
``val_select``). ``teacher.pth`` holds ``teacher_state_dict`` and ``config`` only.

The model sizes come from the config's ``teacher_latent_dim``, ``student_latent_dim`` and
``student_base_channels`` (``MODEL_DEFAULTS`` when absent); ``seed`` seeds the initialisation.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from engine import storage
from engine.config import UserError
from engine.students.vae import LatentProjector, MinimalVAE, TeacherVAE

MODEL_DEFAULTS: dict[str, Any] = {"teacher_latent_dim": 512, "student_latent_dim": 128, "student_base_channels": 32,
                                  "seed": 0}
MODEL_KEYS = ("teacher", "student", "projector")


def build_models(cfg: dict[str, Any]) -> tuple[TeacherVAE, MinimalVAE, LatentProjector]:
    """Teacher, student and projector for ``cfg`` (initialised from ``cfg['seed']``)."""
    cfg = {**MODEL_DEFAULTS, **cfg}
    torch.manual_seed(cfg["seed"])
    teacher = TeacherVAE(cfg["teacher_latent_dim"])
    student = MinimalVAE(cfg["student_latent_dim"], cfg["student_base_channels"])
    return teacher, student, LatentProjector(student.latent_shape, cfg["teacher_latent_dim"])


def checkpoint_dict(models: dict[str, torch.nn.Module], cfg: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The checkpoint of ``models`` (``{"teacher", "student", "projector"}``) trained with ``cfg``."""
    return {**{f"{key}_state_dict": models[key].state_dict() for key in ("student", "teacher", "projector")},
            "config": dict(cfg), **extra}


def load_into(module: torch.nn.Module, state: Any, what: str, path: Path) -> None:
    """``module.load_state_dict(state)``; ``UserError`` naming ``path`` and ``what`` when it is missing or
    does not fit."""
    if not isinstance(state, dict):
        raise UserError(f"{path.name}: no {what} in this checkpoint (not a TinyVAE distillation checkpoint)")
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise UserError(f"{path.name}: {what} does not fit {type(module).__name__} with this config "
                        f"({str(exc).splitlines()[0][:160]})") from None


def load_checkpoint(path: Path) -> tuple[dict[str, Any], TeacherVAE, MinimalVAE, LatentProjector]:
    """(config, teacher, student, projector) from a ``tinyvae_*.pth`` checkpoint, in eval mode; ``UserError``
    if it is not one (or holds models of other sizes than its config says). The config is the stored one
    with ``MODEL_DEFAULTS`` filled in."""
    path = Path(path)
    ckpt = storage.torch_load(path)
    cfg = ckpt.get("config") if isinstance(ckpt, dict) else None
    if not isinstance(cfg, dict) or "student_state_dict" not in ckpt:
        raise UserError(f"{path.name}: not a TinyVAE distillation checkpoint (no student_state_dict/config)")
    cfg = {**MODEL_DEFAULTS, **cfg}
    for key in MODEL_DEFAULTS:
        value = cfg[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < (0 if key == "seed" else 1):
            raise UserError(f"{path.name}: config {key}={value!r} is not a valid model size")
    if not isinstance(cfg.get("dataset"), str):
        raise UserError(f"{path.name}: config has no dataset (not a TinyVAE distillation checkpoint)")
    teacher, student, projector = build_models(cfg)
    for module, key in zip((teacher, student, projector), MODEL_KEYS):
        load_into(module, ckpt.get(f"{key}_state_dict"), f"{key}_state_dict", path)
    return cfg, teacher.eval(), student.eval(), projector.eval()
