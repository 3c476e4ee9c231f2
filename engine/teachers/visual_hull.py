"""The embedded teacher: shape from silhouettes (visual hull) + marching cubes, CPU only.

Method
    1. Silhouettes: a view's mask is ``alpha >= ALPHA_THRESHOLD``. Views are assumed to be calibrated
       orthographic views in the one camera convention (``engine.geometry.camera``: the image square
       spans ``ORTHO_EXTENT`` world units around the origin). A non-square view is padded to a square
       around its centre. A view with an empty mask, or a mask covering the whole image (nothing to
       carve), is a ``UserError``.
    2. Carving: voxel centres are projected into every view with ``camera.project_ndc`` and the
       mask is looked up there (bilinear, mask pre-blurred to the voxel size); the occupancy of a voxel
       is the minimum over the views. A coarse pass over the whole visible cube finds the object's
       bounding box; the fine pass puts ``grid`` voxels along that box's longest side (isotropic
       voxels). Presets fast / balanced / high = grid 64 / 96 / 128; ``octree_resolution`` overrides.
    3. Surface: the occupancy is blurred slightly (Gaussian, ``BLUR_VOXELS``), padded with empty
       voxels and meshed by marching cubes (scikit-image) at iso 0.5; the mesh is normalised
       (bbox centre at the origin, longest side 1) and its faces wound outwards.

Honest limits
    A visual hull is the largest shape consistent with the silhouettes: concavities that no view sees
    edge-on (the opening of a shoe's collar seen from the side, the arch under the sole) stay filled,
    and with four views around the vertical axis a sphere comes back as the intersection of two
    cylinders. With one view the depth is unconstrained (a prism through the visible cube). That gap
    between teacher and ground truth is what makes distillation measurable. Deterministic: the same
    views and settings give the same mesh; the seed is ignored.
"""
from __future__ import annotations

import math
import time

import numpy as np

from engine.config import UserError
from engine.geometry.camera import ORTHO_EXTENT, project_ndc
from engine.teachers.base import (TeacherFailed, TeacherResult, TeacherSettings, check_views,
                                  finish_result)

NAME = "visual-hull"
VERSION = 1  # bump when the algorithm changes: it is part of the cache fingerprint
GRID = {"fast": 64, "balanced": 96, "high": 128}
ALPHA_THRESHOLD = 128  # alpha >= this is inside the silhouette
COARSE_GRID = 48  # voxels along the visible cube in the bounding-box pass
BLUR_VOXELS = 0.6  # Gaussian sigma of the occupancy blur, in voxels
FULL_MASK = 0.995  # a mask covering more of the image than this has no background to carve


def availability() -> tuple[bool, str]:
    return True, "embedded (CPU, no weights needed)"


def make_teacher() -> "VisualHullTeacher":
    return VisualHullTeacher()


def _square(alpha: np.ndarray) -> np.ndarray:
    """Pad an (H, W) alpha to a square around its centre (transparent padding)."""
    h, w = alpha.shape
    s = max(h, w)
    if h == w:
        return alpha
    out = np.zeros((s, s), alpha.dtype)
    top, left = (s - h) // 2, (s - w) // 2
    out[top:top + h, left:left + w] = alpha
    return out


def silhouettes(views: dict[str, np.ndarray], threshold: int = ALPHA_THRESHOLD) -> dict[str, np.ndarray]:
    """``{name: (S, S) bool mask}`` from validated views; ``UserError`` for an empty or full mask."""
    masks = {}
    for name, img in views.items():
        mask = _square(img[..., 3]) >= threshold  # (S, S)
        if not mask.any():
            raise UserError(f"view {name!r} has an empty silhouette: no pixel has alpha >= {threshold} "
                            "(the object must be opaque on a transparent background)")
        if mask.mean() > FULL_MASK:
            raise UserError(f"view {name!r} is opaque everywhere: the visual hull needs a transparent "
                            "background around the object (give RGBA views with a mask)")
        masks[name] = mask
    return masks


def _lookup(mask: np.ndarray, points: np.ndarray, name: str) -> np.ndarray:
    """Bilinear mask value at the projection of world ``points`` (..., 3) into view ``name``: (...)."""
    from scipy import ndimage

    size = mask.shape[0]
    ndc = project_ndc(points, name)  # (..., 2) x right, y down
    col = (ndc[..., 0] + 1.0) * 0.5 * size - 0.5  # pixel centres at i + 0.5
    row = (ndc[..., 1] + 1.0) * 0.5 * size - 0.5
    return ndimage.map_coordinates(mask, [row, col], order=1, mode="constant", cval=0.0)


