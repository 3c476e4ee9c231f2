"""Feature-level distillation (seed 000 "Advanced", torchdistill-style): the student's intermediate
features, read through a forward hook, are projected and pulled towards the teacher's cached features.

    loss_feat = mean_i [ MSE(projector(S_i), T_i) ]   over the batch items i that have teacher features

* ``S_i``: the student's per-view S/16 map, the output of ``STUDENT_MODULE`` (``encoder.down2``),
  (4, C_s, h, w) per shoe, captured by ``FeatureHook`` — the student's code is not edited.
* ``T_i``: the teacher's cached features (``engine.cache``, float16): the occupancy teacher's per-view
  S/8 maps (4, C_t, H, W), average-pooled to the student's (h, w); Hunyuan's image tokens (T, C_t) are
  averaged over tokens and compared with the projected student global feature (the mean over views and
  pixels). Each channel is standardised with the training shoes' mean and std (``FeatureTargets``), so
  the term is scale-free and ``lambda_feat`` means the same for any teacher.
* ``projector``: a 1x1 conv C_s -> C_t (maps) or a linear layer (tokens); trained with the student and
  stored in its checkpoints (``extra.projector``), never exported.

MSE: mean over channels, positions and views; units: squared standard deviations of the teacher's
features. An empty batch (no item with features) gives 0.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

STUDENT_MODULE = "encoder.down2"


class FeatureHook:
    """Context manager: the latest output of ``model.<name>`` in ``self.output`` (a forward hook)."""

    def __init__(self, model: nn.Module, name: str = STUDENT_MODULE):
        self.module = getattr(model, "module", model).get_submodule(name)
        self.output: torch.Tensor | None = None
        self._handle = None

    def __enter__(self) -> "FeatureHook":
        def keep(_module, _inputs, out):
            self.output = out

        self._handle = self.module.register_forward_hook(keep)
        return self

    def __exit__(self, *exc) -> None:
        self._handle.remove()


class FeatureTargets:
    """The cached teacher features of a ShoeSet, standardised per channel and reshaped to the student's
    map size once: ``maps`` (N, 4, C_t, h, w) float32 (or ``tokens`` (N, C_t)), ``has`` (N,) bool."""

    def __init__(self, features: torch.Tensor, has: torch.Tensor, student_hw: tuple[int, int]):
        f = features.float()  # (N, 4, C, H, W) or (N, T, C)
        self.kind = "maps" if f.dim() == 5 else "tokens"
        if self.kind == "maps":
            n, v, c, hh, ww = f.shape
            f = F.adaptive_avg_pool2d(f.reshape(n * v, c, hh, ww), student_hw).reshape(n, v, c, *student_hw)
            dims = (0, 1, 3, 4)
        else:
            f = f.mean(1)  # (N, C): the mean token
            dims = (0,)
        rows = has.to(torch.bool)
        ref = f[rows] if bool(rows.any()) else f
        shape = [1] * f.dim()
        shape[2 if self.kind == "maps" else 1] = -1
        self.mean = ref.mean(dim=dims).reshape(shape)
        self.std = ref.std(dim=dims).clamp_min(1e-6).reshape(shape)
        self.values = (f - self.mean) / self.std
        self.has = rows
        self.channels = int(f.shape[2] if self.kind == "maps" else f.shape[1])


def make_projector(student_channels: int, targets: FeatureTargets) -> nn.Module:
    """1x1 conv (maps) or linear layer (tokens) from the student's channels to the teacher's."""
    if targets.kind == "maps":
        return nn.Conv2d(student_channels, targets.channels, 1)
    return nn.Linear(student_channels, targets.channels)


def feature_loss(student_maps: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, projector: nn.Module,
                 kind: str = "maps") -> torch.Tensor:
    """``mean_i MSE(projector(S_i), T_i)`` over items with ``mask`` True (see the module docstring).

    student_maps: (B * 4, C_s, h, w) the hooked output; targets: (B, 4, C_t, h, w) (maps) or (B, C_t)
    (tokens), standardised; mask: (B,) bool. Returns a scalar; 0 when no item has features.
    """
    mask = mask.to(torch.bool).to(student_maps.device)
    if not bool(mask.any()):
        return student_maps.sum() * 0.0
    b = mask.shape[0]
    s = student_maps.reshape(b, -1, *student_maps.shape[1:])[mask]  # (K, 4, C_s, h, w)
    t = targets.to(student_maps)[mask]
    if kind == "maps":
        k, v, c, h, w = s.shape
        pred = projector(s.reshape(k * v, c, h, w)).reshape(k, v, -1, h, w)  # (K, 4, C_t, h, w)
    else:
        pred = projector(s.mean((1, 3, 4)))  # (K, C_t)
    return F.mse_loss(pred, t)
