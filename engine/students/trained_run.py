"""Open a trained 3D run: its checkpoint, student, training config, split, dataset and teacher cache.

Evaluation (``mesh_eval.evaluate_run``), the per-shoe comparison (``compare.compare_shoe``) and the
ONNX export (``engine.export.mesh_student``) all start from ``open_run(run_dir, checkpoint)``::

    run = open_run(run_dir, "best")       # UserError: bad name, no run folder, no / foreign checkpoint
    run.student, run.ckpt, run.config     # eval-mode MeshStudent, the checkpoint dict, its train_config
    run.val_ids, run.split_of(shoe_id)    # the checkpoint's val split; "val" / "train" / "not in the run"
    shoe = run.shoe(shoe_id)              # engine.data.layout.Shoe of the dataset the run trained on
    run.views(shoe)                       # uint8 (4, 4, S, S) at the student's image size
    run.teacher(shoe)                     # (cache tensors, None) or (None, why): engine.cache.usable_entry

A teacher entry counts only when ``engine.cache.usable_entry`` accepts it (status ok, fingerprint of
the shoe's current views and the cache's settings, file present) — the rule training applies, so a
stale entry that training refused is not scored either.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch

from engine.config import UserError


@dataclass
class TrainedRun:
    """A run folder with one of its checkpoints loaded (see the module docstring)."""

    run_dir: Path
    checkpoint: str
    student: torch.nn.Module
    ckpt: dict

    @property
    def config(self) -> dict:
        """The training config stored in the checkpoint."""
        return self.ckpt["train_config"]

    @property
    def val_ids(self) -> list[str]:
        return list((self.ckpt.get("split") or {}).get("val") or [])

    def split_of(self, shoe_id: str) -> str:
        split = self.ckpt.get("split") or {}
        return "val" if shoe_id in (split.get("val") or []) else \
            "train" if shoe_id in (split.get("train") or []) else "not in the run"

    @property
    def data_root(self) -> Path:
        data = self.config.get("data")
        if not data:
            raise UserError(f"{self.run_dir.name}: the checkpoint names no dataset")
        return Path(data)

    @property
    def cache_dir(self) -> Path | None:
        return Path(self.config["cache"]) if self.config.get("cache") else None

    @cached_property
    def cache_meta(self) -> dict | None:
        """The run's cache ``metadata.json`` (read once; ``None`` without a cache or metadata)."""
        from engine.cache import read_metadata

        return read_metadata(self.cache_dir) if self.cache_dir is not None else None

    def shoe(self, shoe_id: str):
        """The shoe of the run's dataset; ``UserError`` for a bad or unknown ID."""
        from engine.data.layout import find_shoe

        return find_shoe(self.data_root, shoe_id)

    def views(self, shoe, image_size: int | None = None) -> torch.Tensor:
        """The shoe's views as uint8 (4, 4, S, S), S = the student's image size unless given."""
        from engine.data.views import load_views_tensor

        return load_views_tensor(shoe, image_size or self.student.config.image_size)

    def teacher(self, shoe) -> tuple[dict | None, str | None]:
        """``(cache tensors, None)`` when the run's cache has a usable entry for ``shoe``, else ``(None, why)``."""
        if self.cache_dir is None:
            return None, "the run has no teacher cache"
        from engine.cache import usable_entry

        return usable_entry(self.cache_dir, self.cache_meta, shoe)


def open_run(run_dir: Path, checkpoint: str = "best") -> TrainedRun:
    """Load ``run_dir/checkpoints/<checkpoint>.pt`` (``engine.students.checkpoint``) as a ``TrainedRun``."""
    from engine.students.checkpoint import checkpoint_path, load_student

    run_dir = Path(run_dir)
    student, ckpt = load_student(checkpoint_path(run_dir, checkpoint))
    return TrainedRun(run_dir, checkpoint, student, ckpt)
