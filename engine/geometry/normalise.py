"""The normalisation convention every compared or rendered mesh goes through.

A mesh is centred on its axis-aligned bounding-box centre and scaled uniformly so that the longest
side of that box is 1; afterwards it lies inside [-0.5, 0.5]^3 and touches the box on its longest
axis. All metrics (F-score thresholds at 1 % and 2 % of that side) are stated in these units.
"""
from __future__ import annotations

import numpy as np


def normalise_vertices(vertices):
    """Centre on the bbox centre and scale the longest bbox side to 1.

    vertices: (V, 3) NumPy array or torch tensor (float). Returns ``(normalised, centre, scale)`` where
    ``normalised = (vertices - centre) / scale``; ``centre`` is (3,), ``scale`` a float (the longest
    side before scaling). Raises ``ValueError`` for an empty input, non-finite values or a mesh whose
    extent is zero (all vertices identical).
    """
    if len(vertices) == 0:
        raise ValueError("cannot normalise an empty mesh (0 vertices)")
    if isinstance(vertices, np.ndarray):
        if not np.isfinite(vertices).all():
            raise ValueError("mesh has non-finite vertex coordinates (NaN or inf)")
        lo, hi = vertices.min(axis=0), vertices.max(axis=0)
        scale = float((hi - lo).max())
    else:  # torch tensor
        import torch

        if not torch.isfinite(vertices).all():
            raise ValueError("mesh has non-finite vertex coordinates (NaN or inf)")
        lo, hi = vertices.min(dim=0).values, vertices.max(dim=0).values
        scale = float((hi - lo).max())
    if not scale > 0:
        raise ValueError("mesh has zero extent (all vertices at one point)")
    centre = (lo + hi) / 2
    return (vertices - centre) / scale, centre, scale
