"""engine.geometry.mesh: ico-sphere, topology helpers, areas/normals, sampling, Laplacian."""
import math

import numpy as np
import pytest
import torch

from engine.geometry.mesh import (
    apply_sparse,
    boundary_vertex_mask,
    face_areas_normals,
    icosphere,
    interior_face_pairs,
    laplacian_matrix,
    sample_points,
    unique_edges,
    vertex_normals,
)

# unit square in the z=0 plane split into two triangles, wound so normals point to +z
SQUARE_V = torch.tensor([[0.0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], dtype=torch.float64)
SQUARE_F = torch.tensor([[0, 1, 2], [0, 2, 3]])
TETRA_V = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=torch.float64)
TETRA_F = torch.tensor([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])


def test_icosphere_level4_counts_and_radius():
    v, f = icosphere(4)
    assert v.shape == (2562, 3) and f.shape == (5120, 3)
    assert v.dtype == torch.float32 and f.dtype == torch.int64
    assert torch.allclose(v.norm(dim=1), torch.full((2562,), 0.5), atol=1e-6)
    e = unique_edges(f)
    assert len(e) == 7680  # closed: E = 3F/2, Euler V - E + F = 2
    assert len(v) - len(e) + len(f) == 2
    v2, f2 = icosphere(2, radius=1.5)
    assert v2.shape == (162, 3) and f2.shape == (320, 3)
    assert torch.allclose(v2.norm(dim=1), torch.full((162,), 1.5), atol=1e-6)


@pytest.mark.parametrize("level,radius", [(-1, 0.5), (9, 0.5), (2.5, 0.5), (True, 0.5), (2, 0.0), (2, -1.0)])
def test_icosphere_rejects_bad_arguments(level, radius):
    with pytest.raises(ValueError):
        icosphere(level, radius=radius)


def test_unique_edges_by_hand():
    e = unique_edges(SQUARE_F)
    assert e.tolist() == [[0, 1], [0, 2], [0, 3], [1, 2], [2, 3]]
    assert unique_edges(torch.zeros(0, 3, dtype=torch.int64)).shape == (0, 2)
    with pytest.raises(ValueError):
        unique_edges(torch.zeros(4, 2, dtype=torch.int64))
    with pytest.raises(ValueError):
        unique_edges(torch.zeros(4, 3))  # float faces


def test_face_areas_normals_by_hand_and_batched():
    areas, normals = face_areas_normals(SQUARE_V, SQUARE_F)
    assert torch.allclose(areas, torch.tensor([0.5, 0.5], dtype=torch.float64))
    assert torch.allclose(normals, torch.tensor([[0.0, 0, 1], [0, 0, 1]], dtype=torch.float64))
    batch = torch.stack([SQUARE_V, 2 * SQUARE_V])  # (2, 4, 3)
    a, n = face_areas_normals(batch, SQUARE_F)
    assert a.shape == (2, 2) and n.shape == (2, 2, 3)
    assert torch.allclose(a[1], torch.tensor([2.0, 2.0], dtype=torch.float64))
    # degenerate face: zero area and zero normal, no NaN
    a, n = face_areas_normals(torch.zeros(3, 3), torch.tensor([[0, 1, 2]]))
    assert a.item() == 0 and torch.equal(n, torch.zeros(1, 3))
    with pytest.raises(ValueError):
        face_areas_normals(SQUARE_V, torch.tensor([[0, 1, 4]]))  # index out of range


def test_icosphere_area_and_outward_normals():
    v, f = icosphere(4, radius=0.5)
    areas, normals = face_areas_normals(v, f)
    assert abs(areas.sum().item() - 4 * math.pi * 0.25) / (math.pi) < 0.01
    centres = v[f].mean(1)  # (F, 3)
    assert bool(((normals * centres).sum(1) > 0).all())
    vn = vertex_normals(v, f)
    assert torch.allclose(vn.norm(dim=1), torch.ones(len(v)), atol=1e-5)
    assert (vn * v / 0.5).sum(1).min().item() > 0.999


def test_sample_points_lie_on_surface_and_are_uniform():
    g = torch.Generator().manual_seed(0)
    pts, nrm = sample_points(SQUARE_V, SQUARE_F, 20000, generator=g)
    assert pts.shape == (20000, 3) and nrm.shape == (20000, 3)
    assert torch.all(pts[:, 2] == 0) and pts[:, :2].min() >= 0 and pts[:, :2].max() <= 1
    assert torch.allclose(nrm, torch.tensor([0.0, 0, 1], dtype=torch.float64).expand(20000, 3))
    # uniform over the square: mean 0.5, variance 1/12 per axis, each half gets ~half the points
    assert torch.allclose(pts[:, :2].mean(0), torch.tensor([0.5, 0.5], dtype=torch.float64), atol=0.01)
    assert torch.allclose(pts[:, :2].var(0), torch.full((2,), 1 / 12, dtype=torch.float64), atol=0.005)
    assert abs((pts[:, 0] > pts[:, 1]).double().mean().item() - 0.5) < 0.02


