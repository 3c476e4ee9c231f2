"""Inference with a trained 3D student on photos: 1-4 shoe photos in, a mesh file out (``engine infer``).

* ``views_from_photos(photos, image_size)``: ``{view name: path | PIL image | array | None}`` -> uint8
  (4, 4, S, S) in ``camera.VIEW_NAMES`` order (front, left, back, right), RGBA, and what became of each
  photo. Each photo goes through ``engine.data.photos.prepare_views`` (EXIF orientation, a mask from
  alpha, a plain backdrop or GrabCut, the subject checked, all views framed by the camera module's
  rule) and the views are stacked by ``engine.data.views.stack_views``, as in training. A missing or
  unusable view is all zeros, as a missing view is in training. Any non-empty subset of the four
  views is accepted (the CLI asks for ``--front`` at least); the student was trained on all four, so
  fewer views give a rougher mesh, most of all without the front view.
* ``load_predictor(path)``: a ``.pt`` student checkpoint (``engine.students.checkpoint.load_student``) or a
  ``student.onnx`` / ``student.int8.onnx`` written by ``engine.export.export_student`` (its
  ``student.json`` and ``student.faces.json`` are read from beside it). The predictor has
  ``predict(views_u8 (4, 4, S, S)) -> (V, 3) float32``, ``faces`` (F, 3) int64, ``image_size`` and
  ``kind`` ("torch" or "onnx").
* ``infer(ctx, checkpoint, out, shoe_dir=None, photos=None)`` predicts one mesh and writes it with
  ``engine.data.mesh_files.write_mesh`` (format from the suffix: .glb, .obj, .ply or .stl); vertices
  stay in the student's normalised frame (+Y up, longest side about 1).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from engine import storage
from engine.config import UserError
from engine.geometry.camera import VIEW_NAMES
from engine.progress import NULL_CONTEXT


def views_from_photos(photos: dict, image_size: int, accept_unsure: bool = False):
    """``(views uint8 (4, 4, S, S), PreparedViews)`` from ``{view: photo or None}``: each photo masked,
    checked and all framed together by ``engine.data.photos.prepare_views``, then stacked by
    ``stack_views``; see the module docstring. ``UserError`` for an unknown view name, no photo at all,
    or no usable photo; a view that cannot be used while others can is left out and named in
    ``PreparedViews.errors``."""
    from engine.data.photos import prepare_views
    from engine.data.views import stack_views

    prepared = prepare_views(photos, image_size, accept_unsure=accept_unsure)
    return stack_views(prepared.views, image_size), prepared


def describe_checkpoint(obj) -> str:
    """What a loaded checkpoint looks like, for error messages: its ``kind`` or a guess from its keys."""
    if not isinstance(obj, dict):
        return f"it holds a {type(obj).__name__}"
    if obj.get("kind"):
        return f"kind {obj['kind']!r}"
    if "projector_state_dict" in obj or "student_state_dict" in obj:
        return "it looks like a TinyVAE checkpoint"
    if "teacher_state_dict" in obj:
        return "it looks like a VAE teacher checkpoint"
    return f"no 'kind' field; keys {', '.join(sorted(map(str, obj))[:5]) or 'none'}"


class TorchPredictor:
    """A ``.pt`` mesh-student checkpoint in eager torch (CPU)."""

    kind = "torch"

    def __init__(self, path: Path):
        from engine.students.checkpoint import load_student
        from engine.students.mesh_student import KIND

        self.path = Path(path)
        try:
            raw = storage.torch_load(self.path)  # one-line UserError for most junk files
        except (KeyError, IndexError) as exc:  # the unpickler's memo lookups on some text files
            raise UserError(f"{self.path.name}: not a readable weights file ({type(exc).__name__})") from None
        if not isinstance(raw, dict) or raw.get("kind") != KIND:
            raise UserError(f"{self.path.name}: not a 3D mesh-student checkpoint ({describe_checkpoint(raw)}); use "
                            "checkpoints/best.pt of a 'train' run or an exported student.onnx")
        self.model, ckpt = load_student(self.path)
        self.image_size = int(self.model.config.image_size)
        self.faces = self.model.faces.cpu().numpy().astype(np.int64)  # (F, 3)
        self.epoch = ckpt.get("epoch")

    def predict(self, views_u8: torch.Tensor) -> np.ndarray:
        from engine.data.views import batch_views

        _check_views(views_u8, self.image_size)
        with torch.no_grad():
            return self.model(batch_views(views_u8[None]))[0].numpy()  # (V, 3)


class OnnxPredictor:
    """An exported ``student.onnx`` (or its INT8 twin) in ONNX Runtime, with its metadata and faces."""

    kind = "onnx"

    def __init__(self, path: Path, threads: int = 2):
        from engine.export.mesh_student import FORMAT, INPUT_NAME, sidecar_paths
        from engine.export.onnx_tools import ort_session

        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"{self.path}: no such file")
        meta_path, faces_path = sidecar_paths(self.path)
        meta = storage.read_json(meta_path)
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise UserError(f"{self.path.name}: its metadata {meta_path.name} is missing or not from a mesh "
                            "student export (keep the files 'engine export' writes together)")
        self.image_size = _meta_int(meta, "image_size", MAX_IMAGE_SIZE, meta_path, low=8)  # before any allocation
        self.vertices = _meta_int(meta, "vertices", MAX_VERTICES, meta_path)
        named = meta_path.with_name(Path(str(meta.get("faces") or faces_path.name)).name)
        faces_path = named if named.is_file() or not faces_path.is_file() else faces_path  # renamed copies
        faces = storage.read_json(faces_path)
        try:
            self.faces = np.asarray(faces["faces"], dtype=np.int64).reshape(-1, 3)  # (F, 3)
        except (TypeError, KeyError, ValueError):
            raise UserError(f"{self.path.name}: its faces file {faces_path.name} is missing or unreadable") from None
        if len(self.faces) == 0 or self.faces.min() < 0 or self.faces.max() >= self.vertices:
            raise UserError(f"{faces_path.name}: faces do not index the model's {self.vertices} vertices")
        self.session = ort_session(self.path, threads)
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or inputs[0].name != INPUT_NAME or len(inputs[0].shape) != 5:
            raise UserError(f"{self.path.name}: not a mesh student model (expected one 5-D input "
                            f"{INPUT_NAME!r}, found {[(i.name, i.shape) for i in inputs]})")
        fixed = [d for d in inputs[0].shape[3:] if isinstance(d, int)]
        if any(d != self.image_size for d in fixed):
            raise UserError(f"{meta_path.name}: image_size {self.image_size} does not match the model, which takes "
                            f"{'x'.join(map(str, inputs[0].shape[3:]))} px views")

    def predict(self, views_u8: torch.Tensor) -> np.ndarray:
        from engine.data.views import batch_views

        _check_views(views_u8, self.image_size)
        x = batch_views(views_u8[None]).numpy()  # (1, 4, 4, S, S)
        return self.session.run(None, {self.session.get_inputs()[0].name: x})[0][0]  # (V, 3)


MAX_IMAGE_SIZE = 1024  # px a side of the student's views: far above any trained one (96 by default)
MAX_VERTICES = 1_000_000


def _meta_int(meta: dict, key: str, high: int, meta_path: Path, low: int = 1) -> int:
    """``meta[key]`` as an int in ``low..high``, else a ``UserError`` naming the field of ``meta_path``."""
    value = meta.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        shown = repr(value)[:40] if key in meta else "missing"
        raise UserError(f"{meta_path.name}: {key} must be an integer in {low}..{high} (got {shown}); "
                        "re-export the model with 'engine export'")
    return value


def _check_views(views_u8: torch.Tensor, image_size: int) -> None:
    shape = (len(VIEW_NAMES), 4, image_size, image_size)
    if tuple(views_u8.shape) != shape or views_u8.dtype != torch.uint8:
        raise UserError(f"views must be uint8 {shape} for this model, got {views_u8.dtype} {tuple(views_u8.shape)}")


def load_predictor(path: Path, threads: int = 2):
    """``OnnxPredictor`` for ``*.onnx``, else ``TorchPredictor`` (a checkpoint of another kind, a junk or
    missing file: ``UserError``)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint file")
    if path.suffix.lower() == ".onnx":
        return OnnxPredictor(path, threads=threads)
    return TorchPredictor(path)


