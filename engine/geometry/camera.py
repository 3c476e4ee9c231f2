"""The one camera convention: four orthographic views around the vertical axis.

Everything that turns 3D into pixels or pixels into 3D imports this module: the sample renderer,
the visual-hull teacher, the mesh student's vertex projection and the viewers.

World frame
    Right-handed, **+Y up**. Meshes are normalised first (``engine.geometry.normalise``: bounding-box
    centre at the origin, longest side 1), so every shape lies inside the cube [-0.5, 0.5]^3.
    A shoe's toe points to **+Z** (its "front"), its sole rests towards -Y.

Views (order and names as hy3dgen's multiview processor uses them)
    ======  =====  =========================  =========================================
    index   name   azimuth (deg, about +Y)    camera sits on
    ======  =====  =========================  =========================================
    0       front    0                        +Z  (looks at the toe)
    1       left    90                        +X  (sees the shoe's left side)
    2       back   180                        -Z  (looks at the heel)
    3       right  270                        -X
    ======  =====  =========================  =========================================

    A camera at azimuth ``a`` sits at direction ``(sin a, 0, cos a)`` and looks towards the origin
    along ``forward = -(sin a, 0, cos a)``. Image right is ``forward x up`` and image up is +Y.

Projection
    Orthographic. A square image of side ``ORTHO_EXTENT`` world units (1.2: the unit cube plus a 10 %
    margin on each side) maps to ``IMAGE_SIZE`` x ``IMAGE_SIZE`` pixels (256). Normalised device
    coordinates (NDC) are in [-1, 1] with x to the right and **y downwards**, exactly what
    ``torch.nn.functional.grid_sample(align_corners=False)`` expects; pixel centres are at
    ``(i + 0.5)`` in pixel units.

Framing photos (``frame_boxes``; ``engine.data.photos.prepare_views`` applies it)
    A photo is not calibrated: the object sits anywhere, at any size, in an image of any aspect. Since
    the views are orthographic and the shape is centred on its bounding box, a calibrated view shows
    the object's silhouette box **centred** in the image, and its **height** (world Y, vertical in
    every view) is the same in all four views. So every view of a shoe is framed by one rule (after
    ``engine.data.photos.level_angle`` has turned its support line horizontal): its mask's box centre
    moves to the image centre, and it is scaled so that its box height is the shoe's height
    in pixels, ``height_world * IMAGE_SIZE / ORTHO_EXTENT``. The shoe's height in world units (longest
    side 1) follows from the box aspect ratios: width / height from the front or back view, length /
    height from the left or right view (means where both are given); ``height_world = 1 / max(1,
    width/height, length/height)``. Without a left or right view the length is unknown and
    ``LENGTH_PER_HEIGHT_PRIOR`` (the sample shoes' median, 2.36; real shoes are alike) stands in for
    it. Scaling each view by its own height keeps relative scale even when the photos were taken at
    different distances or resized differently.

The functions work on NumPy arrays and on torch tensors alike (they use only ``@`` and slicing), so
the student's projection stays differentiable.
"""
from __future__ import annotations

import math

import numpy as np

VIEW_NAMES: tuple[str, ...] = ("front", "left", "back", "right")
AZIMUTHS_DEG: dict[str, float] = {"front": 0.0, "left": 90.0, "back": 180.0, "right": 270.0}
UP = np.array([0.0, 1.0, 0.0])
ORTHO_EXTENT = 1.2  # world units covered by the image side
IMAGE_SIZE = 256  # pixels, square RGBA views
LENGTH_PER_HEIGHT_PRIOR = 2.4  # a shoe's length / height when no side view shows it (sample median 2.36)
SIDE_VIEWS = ("left", "right")  # views whose image width is the shoe's length (front / back: its width)


def view_index(name: str) -> int:
    """Index of a view name in ``VIEW_NAMES`` (front=0, left=1, back=2, right=3)."""
    if name not in AZIMUTHS_DEG:
        raise ValueError(f"unknown view {name!r}; expected one of {', '.join(VIEW_NAMES)}")
    return VIEW_NAMES.index(name)


