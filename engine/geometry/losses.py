"""Mesh regularisers with PyTorch3D semantics, as small pure functions.

All take ``verts`` (V, 3) or (B, V, 3) (one shared topology across the batch), are differentiable in
``verts`` and return a scalar tensor. Topology inputs (``edges``, ``L``, face pairs) depend only on
``faces``: build them once with ``engine.geometry.mesh`` and reuse them every step.
"""
from __future__ import annotations

import torch

from engine.geometry.mesh import (
    check_faces,
    check_verts,
    apply_sparse,
    face_areas_normals,
    interior_face_pairs,
    safe_norm,
)

Tensor = torch.Tensor


def _batched(verts: Tensor) -> Tensor:
    verts = check_verts(verts)
    return verts if verts.dim() == 3 else verts.unsqueeze(0)  # (B, V, 3)


def edge_length_loss(verts: Tensor, edges: Tensor, target_length: float = 0.0) -> Tensor:
    """Mean squared deviation of edge lengths from ``target_length``.

    loss = mean over batch items and edges (i, j) of (|v_i - v_j| - target_length)^2, in squared
    units of ``verts``. With target 0 this is the mean squared edge length (PyTorch3D's
    ``mesh_edge_loss``). No edges (or an empty batch) give 0.
    """
    vb = _batched(verts)  # (B, V, 3)
    edges = torch.as_tensor(edges)
    if edges.dim() != 2 or edges.shape[1] != 2:
        raise ValueError(f"edges must have shape (E, 2), got {tuple(edges.shape)}")
    if not float(target_length) >= 0:
        raise ValueError(f"target edge length must be >= 0, got {target_length!r}")
    if edges.shape[0] == 0 or vb.shape[0] == 0:
        return vb.sum() * 0
    edges = edges.long()
    if int(edges.min()) < 0 or int(edges.max()) >= vb.shape[1]:
        raise ValueError(f"edges index vertices outside 0..{vb.shape[1] - 1}")
    diff = vb[:, edges[:, 0]] - vb[:, edges[:, 1]]  # (B, E, 3)
    if target_length == 0:
        return diff.pow(2).sum(-1).mean()
    return (safe_norm(diff) - float(target_length)).pow(2).mean()


def laplacian_smoothing_loss(verts: Tensor, L: Tensor, vertex_mask: Tensor | None = None) -> Tensor:
    """Uniform Laplacian smoothing: mean over batch items and vertices of |(L v)_i|_2.

    ``L`` is ``laplacian_matrix(faces, V)`` (L = I - D^-1 A), so (L v)_i = v_i - mean of its
    neighbours: the offset of a vertex from the centroid of its 1-ring, in units of ``verts``
    (zero gradient where it is exactly 0). Every vertex is treated alike: on an open mesh a
    boundary vertex's 1-ring is one-sided, so even a flat regular grid has non-zero boundary terms;
    pass ``vertex_mask`` (V,) bool (e.g. ``~boundary_vertex_mask(faces, V)``) to average over
    selected vertices only. A closed mesh has no boundary. No (selected) vertices give 0.
    """
    vb = _batched(verts)  # (B, V, 3)
    V = vb.shape[1]
    if L.dim() != 2 or tuple(L.shape) != (V, V):
        raise ValueError(f"Laplacian must be a ({V}, {V}) matrix, got {tuple(L.shape)}")
    lv = safe_norm(apply_sparse(L.to(vb.dtype), vb))  # (B, V)
    if vertex_mask is not None:
        vertex_mask = torch.as_tensor(vertex_mask, dtype=torch.bool, device=vb.device)
        if vertex_mask.shape != (V,):
            raise ValueError(f"vertex_mask must have shape ({V},), got {tuple(vertex_mask.shape)}")
        lv = lv[:, vertex_mask]  # (B, V')
    if lv.numel() == 0:
        return vb.sum() * 0
    return lv.mean()


def normal_consistency_loss(verts: Tensor, faces: Tensor, face_pairs: Tensor | None = None) -> Tensor:
    """Mean over interior edges of 1 - cos(angle between the unit normals of the two faces).

    An interior edge is one shared by exactly two faces (``interior_face_pairs``); boundary and
    non-manifold edges are skipped. Dimensionless, in [0, 2]: 0 for a flat sheet, small for a
    smooth closed surface, larger for a crumpled one. Averaged over edges and batch items.
    ``face_pairs`` (P, 2) may be passed precomputed. No interior edges give 0.
    """
    vb = _batched(verts)  # (B, V, 3)
    faces = check_faces(faces, vb.shape[1])
    pairs = interior_face_pairs(faces) if face_pairs is None else torch.as_tensor(face_pairs).long()
    if pairs.dim() != 2 or pairs.shape[1] != 2:
        raise ValueError(f"face_pairs must have shape (P, 2), got {tuple(pairs.shape)}")
    if pairs.shape[0] == 0 or vb.shape[0] == 0:
        return vb.sum() * 0
    _, normals = face_areas_normals(vb, faces)  # (B, F, 3)
    cos = (normals[:, pairs[:, 0]] * normals[:, pairs[:, 1]]).sum(-1)  # (B, P)
    return (1 - cos).mean()
