"""Triangle-mesh operations in plain torch (the few PyTorch3D ops the studio needs).

Conventions
    ``verts`` is (V, 3) or batched (B, V, 3) float; every batch item shares one ``faces`` (F, 3) int64
    tensor (the student deforms a fixed ico-sphere). Functions keep the batch dimension of their
    input: an unbatched call returns unbatched results. Face winding is counter-clockwise seen from
    outside, so ``(v1 - v0) x (v2 - v0)`` points outwards. All ops are differentiable in ``verts``;
    topology helpers (edges, Laplacian, face adjacency) need no gradient and can be computed once
    per topology and reused.
"""
from __future__ import annotations

import numpy as np
import torch
import trimesh

Tensor = torch.Tensor

MAX_ICOSPHERE_LEVEL = 7  # level 7 = 163,842 vertices; beyond that memory grows 4x per level


def safe_norm(v: Tensor, dim: int = -1) -> Tensor:
    """Euclidean norm ``sqrt(sum(v**2, dim))`` whose gradient at a zero vector is 0 instead of NaN.

    Reduction: over ``dim`` only. Units: those of ``v``. An empty ``dim`` gives 0.
    """
    sq = v.pow(2).sum(dim)
    pos = sq > 0
    return torch.where(pos, torch.where(pos, sq, torch.ones_like(sq)).sqrt(), torch.zeros_like(sq))


def icosphere(level: int = 4, radius: float = 0.5) -> tuple[Tensor, Tensor]:
    """Ico-sphere from ``trimesh.creation.icosphere(subdivisions=level, radius=radius)``.

    Returns ``verts`` (V, 3) float32 and ``faces`` (F, 3) int64 with V = 10 * 4**level + 2 and
    F = 20 * 4**level (level 4: 2562 vertices, 5120 faces). The default radius 0.5 fits the
    normalised unit cube [-0.5, 0.5]^3. Faces are wound outwards.
    """
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) \
            or not 0 <= level <= MAX_ICOSPHERE_LEVEL:
        raise ValueError(f"icosphere level must be an integer in 0..{MAX_ICOSPHERE_LEVEL}, got {level!r}")
    if not (isinstance(radius, (int, float)) and np.isfinite(radius) and radius > 0):
        raise ValueError(f"icosphere radius must be a positive number, got {radius!r}")
    mesh = trimesh.creation.icosphere(subdivisions=int(level), radius=float(radius))
    verts = torch.as_tensor(np.asarray(mesh.vertices), dtype=torch.float32)  # (V, 3)
    faces = torch.as_tensor(np.asarray(mesh.faces), dtype=torch.int64)  # (F, 3)
    return verts, faces


def check_faces(faces: Tensor, num_verts: int | None = None) -> Tensor:
    """Validate (F, 3) integer faces (indices in 0..num_verts-1 if given); return them as int64."""
    if not isinstance(faces, Tensor):
        faces = torch.as_tensor(np.asarray(faces))
    if faces.dim() != 2 or faces.shape[1] != 3:
        raise ValueError(f"faces must have shape (F, 3), got {tuple(faces.shape)}")
    if faces.dtype.is_floating_point or faces.dtype == torch.bool:
        raise ValueError(f"faces must be an integer tensor, got {faces.dtype}")
    faces = faces.long()
    if faces.numel() and (int(faces.min()) < 0 or (num_verts is not None and int(faces.max()) >= num_verts)):
        raise ValueError(f"faces index vertices outside 0..{num_verts - 1 if num_verts else '?'}")
    return faces


def check_verts(verts: Tensor) -> Tensor:
    """Validate a floating (V, 3) or (B, V, 3) vertex tensor; return it unchanged."""
    if not isinstance(verts, Tensor) or not verts.dtype.is_floating_point:
        raise ValueError("verts must be a floating-point torch tensor")
    if verts.dim() not in (2, 3) or verts.shape[-1] != 3:
        raise ValueError(f"verts must have shape (V, 3) or (B, V, 3), got {tuple(verts.shape)}")
    return verts


def unique_edges(faces: Tensor) -> Tensor:
    """Undirected edges of a triangle mesh, each once, as (E, 2) int64 with ``e[:, 0] < e[:, 1]``.

    Sorted lexicographically. A closed genus-0 mesh has E = 3F / 2. No faces give a (0, 2) tensor.
    """
    faces = check_faces(faces)
    e = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])  # (3F, 2)
    e = torch.sort(e, dim=1).values
    return torch.unique(e, dim=0) if len(e) else e.reshape(0, 2)


