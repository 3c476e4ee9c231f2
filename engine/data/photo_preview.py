"""What each uploaded photo becomes, shown before anything runs (the upload boxes' previews).

``preview_photos(ctx, photos, out_dir)`` runs ``engine.data.photos.prepare_views`` with unsure masks
accepted (so the user sees them) and writes one thumbnail per usable view: the framed, calibrated view
over a grey backdrop (grey = outside the mask), outlined in orange when its mask is unsure (confidence
under ``segment.MIN_CONFIDENCE``: the user must accept it). Returns ``{"images": [[png path, caption]],
"summary": one line per view, "unsure": [views], "views": [usable views]}``; no usable photo at all is
a ``UserError`` naming every view's reason.
"""
from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np

from engine.data.photos import prepare_views
from engine.data.segment import MIN_CONFIDENCE
from engine.geometry.camera import VIEW_NAMES
from engine.progress import NULL_CONTEXT

THUMB = 160  # px
BACKDROP = (150, 150, 150)
UNSURE = (245, 130, 30)


def thumbnail(view: np.ndarray, unsure: bool = False) -> np.ndarray:
    """A calibrated (S, S, 4) uint8 view as a (THUMB, THUMB, 3) uint8 picture: object over grey, an
    orange frame when ``unsure``."""
    from PIL import Image

    small = np.asarray(Image.fromarray(view, "RGBA").resize((THUMB, THUMB), Image.Resampling.BILINEAR))
    a = small[:, :, 3:].astype(np.float32) / 255.0
    out = small[:, :, :3] * a + np.asarray(BACKDROP, np.float32) * (1 - a)
    out = np.clip(np.round(out), 0, 255).astype(np.uint8)
    if unsure:
        out[:4], out[-4:], out[:, :4], out[:, -4:] = UNSURE, UNSURE, UNSURE, UNSURE
    return out


def preview_photos(ctx, photos: dict, out_dir: Path) -> dict:
    """See the module docstring. ``photos``: ``{view: path or None}``."""
    from PIL import Image

    ctx = ctx or NULL_CONTEXT
    ctx.progress(0.1, "masking and framing the photos")
    prepared = prepare_views(photos, accept_unsure=True)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:8]
    images, unsure = [], []
    for view in (v for v in VIEW_NAMES if v in prepared.views):
        doubtful = prepared.confidence.get(view, 1.0) < MIN_CONFIDENCE
        unsure += [view] * doubtful
        path = out_dir / f"preview-{token}-{view}.png"
        Image.fromarray(thumbnail(prepared.views[view], doubtful)).save(path)
        caption = f"{view}: {prepared.notes[view]}" + (" (unsure: check it)" if doubtful else "")
        images.append([str(path), caption])
    ctx.progress(1.0, f"{len(images)} view(s) ready")
    return {"images": images, "summary": prepared.summary(), "unsure": unsure, "views": list(prepared.views)}
