"""engine.geometry.chamfer against a float64 NumPy brute force, by hand, gradcheck, weights, empty."""
import math

import numpy as np
import pytest
import torch

from engine.geometry.chamfer import (
    KDTreeCache,
    PointTree,
    chamfer_distance,
    chamfer_distance_cdist,
    nearest_neighbours,
)


def brute_parts(x, y, norm, wx=None, wy=None):
    """Per-item weighted means of NN distances, by explicit float64 NumPy broadcasting."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    d = np.sqrt(((x[:, :, None, :] - y[:, None, :, :]) ** 2).sum(-1))  # (B, N, M)
    if norm == 2:
        d = d ** 2
    dx, dy = d.min(2), d.min(1)
    wx = np.ones_like(dx) if wx is None else np.asarray(wx, np.float64)
    wy = np.ones_like(dy) if wy is None else np.asarray(wy, np.float64)
    return (dx * wx).sum(1) / wx.sum(1), (dy * wy).sum(1) / wy.sum(1)


def clouds(B, N, M, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, N, 3, generator=g, dtype=dtype), torch.rand(B, M, 3, generator=g, dtype=dtype) * 1.3


@pytest.mark.parametrize("method", ["kdtree", "brute"])
@pytest.mark.parametrize("norm", [1, 2])
def test_matches_float64_brute_force(method, norm):
    x, y = clouds(3, 200, 317, seed=norm)
    ex, ey = brute_parts(x, y, norm)
    cx, cy = chamfer_distance(x, y, norm=norm, batch_reduction=None, return_parts=True, method=method)
    np.testing.assert_allclose(cx.numpy(), ex, rtol=1e-12)
    np.testing.assert_allclose(cy.numpy(), ey, rtol=1e-12)
    total = chamfer_distance(x, y, norm=norm, method=method)
    assert math.isclose(total.item(), (ex + ey).mean(), rel_tol=1e-12)
    assert math.isclose(chamfer_distance_cdist(x, y, norm=norm).item(), (ex + ey).mean(), rel_tol=1e-9)
    single = chamfer_distance(x, y, norm=norm, single_directional=True, method=method)
    assert math.isclose(single.item(), ex.mean(), rel_tol=1e-12)


def test_float32_input_matches_reference():
    x, y = clouds(2, 500, 900, seed=7, dtype=torch.float32)
    ex, ey = brute_parts(x, y, 2)
    assert math.isclose(chamfer_distance(x, y).item(), (ex + ey).mean(), rel_tol=1e-5)


def test_case_by_hand():
    x = torch.tensor([[[0.0, 0, 0], [1, 0, 0]]])
    y = torch.tensor([[[0.0, 0, 0.5]]])
    # x->y squared: 0.25, 1.25 -> mean 0.75; y->x: 0.25
    cx, cy = chamfer_distance(x, y, return_parts=True)
    assert math.isclose(cx.item(), 0.75, rel_tol=1e-6) and math.isclose(cy.item(), 0.25, rel_tol=1e-6)
    assert math.isclose(chamfer_distance(x, y).item(), 1.0, rel_tol=1e-6)
    # Euclidean: (0.5 + sqrt(1.25)) / 2 + 0.5
    assert math.isclose(chamfer_distance(x, y, norm=1).item(), (0.5 + math.sqrt(1.25)) / 2 + 0.5, rel_tol=1e-6)
    # sum reduction sums over points: 0.25 + 1.25 + 0.25
    assert math.isclose(chamfer_distance(x, y, point_reduction="sum", batch_reduction="sum").item(), 1.75, rel_tol=1e-6)
    assert chamfer_distance(x, x).item() == 0


def test_nearest_neighbours_match_argmin():
    x, y = clouds(2, 300, 400, seed=3)
    ref = torch.cdist(x, y).argmin(-1)
    assert torch.equal(nearest_neighbours(x, y), ref)
    assert torch.equal(nearest_neighbours(x, y, method="brute"), ref)
    assert torch.equal(nearest_neighbours(x[0], y[0]), ref[0])  # unbatched
    assert nearest_neighbours(x[:, :0], y).shape == (2, 0)
    with pytest.raises(ValueError):
        nearest_neighbours(x, y[:, :0])


@pytest.mark.parametrize("norm", [1, 2])
def test_gradcheck(norm):
    x, y = clouds(2, 6, 9, seed=11)
    x.requires_grad_(True)
    y.requires_grad_(True)
    w = torch.rand(2, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) + 0.1
    assert torch.autograd.gradcheck(lambda a, b: chamfer_distance(a, b, norm=norm), (x, y))
    assert torch.autograd.gradcheck(lambda a, b: chamfer_distance(a, b, norm=norm, x_weights=w), (x, y))


def test_gradients_match_reference_and_reach_both_sides():
    x, y = clouds(2, 50, 80, seed=5)
    xa, ya = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
    xb, yb = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
    chamfer_distance(xa, ya, norm=1).backward()
    chamfer_distance_cdist(xb, yb, norm=1).backward()
    assert torch.allclose(xa.grad, xb.grad) and torch.allclose(ya.grad, yb.grad)
    assert xa.grad.abs().sum() > 0 and ya.grad.abs().sum() > 0
    # coincident points: Euclidean gradient is 0, not NaN
    p = torch.zeros(1, 2, 3, requires_grad=True)
    chamfer_distance(p, p.detach().clone(), norm=1).backward()
    assert torch.equal(p.grad, torch.zeros_like(p))


def test_weights():
    x, y = clouds(2, 40, 60, seed=9)
    g = torch.Generator().manual_seed(4)
    wx, wy = torch.rand(2, 40, dtype=torch.float64, generator=g), torch.rand(2, 60, dtype=torch.float64, generator=g)
    ex, ey = brute_parts(x, y, 2, wx.numpy(), wy.numpy())
    cx, cy = chamfer_distance(x, y, x_weights=wx, y_weights=wy, batch_reduction=None, return_parts=True)
    np.testing.assert_allclose(cx.numpy(), ex, rtol=1e-12)
    np.testing.assert_allclose(cy.numpy(), ey, rtol=1e-12)
    ref = chamfer_distance_cdist(x, y, x_weights=wx, y_weights=wy)
    assert math.isclose(chamfer_distance(x, y, x_weights=wx, y_weights=wy).item(), ref.item(), rel_tol=1e-12)
    # uniform weights = plain mean; a zero weight removes an outlier's term
    assert torch.allclose(chamfer_distance(x, y, x_weights=torch.full((2, 40), 3.0, dtype=torch.float64)),
                          chamfer_distance(x, y))
    xo = torch.cat([x, torch.full((2, 1, 3), 50.0, dtype=torch.float64)], 1)
    w = torch.cat([torch.ones(2, 40, dtype=torch.float64), torch.zeros(2, 1, dtype=torch.float64)], 1)
    assert torch.allclose(chamfer_distance(xo, y, x_weights=w, single_directional=True),
                          chamfer_distance(x, y, single_directional=True))
    # all-zero weights: that direction is 0
    cx0, _ = chamfer_distance(x, y, x_weights=torch.zeros(2, 40, dtype=torch.float64), return_parts=True)
    assert cx0.item() == 0
    with pytest.raises(ValueError):
        chamfer_distance(x, y, x_weights=-wx)
    with pytest.raises(ValueError):
        chamfer_distance(x, y, x_weights=wx[:, :10])


@pytest.mark.parametrize("shape_x,shape_y", [((2, 0, 3), (2, 5, 3)), ((2, 5, 3), (2, 0, 3)), ((0, 5, 3), (0, 4, 3))])
def test_empty_input_returns_zero(shape_x, shape_y):
    x = torch.rand(*shape_x, requires_grad=True)
    y = torch.rand(*shape_y, requires_grad=True)
    out = chamfer_distance(x, y)
    assert out.shape == () and out.item() == 0
    out.backward()
    assert x.grad is not None and torch.equal(x.grad, torch.zeros_like(x))
    cx, cy = chamfer_distance(x, y, batch_reduction=None, return_parts=True)
    assert cx.shape == (shape_x[0],) and not cx.any() and not cy.any()
    assert chamfer_distance_cdist(x, y).item() == 0


def test_rejects_bad_input():
    x, y = clouds(1, 4, 5, seed=0)
    bad = [
        lambda: chamfer_distance(x[0], y[0]),  # unbatched
        lambda: chamfer_distance(x, y[..., :2]),
        lambda: chamfer_distance(x, torch.rand(2, 5, 3, dtype=torch.float64)),
        lambda: chamfer_distance(x, y.float()),
        lambda: chamfer_distance(x, y, norm=3),
        lambda: chamfer_distance(x, y, point_reduction="max"),
        lambda: chamfer_distance(x, y, batch_reduction="none"),
        lambda: chamfer_distance(x.clone().fill_(float("nan")), y),
        lambda: chamfer_distance(x, y, method="octree"),
    ]
    for fn in bad:
        with pytest.raises(ValueError):
            fn()


def test_tree_cache_gives_same_result_and_rebuilds_on_change():
    x, y = clouds(3, 100, 150, seed=21)
    cache = KDTreeCache(max_items=2)
    trees = cache.trees(["a", "b", "c"], y)
    assert len(cache) == 2  # LRU: "a" evicted
    ref = chamfer_distance(x, y, norm=1)
    assert torch.equal(chamfer_distance(x, y, norm=1, y_trees=trees), ref)
    assert torch.equal(chamfer_distance(x, y, norm=1, y_trees=[trees[0], None, trees[2]]), ref)
    tree_b = cache.get("b", y[1])
    assert tree_b is trees[1]  # hit
    moved = cache.get("b", y[1] + 1)  # same key, different points -> rebuilt
    assert moved is not tree_b and moved.matches(y[1] + 1)
    with pytest.raises(ValueError):
        chamfer_distance(x, y, y_trees=trees[:2])
    with pytest.raises(ValueError):
        chamfer_distance(x, y, y_trees=[PointTree(y[0][:10])] * 3)
    with pytest.raises(ValueError):
        PointTree(torch.zeros(0, 3))


@pytest.mark.parametrize("norm", [1, 2])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_numpy_cpu_kernel_matches_torch_gather_path(norm, reduction):
    """The CPU NumPy kernel (value + analytic gradient) equals plain torch autograd on gathered pairs."""
    from engine.geometry.chamfer import _direction, _reduce_points, gather_distances

    x, y = clouds(2, 30, 45, seed=13)
    idx = nearest_neighbours(x, y)
    w = torch.rand(2, 30, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    g = torch.tensor([0.7, -1.3], dtype=torch.float64)
    grads = []
    for use_kernel in (True, False):
        xa, ya = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
        out = _direction(xa, ya, idx, norm, w, reduction) if use_kernel \
            else _reduce_points(gather_distances(xa, ya, idx, norm), w, reduction)
        (out * g).sum().backward()
        grads.append((out.detach(), xa.grad, ya.grad))
    for a, b in zip(*grads):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-14)