def interior_face_pairs(faces: Tensor) -> Tensor:
    """Pairs of faces that share an edge used by exactly two faces: (P, 2) int64 face indices,
    smaller index first, ordered by edge.

    Boundary edges (one face) and non-manifold edges (three or more faces) give no pair. On a closed
    manifold mesh P = E = 3F / 2. No faces give a (0, 2) tensor.
    """
    faces = check_faces(faces)
    nf = len(faces)
    if nf == 0:
        return torch.zeros(0, 2, dtype=torch.int64)
    e = torch.sort(torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), dim=1).values  # (3F, 2)
    face_of = torch.arange(nf).repeat(3)  # (3F,)
    _, inverse, counts = torch.unique(e, dim=0, return_inverse=True, return_counts=True)
    keep = counts[inverse] == 2  # half-edges of manifold interior edges
    edge_id, f = inverse[keep], face_of[keep]
    order = torch.argsort(edge_id, stable=True)
    return torch.sort(f[order].reshape(-1, 2), dim=1).values  # consecutive entries share an edge


def boundary_vertex_mask(faces: Tensor, num_verts: int) -> Tensor:
    """(V,) bool, True for vertices on a boundary edge (an edge used by exactly one face)."""
    faces = check_faces(faces, num_verts)
    mask = torch.zeros(num_verts, dtype=torch.bool)
    if len(faces):
        e = torch.sort(torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), dim=1).values
        uniq, counts = torch.unique(e, dim=0, return_counts=True)
        mask[uniq[counts == 1].reshape(-1)] = True
    return mask


def _face_cross(verts: Tensor, faces: Tensor) -> Tensor:
    """(v1 - v0) x (v2 - v0) per face: (..., F, 3); its length is twice the face area."""
    v0, v1, v2 = (verts[..., faces[:, i], :] for i in range(3))  # each (..., F, 3)
    return torch.cross(v1 - v0, v2 - v0, dim=-1)


def face_areas_normals(verts: Tensor, faces: Tensor) -> tuple[Tensor, Tensor]:
    """Face areas (..., F) and outward unit normals (..., F, 3).

    area = |(v1 - v0) x (v2 - v0)| / 2 in squared units of ``verts``; a degenerate (zero-area) face
    gets a zero normal. No faces give empty tensors.
    """
    verts = check_verts(verts)
    faces = check_faces(faces, verts.shape[-2])
    n = _face_cross(verts, faces)  # (..., F, 3)
    length = safe_norm(n)  # (..., F)
    normals = n / length.clamp_min(torch.finfo(n.dtype).tiny).unsqueeze(-1)  # (..., F, 3)
    return 0.5 * length, normals


def vertex_normals(verts: Tensor, faces: Tensor) -> Tensor:
    """Area-weighted vertex normals (..., V, 3): normalise(sum over incident faces of (v1-v0)x(v2-v0)).

    A vertex touched by no face (or only degenerate faces) gets a zero normal.
    """
    verts = check_verts(verts)
    faces = check_faces(faces, verts.shape[-2])
    n = _face_cross(verts, faces)  # (..., F, 3)
    acc = torch.zeros_like(verts)  # (..., V, 3)
    for i in range(3):
        acc = acc.index_add(-2, faces[:, i], n)
    return acc / safe_norm(acc).clamp_min(torch.finfo(acc.dtype).tiny).unsqueeze(-1)


