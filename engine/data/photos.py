"""Photos in, calibrated RGBA views out.

Every view the engine uses is a square ``IMAGE_SIZE`` x ``IMAGE_SIZE`` RGBA uint8 array whose alpha is
the object mask, framed as ``engine.geometry.camera`` says. Two entry points:

* ``prepare_views(photos)`` — **photos** (uploads, ``infer``, ``teacher run``): any size and aspect,
  the object anywhere. Each view is read (EXIF orientation applied), masked, checked, then all views
  of the shoe are **levelled** (``level_angle``: the silhouette's support line, the bottom hull edge
  under its centroid, turned horizontal) and **framed together** by ``camera.frame_boxes`` (box centred, scaled by one rule so
  relative scale is kept). A view that cannot be used gets one message naming it and why (no subject
  found, subject cut off at the border, mask confidence too low); the other views still work.
* ``load_photo(path)`` / ``to_rgba(image)`` — **dataset views**, calibrated by contract (``data
  render`` and the sample write them so): masked the same way but never cropped; a non-square image
  is padded to a square, centred (transparent), and a square of another size is resized.

Masks (``mask_photo``)
    * an image with real transparency (an alpha channel or a transparency key with at least one pixel
      below 255) keeps its alpha (``method = "alpha"``, confidence 1);
    * otherwise (RGB, grey, or an alpha of 255 everywhere: opaque RGBA is RGB) the mask comes from
      ``engine.data.segment.object_mask``: a plain backdrop, or GrabCut on any other background, with
      a confidence. Under ``segment.MIN_CONFIDENCE`` the view is refused unless the caller accepts
      unsure masks (the studio shows the mask first and asks).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.config import UserError
from engine.geometry.camera import IMAGE_SIZE, VIEW_NAMES, frame_boxes

MIN_SIDE = 32  # pixels
MAX_SIDE = 4096  # pixels
MIN_SUBJECT_FRACTION = 0.002  # of the photo's pixels: less is "no subject found"
CUT_OFF_FRACTION = 0.03  # of a side's length: a mask touching that much of the border is cut off
MAX_TILT_DEG = 10.0  # photos are levelled when their support line is tilted by at most this
MIN_VIEW_COVERAGE = 0.02  # of a calibrated view: less is a sliver (sample shoes: 5 % at least, 13 % median)
MAX_HEIGHT_SPREAD = 0.10  # calibrated views' mask heights may differ by this share of the tallest (sample: 1.7 %)


@dataclass
class MaskedPhoto:
    """One photo with its object mask, before framing: ``rgba`` (H, W, 4) uint8, alpha = mask."""

    rgba: np.ndarray
    method: str  # "alpha" | "plain backdrop" | "segmented"
    confidence: float  # 0-1

    def box(self) -> tuple[int, int, int, int]:
        """The mask's box ``(x0, y0, x1, y1)``, x1 / y1 exclusive."""
        ys, xs = np.nonzero(self.rgba[:, :, 3] > 0)
        return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


@dataclass
class PreparedViews:
    """``prepare_views`` output: the usable calibrated views and what happened to each given view."""

    views: dict[str, np.ndarray] = field(default_factory=dict)  # {view: (S, S, 4) uint8}
    notes: dict[str, str] = field(default_factory=dict)  # {view: "segmented, confidence 0.97"}
    errors: dict[str, str] = field(default_factory=dict)  # {view: why it cannot be used}
    unsure: dict[str, np.ndarray] = field(default_factory=dict)  # {view: framed view refused for confidence}
    confidence: dict[str, float] = field(default_factory=dict)  # {view: mask confidence} of every masked view

    def summary(self) -> str:
        """One line per given view: what it became, or why it was left out."""
        lines = [f"{v}: {self.notes[v]}" for v in VIEW_NAMES if v in self.notes]
        lines += [f"{v}: not used: {self.errors[v]}" for v in VIEW_NAMES if v in self.errors]
        return "\n".join(lines)


