"""Object masks for RGB photos: a plain backdrop when there is one, OpenCV's GrabCut when there is not.

``object_mask(rgb)`` -> ``Segmentation(mask, confidence, method)``:

1. **Plain backdrop** (studio photos, renders on white): the background colour is the median of the
   border ring; when at least ``BORDER_PLAIN_FRACTION`` of the ring lies within ``BG_TOLERANCE`` of it,
   the background is every background-coloured pixel connected to the border (a white logo inside a
   shoe on white stays shoe), less its cast shadow (``remove_shadow``, worked out at ``WORK_SIDE`` px).
   Confidence 1. ``method = "plain backdrop"``.
2. **GrabCut** (any other background: floor, table, gradient, texture, shadow). The photo is worked on
   at ``WORK_SIDE`` px on its longer side. Border prior: a ring ``1/40`` of the shorter side wide is
   sure background. Colour prior: the ring's colours are clustered (k-means, ``BORDER_CLUSTERS``, RGB);
   a pixel farther than the ring's own 97th-percentile distance (at least 8) from every cluster is
   probable object, the rest probable background. ``cv2.grabCut`` (``GC_INIT_WITH_MASK``, 5
   iterations) refines both models and the cut. Then morphology (open, close), the largest connected
   component with its holes filled, and ``remove_shadow`` (a darkened copy of the local background is
   shadow, not shoe). On a patterned background (``patterned_ring``: tiles, stripes, grain, coarse
   noise), where inpainting cannot rebuild the background, ``remove_palette_background`` then drops the
   pieces of the mask that are the ring's own colours, lit or darkened by one factor (attached tiles,
   shadows on the pattern). Last, ``_refine``: GrabCut again near full resolution in a band around the
   edge. ``method = "segmented"``. Measured by ``bench/bench_photos.py`` on its 160 composites (both
   methods): mean IoU 0.958 (gradients 0.97, noise 0.97, stripes 0.93, tiles 0.96, floor-wall 0.96);
   0.950 before shadows went only where they fall (under the object) and on plain backdrops too, 0.895
   before the palette clean-up (stripes 0.84, tiles 0.79).

   **Confidence** is the agreement of two independent cuts: the IoU of the result above with a second
   GrabCut started only from a rectangle (the first result's box grown by 10 %; on a patterned
   background both cuts get the palette clean-up). Clear subjects give both the same answer (IoU ≈
   0.97-1); a subject that blends into its background gives two different answers. ``MIN_CONFIDENCE``
   is the level under which callers ask the user to look at the mask. It misses errors both cuts share
   (a shadow on tiles): on the bench, confident and unsure masks score alike, so the preview shows every
   mask, not only the unsure ones.

Empty results raise nothing here: ``mask.any()`` is False and the caller names the view.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BG_TOLERANCE = 24  # max per-channel difference (0-255) from the background colour
BORDER_PLAIN_FRACTION = 0.95
WORK_SIDE = 384  # px, longer side GrabCut works at
BORDER_CLUSTERS = 6
MIN_CONFIDENCE = 0.85
REFINE_SIDE = 768  # px, longer side of the crop the band refinement works at
BAND = 4  # px (at 256 px crop size, scaled with it): the refinement's uncertain band, each side of the edge
PLAIN_CLEAN_IOU = 0.98
SHADOW_MIN = 0.35  # darkest shadow, as a fraction of the lit background colour
SHADOW_SPREAD = 0.12  # max difference of the three channel ratios of a shadow pixel
SHADOW_BAND = 0.25  # a cast shadow lies in the lowest quarter of the mask's height
SHADOW_EDGE = 0.1  # ratio change per px: sharper is an object's edge (a sole on its shadow), not a shadow
SHADOW_SOFTNESS = 0.012  # a shadow's rim (1.2-2.5 px in) is at least this much lighter (ratio) than 3.5-6 px in
RING_TEXTURE = 1.5  # 99th percentile of the ring's grey-level curvature (0-255 per px² at WORK_SIDE): above it, a pattern
SHADOW_ONE_COLOUR = 0.85  # a shaded piece mostly one darkened ring colour is kept (an object part, not a shadow)
PALETTE_MAX_LIT, PALETTE_MAX_SHADE = 0.3, 0.45  # the most of the mask each kind of palette clean-up takes


@dataclass
class Segmentation:
    mask: np.ndarray  # (H, W) bool, True = object
    confidence: float  # 0-1; 1 for a plain backdrop
    method: str  # "plain backdrop" | "segmented"


def _ring(a: np.ndarray, k: int) -> np.ndarray:
    """The border ring of width ``k`` of an (H, W, C) array as (N, C)."""
    c = a.shape[2]
    return np.concatenate([a[:k].reshape(-1, c), a[-k:].reshape(-1, c),
                           a[k:-k, :k].reshape(-1, c), a[k:-k, -k:].reshape(-1, c)])


def plain_backdrop_mask(rgb: np.ndarray) -> np.ndarray | None:
    """Object mask (H, W) bool of an image on a plain backdrop, or None when the border is not plain."""
    from scipy import ndimage

    k = max(1, min(rgb.shape[:2]) // 50)
    ring = _ring(rgb, k).astype(np.int16)
    bg = np.median(ring, axis=0)
    if (np.abs(ring - bg).max(axis=1) <= BG_TOLERANCE).mean() < BORDER_PLAIN_FRACTION:
        return None
    bg_like = np.abs(rgb.astype(np.int16) - bg).max(axis=2) <= BG_TOLERANCE  # (H, W)
    labels, _n = ndimage.label(bg_like)
    border_labels = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    return ~np.isin(labels, border_labels[border_labels > 0])


def _largest_filled(mask: np.ndarray) -> np.ndarray:
    """The largest connected component (8-connected) of an (H, W) bool mask, its holes filled."""
    from scipy import ndimage

    labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
    if n == 0:
        return mask
    sizes = ndimage.sum(mask, labels, index=np.arange(1, n + 1))
    return ndimage.binary_fill_holes(labels == 1 + int(np.argmax(sizes)))


def _clean(mask: np.ndarray) -> np.ndarray:
    """Open, then close (3x3 square), then ``_largest_filled``."""
    from scipy import ndimage

    square = np.ones((3, 3), bool)
    mask = ndimage.binary_opening(mask, structure=square)
    mask = ndimage.binary_closing(mask, structure=square, iterations=2)
    return _largest_filled(mask)


def _grabcut(img: np.ndarray, init: np.ndarray | None, rect=None) -> np.ndarray:
    import cv2

    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    if init is not None:
        mask = init.copy()
        cv2.grabCut(img, mask, None, bgd, fgd, 5, cv2.GC_INIT_WITH_MASK)
    else:
        mask = np.zeros(img.shape[:2], np.uint8)
        cv2.grabCut(img, mask, rect, bgd, fgd, 5, cv2.GC_INIT_WITH_RECT)
    return (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)


def ring_palette(rgb: np.ndarray, k: int) -> np.ndarray:
    """The border ring's main colours: k-means (``BORDER_CLUSTERS``, RGB, seeded) of the ring ``k`` px wide,
    (K, 3) float32."""
    import cv2

    ring = _ring(rgb, k).astype(np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5)
    cv2.setRNGSeed(0)
    _c, _labels, centres = cv2.kmeans(ring, BORDER_CLUSTERS, None, criteria, 2, cv2.KMEANS_PP_CENTERS)
    return centres


def _colour_prior(rgb: np.ndarray, k: int, centres: np.ndarray) -> np.ndarray:
    """GrabCut's initial labels (H, W) uint8: ring sure background; a pixel far from every ring colour
    (``centres``, ``ring_palette``) probable object, the rest probable background."""
    import cv2

    ring_d = _colour_distance(_ring(rgb, k).astype(np.float32), centres)
    d = _colour_distance(rgb.reshape(-1, 3).astype(np.float32), centres).reshape(rgb.shape[:2])
    init = np.where(d > max(np.percentile(ring_d, 97), 8.0), cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
    init[:k], init[-k:], init[:, :k], init[:, -k:] = cv2.GC_BGD, cv2.GC_BGD, cv2.GC_BGD, cv2.GC_BGD
    return init


def patterned_ring(rgb: np.ndarray, k: int) -> bool:
    """Whether the border ring is a pattern (tiles, stripes, grain, coarse noise) rather than a smooth
    surface: the 99th percentile of its grey-level second differences between neighbouring pixels (zero on
    any straight colour ramp, however steep) above ``RING_TEXTURE``. Measured on 100 composites at 384 px:
    gradients 0.3-1.0, noise 1.7-44, tiles 9-89, stripes 1.0-11 (the smoothest eight under 1.5), floor and
    wall 0.7-40 (the horizon line)."""
    g = rgb.astype(np.float32).mean(axis=2)
    gx, gy = np.abs(np.diff(g, n=2, axis=1)), np.abs(np.diff(g, n=2, axis=0))
    steps = np.concatenate([gx[:k].ravel(), gx[-k:].ravel(), gy[:, :k].ravel(), gy[:, -k:].ravel()])
    return bool(np.percentile(steps, 99) > RING_TEXTURE)


def _colour_distance(pixels: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Distance (N,) in RGB units from each pixel (N, 3) to the nearest of ``centres`` (K, 3)."""
    out = np.full(len(pixels), np.inf, np.float32)
    for c in centres:
        out = np.minimum(out, np.linalg.norm(pixels - c[None], axis=1))
    return out