def test_sample_points_follow_area():
    # two disjoint triangles with areas 0.5 and 4.5 -> 10 % / 90 % of the samples
    v = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [5, 0, 0], [8, 0, 0], [5, 3, 0]])
    f = torch.tensor([[0, 1, 2], [3, 4, 5]])
    pts = sample_points(v, f, 20000, generator=torch.Generator().manual_seed(1), return_normals=False)
    assert abs((pts[:, 0] >= 5).float().mean().item() - 0.9) < 0.01


def test_sample_points_batched_deterministic_and_differentiable():
    v, f = icosphere(1)
    batch = torch.stack([v, 2 * v])  # (2, V, 3)
    a = sample_points(batch, f, 100, generator=torch.Generator().manual_seed(3))
    b = sample_points(batch, f, 100, generator=torch.Generator().manual_seed(3))
    assert a[0].shape == (2, 100, 3) and torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    r = a[0].norm(dim=-1)  # points of the level-1 sphere lie between the inscribed and vertex radius
    assert r[0].max() <= 0.5 + 1e-6 and r[1].max() <= 1.0 + 1e-6 and r[1].min() > 0.75
    assert sample_points(batch, f, 0)[0].shape == (2, 0, 3)


def test_sample_points_gradcheck():
    verts = (TETRA_V + 0.1 * torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    verts.requires_grad_(True)

    def fn(v):
        return sample_points(v, TETRA_F, 7, generator=torch.Generator().manual_seed(5))

    assert torch.autograd.gradcheck(fn, (verts,))
    batched = torch.stack([verts.detach(), verts.detach() * 1.5]).requires_grad_(True)
    assert torch.autograd.gradcheck(fn, (batched,))


def test_sample_points_rejects_bad_input():
    with pytest.raises(ValueError):
        sample_points(torch.zeros(3, 3), torch.tensor([[0, 1, 2]]), 5)  # zero area
    with pytest.raises(ValueError):
        sample_points(SQUARE_V, torch.zeros(0, 3, dtype=torch.int64), 5)  # no faces
    with pytest.raises(ValueError):
        sample_points(SQUARE_V, SQUARE_F, -1)
    with pytest.raises(ValueError):
        sample_points(SQUARE_V[:, :2], SQUARE_F, 5)


def test_laplacian_matrix_by_hand():
    # vertex 4 is isolated -> zero row
    L = laplacian_matrix(SQUARE_F, 5, dtype=torch.float64).to_dense()
    deg = torch.tensor([3.0, 2, 3, 2], dtype=torch.float64)
    A = torch.zeros(4, 4, dtype=torch.float64)
    for i, j in unique_edges(SQUARE_F).tolist():
        A[i, j] = A[j, i] = 1
    expected = torch.zeros(5, 5, dtype=torch.float64)
    expected[:4, :4] = torch.eye(4, dtype=torch.float64) - A / deg[:, None]
    assert torch.allclose(L, expected)
    assert torch.allclose(L.sum(1), torch.zeros(5, dtype=torch.float64))


def test_laplacian_apply_matches_neighbour_means():
    v, f = icosphere(1)
    L = laplacian_matrix(f, len(v))
    nbrs = [set() for _ in range(len(v))]
    for i, j in unique_edges(f).tolist():
        nbrs[i].add(j)
        nbrs[j].add(i)
    expected = torch.stack([v[i] - v[sorted(n)].mean(0) for i, n in enumerate(nbrs)])
    assert torch.allclose(apply_sparse(L, v), expected, atol=1e-6)
    batch = torch.stack([v, 3 * v])
    out = apply_sparse(L, batch)
    assert out.shape == (2, len(v), 3) and torch.allclose(out[1], 3 * expected, atol=1e-5)


def test_interior_pairs_and_boundary():
    assert interior_face_pairs(SQUARE_F).tolist() == [[0, 1]]
    assert boundary_vertex_mask(SQUARE_F, 4).tolist() == [True, True, True, True]
    _, f = icosphere(2)
    pairs = interior_face_pairs(f)
    assert pairs.shape == (480, 2)  # closed: every edge is interior
    assert not boundary_vertex_mask(f, 162).any()
    # every pair really shares two vertices
    shared = [len(set(f[a].tolist()) & set(f[b].tolist())) for a, b in pairs.tolist()]
    assert set(shared) == {2}
    # non-manifold edge (three faces on edge 0-1) gives no pair
    nm = torch.tensor([[0, 1, 2], [1, 0, 3], [0, 1, 4]])
    assert interior_face_pairs(nm).shape == (0, 2)
    np.testing.assert_array_equal(boundary_vertex_mask(nm, 5).numpy(), [True] * 5)
