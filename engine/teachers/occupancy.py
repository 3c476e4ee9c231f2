"""The learned embedded teacher: a pre-trained image-conditioned occupancy network (CPU, no download).

``OccupancyNet`` (``engine.teachers.occupancy_net``; 5.7 M parameters, 24x the student) was
pre-trained by ``python -m engine teacher pretrain`` on the procedural teacher corpus
(``engine.data.corpus``: seven shoe families, disjoint from every ``data sample`` seed). The weights
file holds tensors and plain values only (``weights_only=True``): ``kind``, ``version``, ``config``,
``camera`` (the view convention it was trained under), ``state_dict`` and ``record`` (corpus, epochs,
validation figures, the command that reproduces it).

Prediction: the views are padded square and resized to 256 px; the occupancy is evaluated on a coarse
grid over the visible cube to find the object, then on a coarse-to-fine grid over its box
(``engine.geometry.implicit``; presets fast / balanced / high = 64 / 128 / 192 cells along the box's
longest side) and meshed by marching cubes at logit 0. The mesh is normalised like every teacher's.
``TeacherResult.features`` carries the per-view S/8 feature maps (4, C, 8, 8), read through a forward
hook on ``OccupancyNet.features_module``, for feature-level distillation.
"""
from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import numpy as np

from engine.geometry import camera
from engine.teachers.base import (TeacherFailed, TeacherResult, TeacherSettings, TeacherUnavailable, check_views,
                                  finish_result)

NAME = "occupancy"
VERSION = 1  # bump when prediction changes: it is part of the cache fingerprint
GRID = {"fast": 64, "balanced": 128, "high": 192}
INPUT_SIZE = 256
ASSET = Path(__file__).resolve().parents[2] / "assets" / "teachers" / "occupancy.pt"
PRETRAIN_HINT = "python -m engine teacher pretrain --corpus corpus/teacher --out assets/teachers/occupancy.pt"


def weights_path() -> Path:
    """``$DS_OCCUPANCY_WEIGHTS`` or the shipped ``assets/teachers/occupancy.pt``."""
    return Path(os.environ.get("DS_OCCUPANCY_WEIGHTS") or ASSET)


def camera_signature() -> dict:
    """The view convention a checkpoint must have been trained under (names, azimuths, extent)."""
    return {"views": list(camera.VIEW_NAMES), "azimuths": [camera.AZIMUTHS_DEG[n] for n in camera.VIEW_NAMES],
            "ortho_extent": camera.ORTHO_EXTENT}


def load_weights(path: Path):
    """(model in eval mode, checkpoint dict) from a weights file; ``TeacherUnavailable`` naming the file
    and what to run when it is missing, unreadable, of another kind or architecture, or trained under
    another camera convention."""
    from engine import storage
    from engine.config import UserError
    from engine.teachers.occupancy_net import KIND, OccupancyConfig, OccupancyNet

    path = Path(path)
    if not path.is_file():
        raise TeacherUnavailable(f"occupancy teacher weights not found at {path}; train them with `{PRETRAIN_HINT}`")
    try:
        ckpt = storage.torch_load(path)
    except UserError as exc:
        raise TeacherUnavailable(f"{exc}; retrain with `{PRETRAIN_HINT}`") from None
    if not isinstance(ckpt, dict) or ckpt.get("kind") != KIND or "state_dict" not in ckpt:
        kind = ckpt.get("kind") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise TeacherUnavailable(f"{path}: not occupancy-teacher weights (kind {kind!r}); train them with `{PRETRAIN_HINT}`")
    if ckpt.get("camera") != camera_signature():
        raise TeacherUnavailable(f"{path}: trained under another camera convention ({ckpt.get('camera')}); "
                                 f"retrain with `{PRETRAIN_HINT}`")
    try:
        model = OccupancyNet(OccupancyConfig.from_dict(ckpt.get("config") or {}))
        model.load_state_dict(ckpt["state_dict"])
    except (ValueError, RuntimeError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0][:200]
        raise TeacherUnavailable(f"{path}: weights do not fit the occupancy network ({first}); "
                                 f"retrain with `{PRETRAIN_HINT}`") from None
    return model.eval(), ckpt


def availability() -> tuple[bool, str]:
    path = weights_path()
    if not path.is_file():
        return False, f"weights not found at {path}; train them with `{PRETRAIN_HINT}`"
    return True, f"embedded learned teacher (CPU), weights {path.name}"


def make_teacher() -> "OccupancyTeacher":
    return OccupancyTeacher()