def _as_rgba_array(image, name: str) -> tuple[np.ndarray, bool]:
    """A writable (H, W, 4) uint8 copy and whether its alpha carries a mask."""
    from PIL import Image

    if isinstance(image, Image.Image):
        has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
        arr = np.array(image.convert("RGBA" if has_alpha else "RGB"))
    else:
        arr = np.array(image)
        if arr.dtype.kind == "f":
            arr = np.clip(np.round(np.nan_to_num(arr) * 255.0), 0, 255).astype(np.uint8)
        elif arr.dtype != np.uint8:
            raise UserError(f"{name}: expected uint8 or float pixels, got {arr.dtype}")
        if arr.ndim == 2:
            arr = np.repeat(arr[:, :, None], 3, axis=2)
        if arr.ndim != 3 or arr.shape[2] not in (3, 4):
            raise UserError(f"{name}: expected an (H, W), (H, W, 3) or (H, W, 4) image, got shape {arr.shape}")
        has_alpha = arr.shape[2] == 4
    if min(arr.shape[:2]) < MIN_SIDE or max(arr.shape[:2]) > MAX_SIDE:
        h, w = arr.shape[:2]
        raise UserError(f"{name}: image of {w}x{h} px; use {MIN_SIDE}-{MAX_SIDE} px a side")
    if arr.shape[2] == 3:
        arr = np.concatenate([arr, np.full(arr.shape[:2] + (1,), 255, np.uint8)], axis=2)
    has_alpha = has_alpha and bool((arr[:, :, 3] < 255).any())
    return np.ascontiguousarray(arr), has_alpha


def mask_photo(image, name: str = "image") -> MaskedPhoto:
    """The photo (PIL image or (H, W[, 3|4]) array) with its object mask; see the module docstring.
    ``UserError`` when no subject is found (an empty or tiny mask)."""
    from engine.data.segment import object_mask

    arr, has_alpha = _as_rgba_array(image, name)
    if has_alpha:
        arr[:, :, 3] = np.where(arr[:, :, 3] >= 128, 255, 0).astype(np.uint8)
        photo = MaskedPhoto(arr, "alpha", 1.0)
    else:
        seg = object_mask(arr[:, :, :3])
        arr[:, :, 3] = np.where(seg.mask, 255, 0).astype(np.uint8)
        photo = MaskedPhoto(arr, seg.method, seg.confidence)
    covered = float((arr[:, :, 3] > 0).mean())
    if covered < MIN_SUBJECT_FRACTION:
        how = "its transparency is empty" if has_alpha else "nothing stands out from the background"
        raise UserError(f"{name}: no subject found ({how}; the mask covers {100 * covered:.2f} % of the image)")
    return photo


def border_touch(mask: np.ndarray, band: int = 1) -> list[str]:
    """Sides ("top", "bottom", "left", "right") where the (H, W) bool mask reaches within ``band`` px of
    the border along at least ``CUT_OFF_FRACTION`` of that side."""
    h, w = mask.shape
    sides = {"top": mask[:band].any(axis=0), "bottom": mask[-band:].any(axis=0),
             "left": mask[:, :band].any(axis=1), "right": mask[:, -band:].any(axis=1)}
    return [s for s, touched in sides.items() if touched.mean() >= CUT_OFF_FRACTION]


def subject_problem(photo: MaskedPhoto, name: str) -> str | None:
    """Why a masked photo cannot be framed (its subject runs off the image), or None. A cut-out with
    transparency may be cropped tight (touching all four sides): only 1-3 sides count as cut off."""
    touched = border_touch(photo.rgba[:, :, 3] > 0, band=1 if photo.method == "alpha" else 3)
    if touched and not (photo.method == "alpha" and len(touched) == 4):
        return f"{name}: subject cut off at the {' and '.join(touched)} border; photograph the whole shoe"
    return None