def sample_points(verts: Tensor, faces: Tensor, n: int, generator: torch.Generator | None = None,
                  return_normals: bool = True):
    """Differentiable area-weighted uniform sampling of points on the mesh surface.

    For each of ``n`` samples a face is drawn with probability area / total area
    (``torch.multinomial`` with replacement; areas are not differentiated through the draw) and a
    uniform point inside it with barycentrics ``(1 - sqrt(u), sqrt(u) (1 - w), sqrt(u) w)``,
    u, w ~ U[0, 1). Points are differentiable in ``verts``; normals are the unit normals of the
    sampled faces. Batched inputs (B, V, 3) draw faces per item (areas differ per item).

    Returns points (..., n, 3) [and normals (..., n, 3)]. ``n = 0`` returns empty tensors. Raises
    ``ValueError`` when a mesh has no faces or zero total area. A fixed ``generator`` makes the
    draw deterministic (it must live on the device of ``verts``).
    """
    verts = check_verts(verts)
    faces = check_faces(faces, verts.shape[-2])
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"number of sample points must be a non-negative integer, got {n!r}")
    batched = verts.dim() == 3
    vb = verts if batched else verts.unsqueeze(0)  # (B, V, 3)
    B = vb.shape[0]
    if n == 0 or B == 0:
        pts = nrm = vb.new_zeros(B, int(n), 3)
    else:
        pts, nrm = _sample_batched(vb, faces, int(n), generator)  # (B, n, 3) each
    if not batched:
        pts, nrm = pts[0], nrm[0]
    return (pts, nrm) if return_normals else pts


def _sample_batched(vb: Tensor, faces: Tensor, n: int, generator: torch.Generator | None):
    """``sample_points`` for vb (B, V, 3), B >= 1, n >= 1."""
    if len(faces) == 0:
        raise ValueError("cannot sample points from a mesh with no faces")
    B = vb.shape[0]
    areas, normals = face_areas_normals(vb, faces)  # (B, F), (B, F, 3)
    with torch.no_grad():
        probs = areas.detach()
        if not bool(torch.isfinite(probs).all()) or not bool((probs.sum(-1) > 0).all()):
            raise ValueError("cannot sample points from a mesh with zero (or non-finite) surface area")
        face_idx = torch.multinomial(probs, n, replacement=True, generator=generator)  # (B, n)
        u, w = torch.rand(2, B, n, 1, generator=generator, dtype=vb.dtype, device=vb.device)
        su = u.sqrt()  # (B, n, 1)
        bary = (1 - su, su * (1 - w), su * w)  # each (B, n, 1)
    corners = faces[face_idx]  # (B, n, 3)
    bidx = torch.arange(B, device=vb.device).unsqueeze(1)  # (B, 1)
    pts = bary[0] * vb[bidx, corners[..., 0]] + bary[1] * vb[bidx, corners[..., 1]] \
        + bary[2] * vb[bidx, corners[..., 2]]  # (B, n, 3)
    return pts, normals[bidx, face_idx]


def laplacian_matrix(faces: Tensor, num_verts: int, dtype: torch.dtype = torch.float32,
                     device: torch.device | str | None = None) -> Tensor:
    """Uniform graph Laplacian L = I - D^-1 A as a coalesced sparse COO (V, V) tensor.

    A is the symmetric 0/1 adjacency of the mesh edges and D its degree matrix, so
    (L v)_i = v_i - mean of the neighbours of v_i. Rows of isolated vertices (degree 0) are zero.
    Depends on topology only: build it once per ``faces`` and reuse it (also across a batch).
    """
    if isinstance(num_verts, bool) or not isinstance(num_verts, (int, np.integer)) or num_verts < 0:
        raise ValueError(f"num_verts must be a non-negative integer, got {num_verts!r}")
    faces = check_faces(faces, num_verts)
    e = unique_edges(faces)  # (E, 2)
    rows = torch.cat([e[:, 0], e[:, 1]])  # (2E,)
    cols = torch.cat([e[:, 1], e[:, 0]])  # (2E,)
    deg = torch.bincount(rows, minlength=num_verts).to(dtype)  # (V,)
    off = -1.0 / deg[rows]  # (2E,)
    connected = torch.nonzero(deg > 0).squeeze(1)  # (V',)
    idx = torch.cat([torch.stack([rows, cols]), torch.stack([connected, connected])], dim=1)  # (2, 2E+V')
    val = torch.cat([off, torch.ones(len(connected), dtype=dtype)])
    return torch.sparse_coo_tensor(idx, val, (num_verts, num_verts), device=device,
                                   check_invariants=True).coalesce()


def apply_sparse(L: Tensor, verts: Tensor) -> Tensor:
    """L @ verts for a sparse (V, V) matrix and verts (V, C) or (B, V, C); returns the same shape."""
    if verts.dim() == 2:
        return torch.sparse.mm(L, verts)
    B, V, C = verts.shape
    flat = verts.permute(1, 0, 2).reshape(V, B * C)  # (V, B*C)
    return torch.sparse.mm(L, flat).reshape(V, B, C).permute(1, 0, 2)  # (B, V, C)