def remove_shadow(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``mask`` (H, W) bool without the cast shadow it took in.

    A mask pixel is *shadow-coloured* when its colour is the local background's darkened by one factor
    in every channel (ratio to the background in [``SHADOW_MIN``, 0.97] per channel, the three ratios
    within ``SHADOW_SPREAD``); the local background is the photo inpainted (``cv2.inpaint``, Telea) over
    the dilated mask, so this works on smooth backgrounds (floors, walls, gradients), not on fine
    textures (``remove_palette_background`` does those). A shadow falls under the object, so only
    shadow-coloured pixels with no solid object part below them in their column (solid: the rest of the
    mask, opened by 3 px so a shadow's faint rim does not count), in the lowest ``SHADOW_BAND`` of the
    mask's height, can go. They are split into pieces at sharp ratio edges (over ``SHADOW_EDGE`` per px:
    a light sole over its own shadow is a piece of its own), and a piece goes when it reaches the mask's
    edge and is **soft**: the ratio 1.2-2.5 px inside the mask's edge around it is at least
    ``SHADOW_SOFTNESS`` lighter than 3.5-6 px inside the piece (a shadow fades out; a grey sole or welt,
    however shadow-coloured, has a sharp edge). Nothing goes when the pieces would take more than
    ``PALETTE_MAX_SHADE`` of the mask. Returns the cleaned (H, W) bool mask (``mask`` itself when
    nothing goes). The earlier rule (every shadow-coloured pixel anywhere) ate a shoe's body or sole when
    it was a darker shade of the background (``tests/test_photo_inputs.py`` makes such photos)."""
    import cv2
    from scipy import ndimage

    hole = ndimage.binary_dilation(mask, iterations=3)
    bg = cv2.inpaint(np.ascontiguousarray(rgb), hole.astype(np.uint8), 5, cv2.INPAINT_TELEA).astype(np.float32)
    ratio = (rgb.astype(np.float32) + 1.0) / (bg + 1.0)  # (H, W, 3)
    lo, hi = ratio.min(axis=2), ratio.max(axis=2)
    shadow = (hi - lo < SHADOW_SPREAD) & (lo >= SHADOW_MIN) & (hi <= 0.97) & mask
    if not shadow.any():
        return mask
    solid = ndimage.binary_opening(mask & ~shadow, iterations=3)
    solid_below = np.flip(np.logical_or.accumulate(np.flip(solid, axis=0), axis=0), axis=0)  # (H, W)
    ys = np.nonzero(mask)[0]
    under = shadow & ~solid_below
    under[: int(ys.max() - SHADOW_BAND * (ys.max() - ys.min()))] = False
    grey = ratio.mean(axis=2)
    under &= np.hypot(ndimage.sobel(grey, 0), ndimage.sobel(grey, 1)) / 8 < SHADOW_EDGE  # split at sharp edges
    edge = mask & ~ndimage.binary_erosion(mask, iterations=2)
    depth = ndimage.distance_transform_edt(mask)
    labels, n = ndimage.label(under, structure=np.ones((3, 3)))
    drop = np.zeros(mask.shape, bool)
    for label in range(1, n + 1):
        piece = labels == label
        if not (piece & edge).any():
            continue
        rim = ndimage.binary_dilation(piece, iterations=2) & (depth > 1.2) & (depth <= 2.5)
        inner = piece & (depth > 3.5) & (depth <= 6)
        if rim.any() and inner.any() and np.median(grey[rim]) - np.median(grey[inner]) < SHADOW_SOFTNESS:
            continue
        drop |= piece
    if not drop.any() or drop.sum() > PALETTE_MAX_SHADE * mask.sum():
        return mask
    return _clean(mask & ~drop)


def remove_palette_background(rgb: np.ndarray, mask: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """``mask`` (H, W) bool without the pieces of a patterned background it took in (GrabCut attaches whole
    tiles or stripes along their strong edges). A mask pixel is background-coloured when it is one of the
    ring's colours (``palette`` (K, 3)) times one factor in every channel (the three ratios within
    ``SHADOW_SPREAD``): lit (factor 0.97-1.03) or in shadow (``SHADOW_MIN``-0.97). Connected pieces of such
    pixels that reach the mask's edge go: lit ones anywhere, shadowed ones when below the mask's middle
    (where a cast or contact shadow falls) and darker copies of several ring colours (``_spans_pattern``:
    a shadow falls across the pattern; a sole in one darkened ring colour stays). Lit pieces go only
    while they take at most ``PALETTE_MAX_LIT`` of the mask, shadowed ones ``PALETTE_MAX_SHADE`` (a shoe
    in the background's colours is not eaten).
    Inpainting (``remove_shadow``) cannot rebuild a pattern; this needs no background model beyond the
    ring's colours. Returns the cleaned (H, W) bool mask (``mask`` itself when nothing goes)."""
    from scipy import ndimage

    px = rgb.astype(np.float32) + 1.0
    shade, lit = np.zeros(mask.shape, bool), np.zeros(mask.shape, bool)
    which = np.full(mask.shape, -1)  # the palette colour a shaded pixel is a darker copy of
    for i, c in enumerate(palette):
        ratio = px / (c.astype(np.float32) + 1.0)  # (H, W, 3)
        lo, hi = ratio.min(axis=2), ratio.max(axis=2)
        flat = hi - lo < SHADOW_SPREAD
        dark = flat & (lo >= SHADOW_MIN) & (hi <= 0.97)
        which[dark & (which < 0)] = i
        shade |= dark
        lit |= flat & (lo > 0.97) & (hi <= 1.03)
    found = (shade | lit) & mask
    if not found.any():
        return mask
    edge = mask & ~ndimage.binary_erosion(mask, iterations=2)
    labels, _n = ndimage.label(found, structure=np.ones((3, 3)))
    ys = np.nonzero(mask)[0]
    middle = (ys.min() + ys.max()) / 2
    drop_lit, drop_shade = np.zeros(mask.shape, bool), np.zeros(mask.shape, bool)
    for label in np.unique(labels[edge & found]):
        piece = labels == label
        if not label:
            continue
        if lit[piece].mean() > 0.5:
            drop_lit |= piece
        elif np.nonzero(piece)[0].mean() > middle and _spans_pattern(which[piece & shade]):
            drop_shade |= piece
    drop = np.zeros(mask.shape, bool)
    for part, share in ((drop_lit, PALETTE_MAX_LIT), (drop_shade, PALETTE_MAX_SHADE)):
        if part.sum() <= share * mask.sum():
            drop |= part
    return _clean(mask & ~drop) if drop.any() else mask


def _spans_pattern(which: np.ndarray) -> bool:
    """Whether a shaded piece darkens several of the ring's colours (a shadow falls across the pattern:
    no colour takes more than ``SHADOW_ONE_COLOUR`` of it), not one (a sole or welt in one colour)."""
    counts = np.bincount(which[which >= 0])
    return counts.size > 0 and counts.max() <= SHADOW_ONE_COLOUR * counts.sum()


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def _resize(a: np.ndarray, w: int, h: int, resample) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(a).resize((w, h), resample))