def level_angle(mask: np.ndarray, max_deg: float = MAX_TILT_DEG) -> float:
    """The in-plane rotation (degrees, counter-clockwise as ``PIL.Image.rotate`` takes it) that levels
    the (H, W) bool mask: a shoe rests on the floor along the bottom edge of its silhouette's convex hull
    that lies under its centroid (its support line), and a calibrated view shows that line horizontal.
    The angle turns that edge horizontal; 0 when it is already, when it is steeper than ``max_deg`` (not
    a tilt but the shape) or for an empty mask. Sample views: 0 on every calibrated view; views tilted by
    up to 6 degrees are levelled to within 0.05 degree on average (worst 0.7)."""
    import cv2

    ys, xs = np.nonzero(mask)
    if len(ys) < 3:
        return 0.0
    hull = cv2.convexHull(np.stack([xs, ys], axis=1).astype(np.int32)).reshape(-1, 2).astype(np.float64)  # (K, 2)
    cx, lowest = xs.mean(), None
    for p, q in zip(hull, np.roll(hull, -1, axis=0)):
        if abs(q[0] - p[0]) < 1 or not min(p[0], q[0]) <= cx <= max(p[0], q[0]):
            continue
        y = p[1] + (q[1] - p[1]) * (cx - p[0]) / (q[0] - p[0])  # the edge's height under the centroid
        if lowest is None or y > lowest[0]:  # image rows grow downwards: the bottom edge has the largest y
            lowest = (y, p, q) if p[0] < q[0] else (y, q, p)
    if lowest is None:
        return 0.0
    _, p, q = lowest
    angle = float(np.degrees(np.arctan2(q[1] - p[1], q[0] - p[0])))  # > 0: slopes down to the right
    return angle if 0.05 < abs(angle) <= max_deg else 0.0


def level(photo: MaskedPhoto) -> MaskedPhoto:
    """``photo`` rotated by ``level_angle`` of its mask (the canvas grows to keep every pixel)."""
    from PIL import Image

    angle = level_angle(photo.rgba[:, :, 3] > 0)
    if angle == 0.0:
        return photo
    rgba = np.array(Image.fromarray(photo.rgba, "RGBA").rotate(angle, Image.Resampling.BILINEAR, expand=True))
    rgba[:, :, 3] = np.where(rgba[:, :, 3] >= 128, 255, 0).astype(np.uint8)
    return MaskedPhoto(rgba, photo.method, photo.confidence)


def _warp(rgba: np.ndarray, scale: float, tx: float, ty: float, size: int) -> np.ndarray:
    """``rgba`` mapped by ``x' = scale x + tx`` (same for y) into a (size, size, 4) view; the alpha is
    thresholded to a 0/255 mask and RGB is 0 outside it, as rendered views are."""
    from PIL import Image

    inv = 1.0 / scale
    resample = Image.Resampling.BILINEAR
    out = np.asarray(Image.fromarray(rgba, "RGBA").transform(
        (size, size), Image.Transform.AFFINE, (inv, 0, -tx * inv, 0, inv, -ty * inv), resample))
    out = np.array(out)
    mask = out[:, :, 3] >= 128
    out[:, :, 3] = np.where(mask, 255, 0).astype(np.uint8)
    out[~mask, :3] = 0
    return out


