"""Hunyuan3D-2mv teacher: Tencent's multiview image-to-shape diffusion model through hy3dgen 2.0.2.

Weights are read only from the local folder ``$HY3DGEN_MODELS/<model_path>/<subfolder>/`` (hy3dgen's own
default root ``~/.cache/hy3dgen`` when the variable is unset), which must hold ``config.yaml`` and
``model.fp16.safetensors`` (hy3dgen's ``variant='fp16'`` file name). The folder is checked before
anything is imported, and loading runs with ``HF_HUB_OFFLINE=1``: the adapter never downloads.

Models (``--teacher``):
    hunyuan3d-2mv        tencent/Hunyuan3D-2mv / hunyuan3d-dit-v2-mv         (the full model)
    hunyuan3d-2mv-fast   tencent/Hunyuan3D-2mv / hunyuan3d-dit-v2-mv-fast    (guidance-distilled)
    hunyuan3d-2mv-turbo  tencent/Hunyuan3D-2mv / hunyuan3d-dit-v2-mv-turbo   (step-distilled)

Settings: presets fast / balanced / high = 10 / 20 / 30 diffusion steps; octree resolution 256 by
default (128 needs far less memory); the seed drives a ``torch.Generator``. Device ``auto`` = CUDA when
available (float16), else CPU (float32, very slow with real weights). Pipelines are cached in-process
per (model, device, dtype, weights folder).

Output: hy3dgen's mesh is normalised (bbox centre at the origin, longest side 1) and turned into the
engine's camera frame (+Y up, toe towards +Z) by choosing, among the 24 axis-aligned rotations, the
one whose rendered silhouettes best match the input views (see ``orient_to_views``); the chosen
rotation and its silhouette IoU are in the result's stats. ``TeacherResult.features`` holds the
conditioner's image tokens (T, C) of the conditional pass, read through a forward hook on
``pipe.conditioner``, for feature-level distillation. When the pipeline returns no mesh (the
decoded occupancy has no zero crossing) the shoe fails with ``TeacherFailed`` and the cache records it.
"""
from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
from pathlib import Path

import numpy as np

from engine.config import UserError
from engine.teachers.base import (TeacherFailed, TeacherResult, TeacherSettings, TeacherUnavailable,
                                  check_views, finish_result)

MODELS: dict[str, tuple[str, str]] = {
    "2mv": ("tencent/Hunyuan3D-2mv", "hunyuan3d-dit-v2-mv"),
    "2mv-turbo": ("tencent/Hunyuan3D-2mv", "hunyuan3d-dit-v2-mv-turbo"),
    "2mv-fast": ("tencent/Hunyuan3D-2mv", "hunyuan3d-dit-v2-mv-fast"),
}
REQUIRED_FILES = ("config.yaml", "model.fp16.safetensors")
STEPS = {"fast": 10, "balanced": 20, "high": 30}
DEFAULT_OCTREE_RESOLUTION = 256
GUIDANCE_SCALE = 5.0  # hy3dgen's default for the flow-matching pipeline
ORIENT_SIZE = 64  # pixels of the silhouettes compared when orienting the output
_PIPELINES: dict[tuple, object] = {}
_LOCK = threading.Lock()


def teacher_name(model: str) -> str:
    return "hunyuan3d-" + model


def models_root() -> Path:
    """``$HY3DGEN_MODELS`` or hy3dgen's default ``~/.cache/hy3dgen``."""
    return Path(os.path.expanduser(os.environ.get("HY3DGEN_MODELS", "~/.cache/hy3dgen")))


def weights_dir(model: str) -> Path:
    model_path, subfolder = MODELS[model]
    return models_root() / model_path / subfolder


def missing_weights_message(model: str) -> str | None:
    """``None`` when the weights folder has every required file, else a one-line message naming them."""
    folder = weights_dir(model)
    missing = [f for f in REQUIRED_FILES if not (folder / f).is_file()]
    if not missing:
        return None
    return (f"{teacher_name(model)} weights not found: expected {', '.join(REQUIRED_FILES)} in {folder} "
            f"(missing {', '.join(missing)}; set HY3DGEN_MODELS to the folder holding {MODELS[model][0]}/)")


def availability(model: str = "2mv") -> tuple[bool, str]:
    """Cheap check for the UI: packages present, weights present, GPU present (nothing is loaded)."""
    import importlib.util

    if importlib.util.find_spec("hy3dgen") is None:
        return False, "hy3dgen is not installed (pip install hy3dgen==2.0.2 --no-deps)"
    if importlib.util.find_spec("torchvision") is None:
        return False, "torchvision is not installed (hy3dgen's image encoder imports it)"
    missing = missing_weights_message(model)
    if missing:
        return False, f"weights not found in {weights_dir(model)}"
    import torch

    if not torch.cuda.is_available():
        return True, f"weights in {weights_dir(model)}; no CUDA GPU: runs on CPU in float32 (very slow)"
    return True, f"weights in {weights_dir(model)}; CUDA GPU {torch.cuda.get_device_name(0)} (float16)"