def camera_axes(name: str) -> np.ndarray:
    """Rows ``(right, up, forward)`` of the camera for view ``name``; shape (3, 3), float64.

    ``forward`` points from the camera towards the origin; ``right = forward x up``.
    """
    view_index(name)  # validates the name
    a = math.radians(AZIMUTHS_DEG[name])
    forward = -np.array([math.sin(a), 0.0, math.cos(a)])
    right = np.cross(forward, UP)
    return np.stack([right, UP, forward])  # (3, 3)


def project_ndc(points, name: str):
    """Orthographic projection of world points into view ``name``.

    points: (..., 3) array or tensor. Returns (..., 2) NDC ``(x right, y down)`` in [-1, 1] for points
    inside the view, same type as the input (a torch tensor keeps its gradient).
    """
    axes = camera_axes(name)
    scale = 2.0 / ORTHO_EXTENT
    r, u = axes[0], axes[1]
    if not isinstance(points, np.ndarray):  # torch tensor
        import torch

        r = torch.as_tensor(r, dtype=points.dtype, device=points.device)
        u = torch.as_tensor(u, dtype=points.dtype, device=points.device)
        return torch.stack([(points @ r) * scale, -(points @ u) * scale], dim=-1)
    return np.stack([(points @ r) * scale, -(points @ u) * scale], axis=-1)


def depth(points, name: str):
    """Signed distance along the camera's forward axis (larger = farther); (..., 3) -> (...)."""
    fwd = camera_axes(name)[2]
    if not isinstance(points, np.ndarray):
        import torch

        fwd = torch.as_tensor(fwd, dtype=points.dtype, device=points.device)
    return points @ fwd


def ndc_to_pixel(ndc: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """NDC (..., 2) in [-1, 1] -> continuous pixel coordinates (..., 2) ``(col, row)`` in [0, size]."""
    return (np.asarray(ndc) + 1.0) * 0.5 * size


def pixel_rays(name: str, size: int = IMAGE_SIZE, distance: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """One ray per pixel centre for view ``name``, row-major from the top-left pixel.

    Returns ``(origins, directions)``, each (size*size, 3) float64. Origins lie ``distance`` units
    behind the image plane through the origin, so they start outside the unit cube.
    """
    right, up, forward = camera_axes(name)
    centres = (np.arange(size) + 0.5) / size * 2.0 - 1.0  # NDC of pixel centres
    half = ORTHO_EXTENT / 2.0
    xs = centres * half  # image right, world units
    ys = -centres * half  # rows go down, world up goes up
    gx, gy = np.meshgrid(xs, ys)  # (size, size): row index = y
    origins = gx.reshape(-1, 1) * right + gy.reshape(-1, 1) * up - distance * forward
    directions = np.broadcast_to(forward, origins.shape).copy()
    return origins, directions


def frame_boxes(boxes: dict[str, tuple[float, float, float, float]], size: int = IMAGE_SIZE
                ) -> dict[str, tuple[float, float, float]]:
    """The framing rule (module docstring) for photos' object boxes.

    boxes: ``{view: (x0, y0, x1, y1)}`` of each view's mask, in that photo's pixels (x1, y1 exclusive).
    Returns ``{view: (scale, tx, ty)}``: a source pixel ``(x, y)`` maps to ``(scale * x + tx, scale * y +
    ty)`` in the ``size`` x ``size`` calibrated view. An empty dict gives an empty dict; a box of zero
    height raises ``ValueError``.
    """
    if not boxes:
        return {}
    aspect = {}  # width / height of each view's box
    for name, (x0, y0, x1, y1) in boxes.items():
        view_index(name)
        if y1 <= y0 or x1 <= x0:
            raise ValueError(f"{name}: empty object box {(x0, y0, x1, y1)}")
        aspect[name] = (x1 - x0) / (y1 - y0)
    sides = [aspect[n] for n in aspect if n in SIDE_VIEWS]
    fronts = [aspect[n] for n in aspect if n not in SIDE_VIEWS]
    length = float(np.mean(sides)) if sides else LENGTH_PER_HEIGHT_PRIOR
    width = float(np.mean(fronts)) if fronts else 0.0
    height_px = size / ORTHO_EXTENT / max(1.0, length, width)  # the shoe's height in view pixels
    out = {}
    for name, (x0, y0, x1, y1) in boxes.items():
        scale = height_px / (y1 - y0)
        out[name] = (scale, size / 2 - scale * (x0 + x1) / 2, size / 2 - scale * (y0 + y1) / 2)
    return out
