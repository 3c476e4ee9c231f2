"""Mesh-student checkpoints: the one owner of the ``.pt`` format training writes and everything after reads.

A checkpoint is ``run_dir/checkpoints/<which>.pt`` (``best``, ``last`` or ``epoch_NNNN``), written
atomically by ``engine.storage.torch_save`` and read back with ``engine.storage.torch_load``
(``weights_only``). It holds plain data only: ``{kind, student_config, train_config, state_dict,
optimizer, epoch, best_val, best_epoch, split, extra}`` — ``kind`` is ``mesh_student.KIND``, ``split`` the
run's ``{"train": [ids], "val": [ids]}``.

Training (``engine.train.distill3d``) saves and resumes through here; evaluation, export and inference
(``engine.evaluate``, ``engine.export``, ``engine.infer``) load through here, so none of them imports
the training code.
"""
from __future__ import annotations

from pathlib import Path

import torch

from engine import storage
from engine.config import UserError
from engine.students.mesh_student import KIND, MeshStudent, StudentConfig

CKPT_DIR = "checkpoints"  # inside a run folder
CHECKPOINT_NAMES = ("best", "last")  # besides epoch_NNNN


def checkpoint_path(run_dir: Path, which: str = "best") -> Path:
    """``run_dir/checkpoints/<which>.pt`` (``best``, ``last`` or ``epoch_NNNN``); ``UserError`` for
    another name, a missing run folder or a run without that checkpoint."""
    run_dir = Path(run_dir)
    if not (which in CHECKPOINT_NAMES or (which.startswith("epoch_") and which[6:].isdigit())):
        raise UserError(f"checkpoint {which!r}: use best, last or epoch_NNNN")
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such run folder")
    path = run_dir / CKPT_DIR / f"{which}.pt"
    if not path.is_file():
        raise UserError(f"{run_dir.name}: no {CKPT_DIR}/{which}.pt (train the run first)")
    return path


def save_checkpoint(path: Path, model: torch.nn.Module, optimizer, cfg: dict, epoch: int, best_val: float | None,
                    best_epoch: int | None, split: dict, extra: dict | None = None) -> Path:
    """Write one checkpoint atomically (``engine.storage.torch_save``): plain dicts and tensors only.
    ``model`` may be wrapped (DDP's ``.module`` is saved); ``optimizer`` None stores None. ``extra``:
    training-only state dicts (the feature projector), not part of the student."""
    module = getattr(model, "module", model)
    return storage.torch_save(Path(path), {
        "kind": KIND, "student_config": module.config.to_dict(), "train_config": dict(cfg),
        "state_dict": module.state_dict(), "optimizer": optimizer.state_dict() if optimizer else None,
        "epoch": int(epoch), "best_val": best_val, "best_epoch": best_epoch, "split": split, "extra": extra})


def load_checkpoint(path: Path) -> dict:
    """Load a checkpoint (``weights_only``); ``UserError`` if missing, unreadable or not a mesh student."""
    ckpt = storage.torch_load(Path(path))
    if not isinstance(ckpt, dict) or ckpt.get("kind") != KIND:
        kind = ckpt.get("kind") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise UserError(f"{Path(path).name}: not a {KIND} checkpoint (kind {kind!r})")
    missing = [k for k in ("student_config", "state_dict", "epoch", "train_config") if k not in ckpt]
    if missing:
        raise UserError(f"{Path(path).name}: incomplete checkpoint (missing {', '.join(missing)})")
    return ckpt


def load_student(path: Path, device="cpu") -> tuple[MeshStudent, dict]:
    """``(student in eval mode, checkpoint dict)`` from a checkpoint file."""
    ckpt = load_checkpoint(path)
    try:
        model = MeshStudent(StudentConfig.from_dict(ckpt["student_config"]))
        model.load_state_dict(ckpt["state_dict"])
    except (ValueError, RuntimeError, TypeError) as exc:
        raise UserError(f"{Path(path).name}: weights do not fit the student config ({str(exc)[:160]})") from None
    return model.to(device).eval(), ckpt