def infer(ctx, checkpoint: Path, out: Path, shoe_dir: Path | None = None, photos: dict | None = None,
          threads: int = 2) -> dict:
    """Predict one mesh from ``shoe_dir`` (a folder of ``front.png`` … ``right.png``) or ``photos``
    (``{view: path}``; exactly one of the two) and write it to ``out``. Returns ``{"out", "vertices",
    "faces", "seconds", "predict_seconds", "kind", "views"}``."""
    from engine.data.mesh_files import DOWNLOAD_FORMATS, write_mesh
    from engine.data.views import load_views_tensor

    ctx = ctx or NULL_CONTEXT
    t0 = time.perf_counter()
    out = Path(out)
    if out.suffix.lower().lstrip(".") not in DOWNLOAD_FORMATS:
        raise UserError(f"--out {out.name}: use a .glb or .obj file (or .ply / .stl)")
    if out.is_dir():
        raise UserError(f"--out {out}: is a folder; give the mesh file to write (e.g. {out / 'shoe.glb'})")
    if (shoe_dir is None) == (photos is None):
        raise UserError("give either a shoe folder or photos, not both and not neither")
    ctx.progress(0.05, "loading the student")
    predictor = load_predictor(Path(checkpoint), threads=threads)
    ctx.progress(0.3, "reading the photos")
    if shoe_dir is not None:
        shoe_dir = Path(shoe_dir)
        if not shoe_dir.is_dir():
            raise UserError(f"{shoe_dir}: no such folder")
        views = load_views_tensor(shoe_dir, predictor.image_size)
        used = [n for n in VIEW_NAMES if (shoe_dir / f"{n}.png").is_file()]
        if not used:
            raise UserError(f"{shoe_dir}: no view images ({', '.join(f'{n}.png' for n in VIEW_NAMES)})")
    else:
        views, prepared = views_from_photos(photos, predictor.image_size)
        used = [n for n in VIEW_NAMES if n in prepared.views]
        for why in prepared.errors.values():
            ctx.log(f"left out: {why}")
    ctx.check_cancelled()
    ctx.progress(0.5, "predicting")
    t1 = time.perf_counter()
    vertices = predictor.predict(views)  # (V, 3)
    predict_seconds = time.perf_counter() - t1
    if not np.isfinite(vertices).all():
        raise UserError(f"{Path(checkpoint).name}: the model produced non-finite vertices")
    write_mesh(out, vertices, predictor.faces)
    ctx.progress(1.0, f"wrote {out.name}")
    return {"out": str(out), "vertices": int(len(vertices)), "faces": int(len(predictor.faces)),
            "seconds": round(time.perf_counter() - t0, 4), "predict_seconds": round(predict_seconds, 4),
            "kind": predictor.kind, "views": used}
