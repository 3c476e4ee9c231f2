"""Phone-style photos made from calibrated renders, for measuring segmentation and framing.

``composite(rgba, rng)`` pastes one calibrated RGBA view (``engine.data.render`` output, alpha = mask)
onto a generated background, the way a phone photo of a shoe on a floor or table looks: a canvas of a
random size and aspect ratio, the shoe scaled, rotated by a few degrees and moved off-centre, a soft
contact shadow under it, and one background family of ``BACKGROUNDS``:

* ``gradient``: a linear colour ramp in a random direction (a wall lit from one side);
* ``noise``: smoothed colour noise (carpet, concrete);
* ``texture``: stripes / wood grain from sines of random frequency and phase;
* ``checker``: tiles (a kitchen floor), rotated;
* ``floor-wall``: two tones split by a horizon line above the shoe, with a gradient on each.

Nothing is downloaded; the same ``rng`` state gives the same photo. Returns the RGB photo (H, W, 3)
uint8 and the true object mask (H, W) bool after the same transform (the shadow is background).
"""
from __future__ import annotations

import numpy as np

BACKGROUNDS = ("gradient", "noise", "texture", "checker", "floor-wall")


def _smooth(a: np.ndarray, sigma: float) -> np.ndarray:
    from scipy import ndimage

    return ndimage.gaussian_filter(a, sigma=(sigma, sigma, 0) if a.ndim == 3 else sigma)


MIN_CONTRAST = 60.0  # RGB distance every background colour keeps from each of the object's main colours


def _colour(rng, avoid: np.ndarray | None = None) -> np.ndarray:
    """A random colour at least ``MIN_CONTRAST`` from every row of ``avoid`` (K, 3) (best of 50 tries)."""
    best, best_d = None, -1.0
    for _ in range(50):
        c = rng.uniform(20, 235, 3)
        d = np.inf if avoid is None or not len(avoid) else float(np.linalg.norm(avoid - c, axis=1).min())
        if d >= MIN_CONTRAST:
            return c
        if d > best_d:
            best, best_d = c, d
    return best


def main_colours(rgba: np.ndarray, k: int = 4) -> np.ndarray:
    """The object's main colours (k, 3): k-means of its opaque pixels."""
    from scipy.cluster.vq import kmeans2

    px = rgba[rgba[..., 3] > 0][:, :3].astype(np.float64)
    centres, _ = kmeans2(px[:: max(1, len(px) // 4000)], k, seed=0, minit="++")
    return centres


def background(kind: str, h: int, w: int, rng, avoid: np.ndarray | None = None) -> np.ndarray:
    """A generated (h, w, 3) float64 background in 0-255 of family ``kind`` (one of ``BACKGROUNDS``), its
    colours ``MIN_CONTRAST`` away from ``avoid`` (K, 3) (a subject a person can tell from its background)."""
    col = lambda: _colour(rng, avoid)  # noqa: E731
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    if kind == "gradient":
        a = rng.uniform(0, 2 * np.pi)
        t = (np.cos(a) * xx / w + np.sin(a) * yy / h)
        t = (t - t.min()) / max(np.ptp(t), 1e-9)
        return col() * (1 - t[..., None]) + col() * t[..., None]
    if kind == "noise":
        base = col()
        return np.clip(base + _smooth(rng.normal(0, 60, (h, w, 3)), rng.uniform(1.0, 4.0)) * 1.5, 0, 255)
    if kind == "texture":
        a, f = rng.uniform(0, np.pi), rng.uniform(0.05, 0.3)
        u = np.cos(a) * xx + np.sin(a) * yy
        t = 0.5 + 0.5 * np.sin(f * u + 3 * np.sin(0.02 * (yy + xx) + rng.uniform(0, 6)))
        return col() * (1 - t[..., None]) + col() * t[..., None]
    if kind == "checker":
        a, tile = rng.uniform(0, np.pi / 2), rng.uniform(12, 48)
        u, v = np.cos(a) * xx - np.sin(a) * yy, np.sin(a) * xx + np.cos(a) * yy
        t = ((np.floor(u / tile) + np.floor(v / tile)) % 2)[..., None]
        return col() * (1 - t) + col() * t
    if kind == "floor-wall":
        horizon = rng.uniform(0.15, 0.35) * h
        wall = background("gradient", h, w, rng, avoid)
        floor = background(rng.choice(["gradient", "noise"]), h, w, rng, avoid)
        return np.where((yy > horizon)[..., None], floor, wall)
    raise ValueError(f"unknown background {kind!r}; use one of {', '.join(BACKGROUNDS)}")


def composite(rgba: np.ndarray, rng, kind: str | None = None, max_rotation_deg: float = 6.0
              ) -> tuple[np.ndarray, np.ndarray]:
    """A phone-style RGB photo of the calibrated view ``rgba`` (S, S, 4) uint8; see the module docstring.

    Returns ``(photo (H, W, 3) uint8, true mask (H, W) bool)``. ``kind`` picks the background family
    (random when None). The canvas is 360-960 px high, 0.6-1.6 as wide; the object's longest side is
    40-80 % of the canvas's longer side (at most 85 % of either side), up to 15 % off-centre.
    """
    from PIL import Image

    kind = kind or str(rng.choice(BACKGROUNDS))
    h = int(rng.integers(360, 960))
    w = int(h * rng.uniform(0.6, 1.6))
    alpha = rgba[..., 3] > 0
    ys, xs = np.nonzero(alpha)
    crop = rgba[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    tilted = Image.fromarray(crop, "RGBA").rotate(float(rng.uniform(-max_rotation_deg, max_rotation_deg)),
                                                   Image.Resampling.BILINEAR, expand=True)
    target = rng.uniform(0.4, 0.8) * max(h, w)  # object's longest side in photo pixels
    scale = min(target / max(tilted.size), 0.85 * h / tilted.size[1], 0.85 * w / tilted.size[0])  # never cut off
    obj = tilted.resize((max(1, round(tilted.size[0] * scale)), max(1, round(tilted.size[1] * scale))),
                        Image.Resampling.BILINEAR)
    ow, oh = obj.size
    cx = w / 2 + rng.uniform(-0.15, 0.15) * w
    cy = h / 2 + rng.uniform(-0.15, 0.15) * h
    left = int(np.clip(cx - ow / 2, 2, max(2, w - ow - 2)))
    top = int(np.clip(cy - oh / 2, 2, max(2, h - oh - 2)))
    bg = background(kind, h, w, rng, main_colours(rgba))
    # a soft contact shadow: a dark ellipse under the object's base
    yy, xx = np.mgrid[0:h, 0:w]
    ey, ex, ry, rx = top + oh * 0.95, left + ow / 2, max(4.0, oh * 0.12), ow * 0.55
    shadow = np.clip(1 - ((yy - ey) / ry) ** 2 - ((xx - ex) / rx) ** 2, 0, 1)
    bg = bg * (1 - rng.uniform(0.25, 0.5) * _smooth(shadow, 3.0)[..., None])
    canvas = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8), "RGB")
    layer = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    layer.paste(obj, (left, top))
    a = np.asarray(layer)[..., 3].astype(np.float64) / 255.0
    photo = np.asarray(canvas).astype(np.float64) * (1 - a[..., None]) + np.asarray(layer)[..., :3] * a[..., None]
    return np.clip(np.round(photo), 0, 255).astype(np.uint8), a >= 0.5