def views_tensor(views: dict[str, np.ndarray], size: int = INPUT_SIZE):
    """Validated views -> (1, 4, 4, size, size) float32 in [0, 1]; a view is padded square (transparent)
    and resized when needed; a missing view is zeros."""
    import torch
    from PIL import Image

    out = np.zeros((len(camera.VIEW_NAMES), size, size, 4), np.uint8)
    for k, name in enumerate(camera.VIEW_NAMES):
        if name not in views:
            continue
        img = views[name]
        h, w = img.shape[:2]
        s = max(h, w)
        sq = np.zeros((s, s, 4), np.uint8)
        sq[(s - h) // 2:(s - h) // 2 + h, (s - w) // 2:(s - w) // 2 + w] = img
        out[k] = sq if s == size else np.asarray(Image.fromarray(sq, "RGBA").resize((size, size), Image.BILINEAR))
    return torch.from_numpy(out).permute(0, 3, 1, 2).unsqueeze(0).float().div_(255.0)


def predict_mesh(model, views, resolution: int, chunk: int = 32768):
    """(vertices, faces, features (4, C, h, w) float32, info) of one shoe; ``views`` (1, 4, 4, S, S).

    ``TeacherFailed`` when the occupancy has no surface."""
    import torch

    from engine.geometry.implicit import extract_surface, refine_grid

    feats: list = []
    module = model.get_submodule(model.features_module)
    handle = module.register_forward_hook(lambda _m, _i, out: feats.append(out.detach()))
    try:
        with torch.inference_mode():
            encoded = model.encode(views)

            def fn(points):
                return model.decode(encoded, points.unsqueeze(0))[0]

            half = camera.ORTHO_EXTENT / 2
            coarse, _ = refine_grid(fn, [-half] * 3, [half] * 3, 32, levels=0, chunk=chunk)
            inside = np.argwhere(coarse > 0)
            if len(inside) == 0:
                raise TeacherFailed("the occupancy network sees no object in these views (no point inside)")
            cell = camera.ORTHO_EXTENT / 32
            lo = np.maximum(inside.min(0) * cell - half - 2 * cell, -half)
            hi = np.minimum(inside.max(0) * cell - half + 2 * cell, half)
            side = float((hi - lo).max())
            centre = (lo + hi) / 2
            lo, hi = centre - side / 2, centre + side / 2  # a cube: isotropic cells
            verts, faces, evaluated = extract_surface(fn, lo, hi, resolution, levels=2, chunk=chunk)
    finally:
        handle.remove()
    if len(faces) == 0:
        raise TeacherFailed("the occupancy network found no surface (no zero crossing of its logits)")
    return verts, faces, feats[0].float().numpy(), {"grid": resolution, "evaluated": int(evaluated)}


class OccupancyTeacher:
    """The learned embedded teacher; see the module docstring."""

    name = NAME
    has_features = True  # TeacherResult.features: per-view S/8 maps (4, C, h, w)

    def __init__(self):
        self._loaded: tuple | None = None  # (path, mtime, model, ckpt, sha)

    def _model(self):
        path = weights_path()
        mtime = path.stat().st_mtime if path.is_file() else None
        if self._loaded is None or self._loaded[:2] != (path, mtime):
            model, ckpt = load_weights(path)
            sha = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
            self._loaded = (path, mtime, model, ckpt, sha)
        return self._loaded[2], self._loaded[4]

    def grid_size(self, settings: TeacherSettings) -> int:
        r = int(settings.octree_resolution or GRID[settings.preset])
        return max(16, r - r % 4)

    def fingerprint_settings(self, settings: TeacherSettings) -> dict:
        """Grid, the weights' hash and the prediction version (seed / device / steps do not matter)."""
        _model, sha = self._model()
        return {"grid": self.grid_size(settings), "weights": sha, "version": VERSION}

    def predict(self, views: dict[str, np.ndarray], settings: TeacherSettings | None = None) -> TeacherResult:
        import torch

        settings = settings or TeacherSettings()
        t0 = time.perf_counter()
        views = check_views(views)
        model, sha = self._model()
        threads = torch.get_num_threads()
        verts, faces, feats, info = predict_mesh(model, views_tensor(views), self.grid_size(settings))
        result = finish_result(verts, faces, time.perf_counter() - t0, NAME, self.fingerprint_settings(settings),
                               views=list(views), device="cpu", threads=threads, **info)
        result.features = feats.astype(np.float16)
        return result
