"""View tensors: a shoe's four views as the uint8 (4, 4, S, S) stack every student reads.

One owner for the format that training (``engine.train.shoe_data``), evaluation, export and inference
(``engine.infer``) all feed the mesh student: views in ``camera.VIEW_NAMES`` order (front, left, back,
right), channels RGBA (alpha = mask), S = the student's ``image_size``, a missing view all zeros; kept
as uint8 and turned into float32 in [0, 1] per batch (``batch_views``).
"""
from __future__ import annotations

import numpy as np
import torch

from engine.geometry.camera import VIEW_NAMES


def batch_views(views_u8: torch.Tensor, device="cpu") -> torch.Tensor:
    """uint8 (B, 4, 4, S, S) -> float32 in [0, 1] on ``device``."""
    return views_u8.to(device=device, dtype=torch.float32).div_(255.0)


def stack_views(views: dict[str, np.ndarray], image_size: int) -> torch.Tensor:
    """``{name: (S, S, 4) uint8 RGBA}`` (``photos.load_photo`` output) -> uint8 (4, 4, S, S) in ``VIEW_NAMES``
    order, RGBA channels, missing views zero. Training and inference (``engine.infer``) both stack here."""
    stack = np.zeros((len(VIEW_NAMES), image_size, image_size, 4), np.uint8)
    for k, name in enumerate(VIEW_NAMES):
        if name in views:
            stack[k] = views[name]
    return torch.from_numpy(stack).permute(0, 3, 1, 2).contiguous()  # (4, 4, S, S)


def load_views_tensor(shoe, image_size: int) -> torch.Tensor:
    """A shoe's views (a ``Shoe`` or a folder of ``<view>.png``) as uint8 (4, 4, S, S): ``VIEW_NAMES``
    order, RGBA channels, missing views zero."""
    from engine.data.layout import load_views

    return stack_views(load_views(shoe, size=image_size), image_size)
