"""Photos in, calibrated RGBA views out.

Every view the engine uses is a square ``IMAGE_SIZE`` x ``IMAGE_SIZE`` RGBA uint8 array whose alpha is
the object mask. The framing is **never** changed (no crop to the object): views must stay calibrated
to ``engine.geometry.camera`` (the object fills the image exactly as the orthographic camera saw it).
Only two geometric operations happen: a non-square image is padded to a square, centred (the padding
is transparent), and a square image of another size is resized.

Masks
    * An image with real transparency (an alpha channel or a transparency key with at least one pixel
      below 255) keeps its alpha.
    * Otherwise (RGB, grey, or an alpha that is 255 everywhere) the mask comes from a plain backdrop:
      the background colour is the median of the border pixels; if fewer than 95 % of border pixels lie
      within ``BG_TOLERANCE`` of it the backdrop is not plain and a ``UserError`` says so. Background is
      every background-coloured pixel connected to the border; everything else is the object (so a
      white logo inside a shoe on a white backdrop stays part of the shoe).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.config import UserError
from engine.geometry.camera import IMAGE_SIZE

MIN_SIDE = 32  # pixels
MAX_SIDE = 4096  # pixels
BG_TOLERANCE = 24  # max per-channel difference (0-255) from the background colour
BORDER_PLAIN_FRACTION = 0.95


def _as_rgba_array(image, name: str) -> tuple[np.ndarray, bool]:
    """(H, W, 4) uint8 and whether the alpha carries a mask."""
    from PIL import Image

    if isinstance(image, Image.Image):
        has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
        arr = np.asarray(image.convert("RGBA" if has_alpha else "RGB"))
    else:
        arr = np.asarray(image)
        if arr.dtype.kind == "f":
            arr = np.clip(np.round(arr * 255.0), 0, 255).astype(np.uint8)
        elif arr.dtype != np.uint8:
            raise UserError(f"{name}: expected uint8 or float pixels, got {arr.dtype}")
        if arr.ndim == 2:
            arr = np.repeat(arr[:, :, None], 3, axis=2)
        if arr.ndim != 3 or arr.shape[2] not in (3, 4):
            raise UserError(f"{name}: expected an (H, W), (H, W, 3) or (H, W, 4) image, got shape {arr.shape}")
        has_alpha = arr.shape[2] == 4
    if arr.shape[2] == 3:
        arr = np.concatenate([arr, np.full(arr.shape[:2] + (1,), 255, np.uint8)], axis=2)
    has_alpha = has_alpha and bool((arr[:, :, 3] < 255).any())
    return np.ascontiguousarray(arr), has_alpha


def background_mask(rgb: np.ndarray, name: str = "image") -> np.ndarray:
    """Object mask (H, W) bool of an image on a plain backdrop; ``UserError`` if the border is not plain."""
    from scipy import ndimage

    h, w = rgb.shape[:2]
    k = max(1, min(h, w) // 50)  # border ring width
    ring = np.concatenate([rgb[:k].reshape(-1, 3), rgb[-k:].reshape(-1, 3),
                           rgb[:, :k].reshape(-1, 3), rgb[:, -k:].reshape(-1, 3)]).astype(np.int16)
    bg = np.median(ring, axis=0)
    plain = (np.abs(ring - bg).max(axis=1) <= BG_TOLERANCE).mean()
    if plain < BORDER_PLAIN_FRACTION:
        raise UserError(f"cannot find a plain background in {name}: use a PNG with transparency or a plain backdrop")
    bg_like = np.abs(rgb.astype(np.int16) - bg).max(axis=2) <= BG_TOLERANCE  # (H, W)
    labels, _n = ndimage.label(bg_like)
    border_labels = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    background = np.isin(labels, border_labels[border_labels > 0])
    return ~background


def to_rgba(image, size: int = IMAGE_SIZE, name: str = "image") -> np.ndarray:
    """A photo (PIL image or (H,W[,3|4]) array) as a calibrated (size, size, 4) uint8 RGBA view.

    See the module docstring for the mask rule and framing. ``name`` appears in error messages.
    Raises ``UserError`` when no plain background can be found or the mask is empty.
    """
    from PIL import Image

    arr, has_alpha = _as_rgba_array(image, name)
    if not has_alpha:
        arr[:, :, 3] = np.where(background_mask(arr[:, :, :3], name), 255, 0).astype(np.uint8)
    if not (arr[:, :, 3] > 0).any():
        raise UserError(f"{name}: no object found (the mask is empty)")
    h, w = arr.shape[:2]
    if h != w:  # pad to a square, centred, transparent
        side = max(h, w)
        square = np.zeros((side, side, 4), np.uint8)
        top, left = (side - h) // 2, (side - w) // 2
        square[top:top + h, left:left + w] = arr
        arr = square
    if arr.shape[0] != size:
        resample = Image.Resampling.BOX if arr.shape[0] > size else Image.Resampling.BILINEAR
        arr = np.asarray(Image.fromarray(arr, "RGBA").resize((size, size), resample))
    return np.ascontiguousarray(arr, dtype=np.uint8)


def load_photo(path: Path, size: int = IMAGE_SIZE) -> np.ndarray:
    """Read an image file and return ``to_rgba`` of it: (size, size, 4) uint8.

    ``UserError`` (naming ``<folder>/<file>``) for a missing, unreadable, truncated or empty file, an
    image smaller than 32 px or larger than 4096 px on a side, or no usable mask.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    name = f"{path.parent.name}/{path.name}"
    if not path.is_file():
        raise UserError(f"{name}: no such file")
    if path.stat().st_size == 0:
        raise UserError(f"{name}: empty file")
    try:
        with Image.open(path) as img:
            w, h = img.size
            if min(w, h) < MIN_SIDE:
                raise UserError(f"{name}: image too small ({w}x{h}; at least {MIN_SIDE} px a side)")
            if max(w, h) > MAX_SIDE:
                raise UserError(f"{name}: image too large ({w}x{h}; at most {MAX_SIDE} px a side)")
            img.load()
            return to_rgba(img, size, name)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        msg = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{name}: unreadable image ({msg})") from None