def carve(masks: dict[str, np.ndarray], axes: list[np.ndarray], voxel: float) -> np.ndarray:
    """Occupancy in [0, 1] on the grid ``axes`` (x, y, z coordinate arrays): (X, Y, Z) float32.

    A voxel's value is the minimum over the views of the (blurred) mask at its projection; points
    projecting outside a view are empty. ``voxel`` (world units) sets each mask's pre-blur so a voxel
    sees its footprint rather than one aliased pixel. When a view's projection ignores one world axis
    (its depth axis, e.g. z for front/back), the lookup is done once on the grid's 2D cross-section and
    broadcast along that axis — the same numbers as projecting every voxel centre, far fewer lookups.
    """
    from scipy import ndimage

    occ = np.ones(tuple(len(a) for a in axes), np.float32)  # (X, Y, Z)
    for name, mask in masks.items():
        pixel = ORTHO_EXTENT / mask.shape[0]  # world units per pixel
        m = mask.astype(np.float32)
        sigma = 0.5 * voxel / pixel
        if sigma > 0.3:
            m = ndimage.gaussian_filter(m, sigma, mode="constant")
        coeff = np.abs(project_ndc(np.eye(3), name)).sum(axis=1)  # (3,) how much each axis moves the image
        depth_axes = np.nonzero(coeff < 1e-9)[0]
        if len(depth_axes):
            k = int(depth_axes[0])
            flat = [a if i != k else np.zeros(1) for i, a in enumerate(axes)]
            pts = np.stack(np.meshgrid(*flat, indexing="ij"), axis=-1)  # (X|1, Y, Z|1, 3)
        else:
            pts = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)  # (X, Y, Z, 3)
        np.minimum(occ, _lookup(m, pts, name), out=occ)  # broadcasts along the depth axis
    return occ


def _axes(lo: np.ndarray, hi: np.ndarray, voxel: float) -> list[np.ndarray]:
    """Voxel-centre coordinates along x, y, z covering [lo, hi] with spacing ``voxel``."""
    return [lo[i] + voxel * np.arange(int(math.ceil((hi[i] - lo[i]) / voxel)) + 1) for i in range(3)]


def visual_hull(masks: dict[str, np.ndarray], grid: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """Carve and mesh. Returns raw (not yet normalised) vertices (V, 3), faces (F, 3) and grid info."""
    from scipy import ndimage
    from skimage import measure

    half = ORTHO_EXTENT / 2.0
    coarse_voxel = ORTHO_EXTENT / (COARSE_GRID - 1)
    occ = carve(masks, _axes(np.full(3, -half), np.full(3, half), coarse_voxel), coarse_voxel)
    inside = np.argwhere(occ > 0.02)
    if len(inside) == 0:
        raise TeacherFailed("the silhouettes do not intersect: the views disagree about where the object is")
    lo = np.maximum(inside.min(0) * coarse_voxel - half - coarse_voxel, -half)
    hi = np.minimum(inside.max(0) * coarse_voxel - half + coarse_voxel, half)
    voxel = float((hi - lo).max()) / grid
    lo, hi = lo - voxel, hi + voxel
    occ = carve(masks, _axes(lo, hi, voxel), voxel)  # (X, Y, Z)
    dims = occ.shape
    occ = ndimage.gaussian_filter(occ, BLUR_VOXELS, mode="constant")
    occ = np.pad(occ, 1)  # empty border: the surface is closed
    if occ.max() <= 0.5 or occ.min() >= 0.5:
        raise TeacherFailed("the carved volume has no surface at iso 0.5 (object thinner than a voxel?)")
    verts, faces, _, _ = measure.marching_cubes(occ, level=0.5, spacing=(voxel, voxel, voxel))
    verts = verts + (lo - voxel)  # grid index 0 after padding sits one voxel below lo
    faces = faces[:, ::-1]  # skimage winds inwards for "high inside"; the engine winds outwards
    return verts, np.ascontiguousarray(faces, dtype=np.int64), {"grid": list(dims), "voxel": round(voxel, 6)}


class VisualHullTeacher:
    """Shape from silhouettes; see the module docstring for the method and its limits."""

    name = NAME

    def grid_size(self, settings: TeacherSettings) -> int:
        return int(settings.octree_resolution or GRID[settings.preset])

    def fingerprint_settings(self, settings: TeacherSettings) -> dict:
        """What changes the output: grid, threshold, blur, algorithm version (seed/device/steps do not)."""
        return {"grid": self.grid_size(settings), "alpha_threshold": ALPHA_THRESHOLD,
                "blur_voxels": BLUR_VOXELS, "version": VERSION}

    def predict(self, views: dict[str, np.ndarray], settings: TeacherSettings | None = None) -> TeacherResult:
        settings = settings or TeacherSettings()
        t0 = time.perf_counter()
        views = check_views(views)
        masks = silhouettes(views)
        verts, faces, info = visual_hull(masks, self.grid_size(settings))
        return finish_result(verts, faces, time.perf_counter() - t0, NAME, self.fingerprint_settings(settings),
                             views=list(views), device="cpu", **info)