def open_image(path: Path):
    """A PIL image read from ``path`` with its EXIF orientation applied; ``UserError`` naming
    ``<folder>/<file>`` for a missing, empty, unreadable, truncated, tiny (< 32 px) or huge (> 4096 px)
    file."""
    from PIL import Image, ImageOps, UnidentifiedImageError

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
            return ImageOps.exif_transpose(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        msg = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{name}: unreadable image ({msg})") from None


def prepare_views(photos: dict, size: int = IMAGE_SIZE, accept_unsure: bool = False) -> PreparedViews:
    """Photos ``{view: path | PIL image | array | None}`` -> framed calibrated views; see the module
    docstring. Unknown view names raise ``UserError``; a view that cannot be used lands in ``errors``
    (an unsure mask also in ``unsure``, framed, for the user to look at). No usable view at all raises
    ``UserError`` listing every view's reason."""
    from engine.data.segment import MIN_CONFIDENCE

    unknown = sorted(set(photos or {}) - set(VIEW_NAMES))
    if unknown:
        raise UserError(f"unknown view name(s) {', '.join(map(repr, unknown))}; use {', '.join(VIEW_NAMES)}")
    given = {k: v for k, v in (photos or {}).items() if v is not None and not (isinstance(v, str) and not v)}
    if not given:
        raise UserError(f"no photos given: pass at least one view ({', '.join(VIEW_NAMES)}), ideally the front")
    out, masked, unsure = PreparedViews(), {}, set()
    for view in (v for v in VIEW_NAMES if v in given):
        src = given[view]
        name = f"{view} view ({Path(src).name})" if isinstance(src, (str, Path)) else f"{view} view"
        try:
            image = open_image(Path(src)) if isinstance(src, (str, Path)) else src
            photo = mask_photo(image, name)
            problem = subject_problem(photo, name)
            if problem:
                raise UserError(problem)
        except UserError as exc:
            out.errors[view] = str(exc)
            continue
        masked[view] = level(photo)
        out.confidence[view] = photo.confidence
        note = photo.method if photo.method != "segmented" else f"segmented, confidence {photo.confidence:.2f}"
        if photo.confidence < MIN_CONFIDENCE and not accept_unsure:
            unsure.add(view)
            out.errors[view] = (f"{name}: mask confidence too low ({photo.confidence:.2f} < {MIN_CONFIDENCE}): "
                                "check the mask preview and accept it, or upload a cut-out with transparency")
        else:
            out.notes[view] = note
    framing = frame_boxes({v: p.box() for v, p in masked.items()}, size)
    for view, photo in masked.items():
        framed = _warp(photo.rgba, *framing[view], size)
        (out.unsure if view in unsure else out.views)[view] = framed
    if not out.views:
        raise UserError("no usable photo: " + "; ".join(out.errors[v] for v in VIEW_NAMES if v in out.errors))
    return out


def to_rgba(image, size: int = IMAGE_SIZE, name: str = "image") -> np.ndarray:
    """A calibrated view (PIL image or (H, W[, 3|4]) array) as (size, size, 4) uint8 RGBA: masked as the
    module docstring says, padded to a square (centred, transparent) and resized, never cropped.
    ``UserError`` when no subject is found or its mask is unsure."""
    from PIL import Image

    from engine.data.segment import MIN_CONFIDENCE

    photo = mask_photo(image, name)
    if photo.confidence < MIN_CONFIDENCE:
        raise UserError(f"{name}: mask confidence too low ({photo.confidence:.2f} < {MIN_CONFIDENCE}); "
                        "use a PNG with transparency or a plain backdrop")
    arr = photo.rgba
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


def view_problems(views: dict[str, np.ndarray]) -> list[str]:
    """What is wrong with a shoe's calibrated views ``{name: (S, S, 4) uint8}`` as the cameras see it
    (``data check``): a view whose mask covers under ``MIN_VIEW_COVERAGE`` of the image (a sliver: a
    mesh lying along another axis; ``data render --up`` fixes it), a mask touching the image border (cut
    off: the object leaves the camera's square), or mask heights that differ by more than
    ``MAX_HEIGHT_SPREAD`` between views (every view sees the same height, +Y). Empty list when fine."""
    problems, heights = [], {}
    for name in (n for n in VIEW_NAMES if n in views):
        mask = views[name][:, :, 3] > 0
        covered = float(mask.mean())
        if covered < MIN_VIEW_COVERAGE:
            problems.append(f"{name}.png: the object covers only {100 * covered:.1f} % of the view (under "
                            f"{100 * MIN_VIEW_COVERAGE:.0f} %: a sliver; is the mesh lying down? try data render --up auto)")
        touched = border_touch(mask)
        if touched:
            problems.append(f"{name}.png: the object touches the {' and '.join(touched)} border (cut off)")
        rows = np.nonzero(mask.any(axis=1))[0]
        if len(rows):
            heights[name] = int(rows.max() - rows.min() + 1)
    if len(heights) > 1 and (max(heights.values()) - min(heights.values())) > MAX_HEIGHT_SPREAD * max(heights.values()):
        listed = ", ".join(f"{n} {h} px" for n, h in heights.items())
        problems.append(f"views disagree in height ({listed}): they should show the same object from four sides")
    return problems


def load_photo(path: Path, size: int = IMAGE_SIZE) -> np.ndarray:
    """A dataset view read from ``path``: ``to_rgba(open_image(path))``, (size, size, 4) uint8; errors
    name ``<folder>/<file>``."""
    path = Path(path)
    return to_rgba(open_image(path), size, f"{path.parent.name}/{path.name}")