def make_teacher(model: str = "2mv") -> "HunyuanTeacher":
    return HunyuanTeacher(model)


def resolve_device(device: str):
    """``(torch.device, dtype)``: the device by ``engine.devices.resolve_device`` (auto = CUDA if available;
    CUDA asked for and absent → ``TeacherUnavailable``); float16 on CUDA, float32 on CPU."""
    import torch

    from engine.devices import resolve_device as device_of

    try:
        dev = device_of(device)
    except UserError as exc:
        raise TeacherUnavailable(str(exc)) from None
    return dev, (torch.float16 if dev.type == "cuda" else torch.float32)


@contextlib.contextmanager
def _offline():
    """``HF_HUB_OFFLINE=1`` for the duration (also patched into huggingface_hub if already imported)."""
    import sys

    old = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    consts = sys.modules.get("huggingface_hub.constants")
    old_const = getattr(consts, "HF_HUB_OFFLINE", None)
    if consts is not None:
        consts.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old
        if consts is not None:
            consts.HF_HUB_OFFLINE = old_const


def import_pipeline_class():
    """Import hy3dgen's flow-matching pipeline (after the torchvision compatibility step)."""
    from engine.teachers.torchvision_compat import ensure_torchvision_importable

    try:
        ensure_torchvision_importable()
        with _offline():
            from hy3dgen.shapegen import Hunyuan3DDiTFlowMatchingPipeline
    except ImportError as exc:
        raise TeacherUnavailable(f"cannot import hy3dgen's shape pipeline: {exc}") from None
    return Hunyuan3DDiTFlowMatchingPipeline


def load_pipeline(model: str, device, dtype):
    """The pipeline for (model, device, dtype), loaded once per process from the local weights."""
    missing = missing_weights_message(model)
    if missing:
        raise TeacherUnavailable(missing)
    key = (model, str(device), str(dtype), str(weights_dir(model).resolve()))
    with _LOCK:
        if key not in _PIPELINES:
            cls = import_pipeline_class()
            model_path, subfolder = MODELS[model]
            try:
                with _offline():
                    _PIPELINES[key] = cls.from_pretrained(model_path, subfolder=subfolder, device=str(device),
                                                          dtype=dtype, use_safetensors=True, variant="fp16")
            except Exception as exc:  # corrupt/mismatched weights, missing config keys, OOM while loading
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:240]
                raise TeacherUnavailable(f"{teacher_name(model)}: loading {weights_dir(model)} failed: "
                                         f"{type(exc).__name__}: {first}") from None
        return _PIPELINES[key]


def axis_rotations() -> list[np.ndarray]:
    """The 24 proper rotations that map coordinate axes onto coordinate axes, identity first."""
    rots = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            r = np.zeros((3, 3))
            r[range(3), perm] = signs
            if np.linalg.det(r) > 0:
                rots.append(r)
    rots.sort(key=lambda r: -np.trace(r))  # identity (trace 3) first
    return rots


