"""engine.geometry.losses: edge length, uniform Laplacian smoothing, normal consistency."""
import math

import pytest
import torch

from engine.geometry.losses import edge_length_loss, laplacian_smoothing_loss, normal_consistency_loss
from engine.geometry.mesh import boundary_vertex_mask, icosphere, laplacian_matrix, unique_edges

CUBE_V = torch.tensor([[x, y, z] for x in (0.0, 1) for y in (0.0, 1) for z in (0.0, 1)], dtype=torch.float64)
CUBE_F = torch.tensor([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                       [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])


def grid(n: int = 8, z_noise: float = 0.0, seed: int = 0):
    """Regular n x n grid of unit spacing in the z=0 plane (two triangles per cell), optional z noise."""
    ii, jj = torch.meshgrid(torch.arange(n, dtype=torch.float64), torch.arange(n, dtype=torch.float64),
                            indexing="ij")
    v = torch.stack([ii.reshape(-1), jj.reshape(-1), torch.zeros(n * n, dtype=torch.float64)], 1)
    if z_noise:
        v[:, 2] = z_noise * torch.randn(n * n, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    idx = torch.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1].reshape(-1), idx[1:, :-1].reshape(-1), idx[1:, 1:].reshape(-1), idx[:-1, 1:].reshape(-1)
    f = torch.cat([torch.stack([a, b, c], 1), torch.stack([a, c, d], 1)])
    return v, f


def noisy(v: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    return v + sigma * torch.randn(v.shape, dtype=v.dtype, generator=torch.Generator().manual_seed(seed))


def test_edge_length_by_hand():
    v = torch.tensor([[0.0, 0, 0], [2, 0, 0], [2, 1, 0]])
    e = torch.tensor([[0, 1], [1, 2]])
    assert math.isclose(edge_length_loss(v, e).item(), (4 + 1) / 2)
    assert math.isclose(edge_length_loss(v, e, target_length=1.0).item(), (1 + 0) / 2)
    batch = torch.stack([v, 2 * v])
    assert math.isclose(edge_length_loss(batch, e).item(), (2.5 + 10) / 2)
    assert edge_length_loss(v, torch.zeros(0, 2, dtype=torch.int64)).item() == 0
    with pytest.raises(ValueError):
        edge_length_loss(v, torch.tensor([[0, 3]]))
    with pytest.raises(ValueError):
        edge_length_loss(v, e, target_length=-1.0)


def test_edge_length_regular_vs_noisy_icosphere():
    v, f = icosphere(3)
    e = unique_edges(f)
    mean_len = (v[e[:, 0]] - v[e[:, 1]]).norm(dim=1).mean().item()
    regular = edge_length_loss(v, e, target_length=mean_len).item()
    rough = edge_length_loss(noisy(v, 0.01), e, target_length=mean_len).item()
    assert regular < 0.02 * mean_len ** 2 and rough > 3 * regular
    # gradient is finite even for a zero-length edge with a non-zero target
    p = torch.zeros(2, 3, requires_grad=True)
    edge_length_loss(p, torch.tensor([[0, 1]]), target_length=0.5).backward()
    assert torch.isfinite(p.grad).all()


def test_laplacian_flat_grid_is_zero_inside_and_grows_with_noise():
    v, f = grid(8)
    L = laplacian_matrix(f, len(v), dtype=torch.float64)
    interior = ~boundary_vertex_mask(f, len(v))
    assert interior.sum() == 36
    assert laplacian_smoothing_loss(v, L, vertex_mask=interior).item() < 1e-12
    assert laplacian_smoothing_loss(v, L).item() > 0.05  # one-sided boundary rings (documented)
    values = [laplacian_smoothing_loss(grid(8, s)[0], L, vertex_mask=interior).item() for s in (0.01, 0.05, 0.2)]
    assert values[0] > 1e-3 and values[0] < values[1] < values[2]
    # zero Laplacian: gradient finite (0), not NaN
    vg = v.clone().requires_grad_(True)
    laplacian_smoothing_loss(vg, L, vertex_mask=interior).backward()
    assert torch.isfinite(vg.grad).all()


def test_laplacian_matches_explicit_neighbour_means_and_batches():
    v, f = icosphere(1)
    v = noisy(v.double(), 0.02)
    L = laplacian_matrix(f, len(v))
    nbrs = [set() for _ in range(len(v))]
    for i, j in unique_edges(f).tolist():
        nbrs[i].add(j)
        nbrs[j].add(i)
    expected = torch.stack([(v[i] - v[sorted(n)].mean(0)).norm() for i, n in enumerate(nbrs)]).mean()
    assert math.isclose(laplacian_smoothing_loss(v, L).item(), expected.item(), rel_tol=1e-6)
    batch = torch.stack([v, 2 * v])
    assert math.isclose(laplacian_smoothing_loss(batch, L).item(), 1.5 * expected.item(), rel_tol=1e-6)
    smooth = laplacian_smoothing_loss(icosphere(3)[0], laplacian_matrix(icosphere(3)[1], 642)).item()
    rough = laplacian_smoothing_loss(noisy(icosphere(3)[0], 0.01), laplacian_matrix(icosphere(3)[1], 642)).item()
    assert rough > 2 * smooth
    with pytest.raises(ValueError):
        laplacian_smoothing_loss(v, laplacian_matrix(f, len(v) + 1))


def test_normal_consistency_by_hand():
    # cube: 12 edges with a right angle (1 - cos 90 = 1), 6 face diagonals that are flat (0)
    assert math.isclose(normal_consistency_loss(CUBE_V, CUBE_F).item(), 12 / 18, rel_tol=1e-12)
    v, f = grid(5)
    assert normal_consistency_loss(v, f).item() < 1e-12
    # one fold: a single interior edge with a 90 degree dihedral
    v = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=torch.float64)
    f = torch.tensor([[0, 1, 2], [0, 3, 1]])
    assert math.isclose(normal_consistency_loss(v, f).item(), 1.0, rel_tol=1e-12)
    assert normal_consistency_loss(v, f[:1]).item() == 0  # no interior edge


def test_normal_consistency_regular_vs_noisy_icosphere_and_gradcheck():
    v, f = icosphere(3)
    regular = normal_consistency_loss(v, f).item()
    rough = normal_consistency_loss(noisy(v, 0.01), f).item()
    assert regular < 0.01 and rough > 3 * regular
    vb = torch.stack([v, noisy(v, 0.01)])
    assert math.isclose(normal_consistency_loss(vb, f).item(), (regular + rough) / 2, rel_tol=1e-5)
    small = noisy(CUBE_V, 0.05).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: normal_consistency_loss(x, CUBE_F), (small,))
    L = laplacian_matrix(CUBE_F, 8, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: laplacian_smoothing_loss(x, L), (small,))
    e = unique_edges(CUBE_F)
    assert torch.autograd.gradcheck(lambda x: edge_length_loss(x, e, target_length=0.8), (small,))
