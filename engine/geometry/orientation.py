"""Which way is up: the rotation a mesh gets on import, before normalisation and rendering.

The cameras (``engine.geometry.camera``) sit around the vertical +Y axis and the shoe convention is
length along Z, width along X, height along Y. A scan that lies along another axis renders as slivers,
so ``data render --up`` chooses the rotation:

* ``y`` (default): as stored; ``z``: the mesh's +Z becomes +Y; ``x``: its +X becomes +Y (the other
  two axes follow as a proper rotation).
* ``auto``: principal axes. The surface's second moments (area-weighted face centroids) give three
  orthogonal axes; they are ranked by the mesh's extent along each. The **longest** becomes Z (seen
  edge to edge by the left / right cameras, as a shoe's length), the **middle** one Y (up) and the
  **shortest** X (so a flat blade shows its face to the side cameras instead of its edge to all four).
  Signs: each axis points the way closest to the input's own axis it replaces (+Z, +Y); X completes a
  right-handed frame.

``rotation_for(vertices, faces, up)`` returns the (3, 3) matrix ``R``; rotated vertices are
``vertices @ R.T``. The import records ``R`` in the dataset's ``import.json``.
"""
from __future__ import annotations

import numpy as np

UP_CHOICES = ("y", "z", "x", "auto")

_FIXED = {
    "y": np.eye(3),
    "z": np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]]),  # (x, y, z) -> (x, z, -y): +Z up
    "x": np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]]),  # (x, y, z) -> (-y, x, z): +X up
}


def principal_axes(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Rows: the three principal axes (3, 3) of the surface (area-weighted face centroids), unit length,
    in no particular order. A mesh of zero area falls back to the vertices' covariance."""
    v = np.asarray(vertices, np.float64)
    tri = v[np.asarray(faces, np.int64)]  # (F, 3, 3)
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)  # (F,)
    pts, w = (tri.mean(axis=1), area) if area.sum() > 0 else (v, np.ones(len(v)))
    centre = (pts * w[:, None]).sum(0) / w.sum()
    d = pts - centre
    cov = (d * w[:, None]).T @ d / w.sum()  # (3, 3)
    _vals, vecs = np.linalg.eigh(cov)
    return vecs.T


def rotation_for(vertices, faces, up: str = "y") -> np.ndarray:
    """The (3, 3) rotation ``R`` (det +1) for ``up`` in ``UP_CHOICES``; see the module docstring."""
    if up not in UP_CHOICES:
        raise ValueError(f"unknown --up {up!r}; use one of {', '.join(UP_CHOICES)}")
    if up != "auto":
        return _FIXED[up].copy()
    v = np.asarray(vertices, np.float64)
    axes = principal_axes(v, faces)
    extent = np.ptp(v @ axes.T, axis=0)  # (3,) extent along each axis
    short, mid, long_ = axes[np.argsort(extent)]
    z = long_ if long_[2] >= 0 else -long_
    y = mid - (mid @ z) * z
    y /= np.linalg.norm(y)
    y = y if y[1] >= 0 else -y
    x = np.cross(y, z)
    return np.stack([x, y, z])  # rows: where the new X, Y, Z come from