def _upsample_mask(mask: np.ndarray, w: int, h: int) -> np.ndarray:
    """A bool mask resized to (h, w): bilinear on 0/255, thresholded at one half."""
    from PIL import Image

    return _resize((mask * 255).astype(np.uint8), w, h, Image.Resampling.BILINEAR) >= 128


def _refine(rgb: np.ndarray, coarse: np.ndarray) -> np.ndarray:
    """GrabCut again near full resolution in a band around ``coarse`` (H, W) bool: the crop around the
    object (box + 8 %, at most ``REFINE_SIDE`` px), sure object ``BAND`` px inside the coarse edge,
    sure background ``BAND`` px outside it. Returns the refined (H, W) bool mask."""
    import cv2
    from PIL import Image
    from scipy import ndimage

    h, w = coarse.shape
    ys, xs = np.nonzero(coarse)
    my, mx = int(0.08 * np.ptp(ys)) + 4, int(0.08 * np.ptp(xs)) + 4
    y0, y1 = max(0, ys.min() - my), min(h, ys.max() + my + 1)
    x0, x1 = max(0, xs.min() - mx), min(w, xs.max() + mx + 1)
    crop, cmask = rgb[y0:y1, x0:x1], coarse[y0:y1, x0:x1]
    ch, cw = crop.shape[:2]
    s = min(1.0, REFINE_SIDE / max(ch, cw))
    if s < 1:
        sw, sh = max(8, round(cw * s)), max(8, round(ch * s))
        crop, cmask = _resize(crop, sw, sh, Image.Resampling.BOX), _upsample_mask(cmask, sw, sh)
    band = max(2, round(BAND * min(1.0, max(crop.shape[:2]) / 256)))
    init = np.where(cmask, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
    init[ndimage.binary_erosion(cmask, iterations=band)] = cv2.GC_FGD
    init[~ndimage.binary_dilation(cmask, iterations=band)] = cv2.GC_BGD
    if not (init == cv2.GC_FGD).any():
        return coarse
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(np.ascontiguousarray(cv2.cvtColor(crop, cv2.COLOR_RGB2BGR)), init, None, bgd, fgd, 3,
                cv2.GC_INIT_WITH_MASK)
    fine = _clean((init == cv2.GC_FGD) | (init == cv2.GC_PR_FGD))
    if s < 1:
        fine = _upsample_mask(fine, cw, ch)
    out = np.zeros((h, w), bool)
    out[y0:y1, x0:x1] = fine
    return out


def grabcut_mask(rgb: np.ndarray) -> Segmentation:
    """GrabCut segmentation of an RGB (H, W, 3) uint8 photo; see the module docstring."""
    import cv2
    from PIL import Image

    h, w = rgb.shape[:2]
    empty = Segmentation(np.zeros((h, w), bool), 0.0, "segmented")
    scale = min(1.0, WORK_SIDE / max(h, w))
    sw, sh = max(8, round(w * scale)), max(8, round(h * scale))
    small = np.ascontiguousarray(_resize(rgb, sw, sh, Image.Resampling.BOX) if scale < 1 else rgb)
    k = max(2, min(sh, sw) // 40)
    bgr = cv2.cvtColor(small, cv2.COLOR_RGB2BGR)
    palette = ring_palette(small, k)
    init = _colour_prior(small, k, palette)
    if not (init == cv2.GC_PR_FGD).any():
        return empty
    patterned = patterned_ring(small, k)

    def unpatterned(mask: np.ndarray) -> np.ndarray:  # both cuts: without pieces of a patterned background
        return remove_palette_background(small, mask, palette) if patterned and mask.any() else mask

    first = _clean(_grabcut(bgr, init))
    first = unpatterned(remove_shadow(small, first) if first.any() else first)
    if not first.any():
        return empty
    ys, xs = np.nonzero(first)
    gy, gx = 0.1 * (ys.max() - ys.min() + 1), 0.1 * (xs.max() - xs.min() + 1)
    x0, y0 = int(max(1, xs.min() - gx)), int(max(1, ys.min() - gy))
    x1, y1 = int(min(sw - 2, xs.max() + gx)), int(min(sh - 2, ys.max() + gy))
    second = unpatterned(_clean(_grabcut(bgr, None, (x0, y0, max(1, x1 - x0), max(1, y1 - y0)))))
    confidence = _iou(first, second)
    coarse = _upsample_mask(first, w, h) if scale < 1 else first
    return Segmentation(_refine(rgb, coarse), confidence, "segmented")


def _without_shadow(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``remove_shadow`` of a full-resolution (H, W) mask, worked out at ``WORK_SIDE`` px (the scale its
    pixel distances are set for, and fast on a 4000 px photo); only what it drops is scaled back."""
    from PIL import Image

    h, w = mask.shape
    scale = min(1.0, WORK_SIDE / max(h, w))
    if scale == 1.0:
        return remove_shadow(rgb, mask)
    sw, sh = max(8, round(w * scale)), max(8, round(h * scale))
    small = _upsample_mask(mask, sw, sh)
    kept = remove_shadow(np.ascontiguousarray(_resize(rgb, sw, sh, Image.Resampling.BOX)), small)
    if kept is small:
        return mask
    return _largest_filled(mask & ~_upsample_mask(small & ~kept, w, h))


def object_mask(rgb: np.ndarray) -> Segmentation:
    """The object mask of an RGB photo: a plain backdrop if there is one (and its mask is one clean
    region: at least ``PLAIN_CLEAN_IOU`` IoU with its cleaned self), else GrabCut."""
    plain = plain_backdrop_mask(rgb)
    if plain is not None and plain.any():
        cleaned = _largest_filled(plain)
        if _iou(plain, cleaned) >= PLAIN_CLEAN_IOU:
            return Segmentation(_without_shadow(rgb, cleaned), 1.0, "plain backdrop")
    return grabcut_mask(rgb)