def _crop_mask(mask: np.ndarray, size: int = 32) -> np.ndarray | None:
    """A silhouette cropped to its bounding box and resized to (size, size) bool; None when empty."""
    from PIL import Image

    rows, cols = np.nonzero(mask)
    if len(rows) == 0:
        return None
    crop = mask[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    img = Image.fromarray(crop.astype(np.uint8) * 255).resize((size, size), Image.BILINEAR)
    return np.asarray(img) >= 128


def _splat(points: np.ndarray, name: str, size: int = ORIENT_SIZE) -> np.ndarray:
    """Silhouette of dense surface points in view ``name``: (size, size) bool (points splatted, then
    closed by one pixel so the gaps between samples fill)."""
    from scipy import ndimage

    from engine.geometry.camera import project_ndc

    ndc = project_ndc(points, name)  # (N, 2)
    ij = np.clip(((ndc + 1.0) * 0.5 * size).astype(int), 0, size - 1)
    mask = np.zeros((size, size), bool)
    mask[ij[:, 1], ij[:, 0]] = True
    return ndimage.binary_closing(mask, iterations=1) | mask


def orient_to_views(vertices: np.ndarray, faces: np.ndarray, views: dict[str, np.ndarray]):
    """Pick the axis-aligned rotation of a normalised mesh whose silhouettes best match ``views``.

    For each of the 24 candidates, dense surface samples are projected into the given views
    (``camera.project_ndc``, ``ORIENT_SIZE`` pixels); silhouettes are compared after cropping both to
    their bounding boxes (so the comparison ignores scale and framing) by intersection-over-union,
    averaged over the views. Returns ``(rotated vertices (V, 3), rotation (3, 3), mean IoU)``; ties
    keep the earlier rotation (identity first).
    """
    import trimesh

    mesh = trimesh.Trimesh(vertices, faces, process=False)
    samples = trimesh.sample.sample_surface(mesh, 20000, seed=0)[0]
    points = np.concatenate([np.asarray(samples, np.float64), vertices])  # (N, 3)
    targets = {n: _crop_mask(img[..., 3] >= 128) for n, img in views.items()}
    best = (-1.0, None)
    for rot in axis_rotations():
        rotated = points @ rot.T
        ious = []
        for name, target in targets.items():
            got = _crop_mask(_splat(rotated, name))
            if got is None or target is None:
                ious.append(0.0)
                continue
            ious.append(float((got & target).sum()) / max(float((got | target).sum()), 1.0))
        score = float(np.mean(ious))
        if score > best[0] + 1e-9:
            best = (score, rot)
    score, rot = best
    return vertices @ rot.T, rot, score


class HunyuanTeacher:
    """One Hunyuan3D-2mv variant (see the module docstring)."""

    has_features = True  # TeacherResult.features: the conditioner's image tokens (T, C), via a forward hook

    def __init__(self, model: str = "2mv"):
        if model not in MODELS:
            raise TeacherUnavailable(f"unknown Hunyuan3D model {model!r}; choose one of {', '.join(MODELS)}")
        self.model = model
        self.name = teacher_name(model)

    def fingerprint_settings(self, settings: TeacherSettings) -> dict:
        """Model folder, steps, octree resolution, seed, guidance (device and dtype are not part of it:
        a cache built on a GPU stays valid when read on a CPU machine)."""
        model_path, subfolder = MODELS[self.model]
        return {"model_path": model_path, "subfolder": subfolder,
                "steps": int(settings.steps or STEPS[settings.preset]),
                "octree_resolution": int(settings.octree_resolution or DEFAULT_OCTREE_RESOLUTION),
                "seed": int(settings.seed), "guidance_scale": GUIDANCE_SCALE}

    def predict(self, views: dict[str, np.ndarray], settings: TeacherSettings | None = None) -> TeacherResult:
        settings = settings or TeacherSettings()
        views = check_views(views)
        for name, img in views.items():
            if not (img[..., 3] >= 128).any():
                raise TeacherFailed(f"view {name!r} is fully transparent: nothing to reconstruct")
        import torch
        from PIL import Image

        device, dtype = resolve_device(settings.device)
        pipe = load_pipeline(self.model, device, dtype)
        fp = self.fingerprint_settings(settings)
        images = {name: Image.fromarray(img, "RGBA") for name, img in views.items()}
        generator = torch.Generator(device=device).manual_seed(int(settings.seed))
        t0 = time.perf_counter()
        tokens: list = []

        def keep(_module, _inputs, out):  # the conditional call's image tokens; hy3dgen's code is not edited
            main = out["main"] if isinstance(out, dict) else out
            if not tokens and isinstance(main, torch.Tensor):
                tokens.append(main[0].detach().float().cpu())

        hook = pipe.conditioner.register_forward_hook(keep)
        try:
            out = pipe(image=images, num_inference_steps=fp["steps"], octree_resolution=fp["octree_resolution"],
                       num_chunks=20000 if device.type == "cuda" else 8000, guidance_scale=GUIDANCE_SCALE,
                       generator=generator, output_type="trimesh", enable_pbar=False)
        except torch.cuda.OutOfMemoryError:
            raise TeacherFailed(f"{self.name} ran out of GPU memory at octree resolution "
                                f"{fp['octree_resolution']}; try --octree-resolution 128") from None
        finally:
            hook.remove()
        mesh = out[0] if out else None
        if mesh is None or len(mesh.faces) == 0:
            raise TeacherFailed(f"{self.name} returned no mesh: the decoded occupancy field has no surface "
                                f"(no zero crossing) at octree resolution {fp['octree_resolution']}")
        raw = finish_result(mesh.vertices, mesh.faces, 0.0, self.name, fp)
        verts, rot, iou = orient_to_views(raw.vertices.astype(np.float64), raw.faces, views)
        result = finish_result(verts, raw.faces, time.perf_counter() - t0, self.name, fp, views=list(views),
                               device=str(device), dtype=str(dtype).replace("torch.", ""),
                               orientation=rot.astype(int).tolist(), silhouette_iou=round(iou, 4))
        result.features = tokens[0].numpy().astype(np.float16) if tokens else None
        return result
