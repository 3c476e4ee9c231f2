"""engine.geometry.metrics: Chamfer L1/L2, F-score and normal consistency vs brute force and by hand."""
import math

import numpy as np
import pytest
import torch

from engine.geometry.chamfer import chamfer_distance
from engine.geometry.mesh import icosphere
from engine.geometry.metrics import fscore, mesh_metrics, point_metrics, tau_key


def brute_metrics(p, g, taus=(0.01, 0.02)):
    d = np.sqrt(((p[:, None, :] - g[None, :, :]) ** 2).sum(-1))  # (N, M) float64
    dp, dg = d.min(1), d.min(0)
    out = {"cd_l1": 0.5 * (dp.mean() + dg.mean()), "cd_l2": 0.5 * ((dp ** 2).mean() + (dg ** 2).mean())}
    for t in taus:
        prec, rec = (dp < t).mean(), (dg < t).mean()
        out[tau_key(t)] = 0.0 if prec + rec == 0 else 2 * prec * rec / (prec + rec)
    return out


def test_matches_float64_brute_force_on_random_points():
    rng = np.random.default_rng(0)
    g = rng.uniform(-0.5, 0.5, (700, 3))
    p = g[:500] + rng.normal(0, 0.01, (500, 3))  # near-by prediction: F-scores strictly between 0 and 1
    got, ref = point_metrics(p, g), brute_metrics(p, g)
    assert set(got) == {"cd_l1", "cd_l2", "fscore@1%", "fscore@2%", "normal_consistency"}
    for k, v in ref.items():
        assert math.isclose(got[k], v, rel_tol=1e-12), k
        assert isinstance(got[k], float)
    assert 0 < got["fscore@1%"] < got["fscore@2%"] < 1
    assert got["normal_consistency"] is None
    # torch float32 input gives the same numbers up to float32 rounding of the inputs
    got32 = point_metrics(torch.tensor(p, dtype=torch.float32), torch.tensor(g, dtype=torch.float32))
    assert math.isclose(got32["cd_l1"], ref["cd_l1"], rel_tol=1e-5)


def test_case_by_hand():
    p = np.array([[0.0, 0, 0], [0.015, 0, 0]])
    g = np.array([[0.0, 0, 0]])
    m = point_metrics(p, g, taus=(0.01, 0.02, 0.005))
    assert math.isclose(m["cd_l1"], 0.5 * (0.0075 + 0), rel_tol=1e-12)
    assert math.isclose(m["cd_l2"], 0.5 * (0.015 ** 2 / 2), rel_tol=1e-12)
    assert math.isclose(m["fscore@1%"], 2 * 0.5 * 1 / 1.5, rel_tol=1e-12)  # P = 1/2, R = 1
    assert m["fscore@2%"] == 1.0
    assert math.isclose(m["fscore@0.5%"], 2 / 3, rel_tol=1e-12)
    far = point_metrics(p + 1, g)
    assert far["fscore@1%"] == 0.0 and far["fscore@2%"] == 0.0


def test_relation_to_chamfer_loss():
    rng = np.random.default_rng(1)
    p, g = rng.random((300, 3)), rng.random((400, 3))
    m = point_metrics(p, g)
    pt, gt = torch.tensor(p)[None], torch.tensor(g)[None]
    assert math.isclose(m["cd_l2"], chamfer_distance(pt, gt, norm=2).item() / 2, rel_tol=1e-12)
    assert math.isclose(m["cd_l1"], chamfer_distance(pt, gt, norm=1).item() / 2, rel_tol=1e-12)


def test_normal_consistency():
    rng = np.random.default_rng(2)
    pts = rng.random((200, 3))
    n = rng.normal(size=(200, 3))
    assert math.isclose(point_metrics(pts, pts, n, 3 * n)["normal_consistency"], 1.0, rel_tol=1e-12)
    assert math.isclose(point_metrics(pts, pts, n, -n)["normal_consistency"], 1.0, rel_tol=1e-12)  # |cos|
    perp = np.cross(n, rng.normal(size=(200, 3)))
    assert point_metrics(pts, pts, n, perp)["normal_consistency"] < 1e-12
    # by hand: pred normal (1,0,0) vs gt (1,1,0)/sqrt2 -> cos = 1/sqrt2 in both directions
    m = point_metrics([[0, 0, 0]], [[0, 0, 0.001]], [[1, 0, 0]], [[1, 1, 0]])
    assert math.isclose(m["normal_consistency"], 1 / math.sqrt(2), rel_tol=1e-12)
    assert point_metrics(pts, pts, n, None)["normal_consistency"] is None


def test_fscore_helper_and_bad_input():
    assert fscore(0, 0) == 0 and fscore(1, 1) == 1 and math.isclose(fscore(0.5, 1), 2 / 3)
    assert tau_key(0.01) == "fscore@1%" and tau_key(0.02) == "fscore@2%"
    pts = np.zeros((3, 3))
    for args in [(np.zeros((0, 3)), pts), (pts, np.zeros((0, 3))), (pts[:, :2], pts),
                 (np.full((3, 3), np.nan), pts)]:
        with pytest.raises(ValueError):
            point_metrics(*args)
    with pytest.raises(ValueError):
        point_metrics(pts, pts, taus=(0.0,))
    with pytest.raises(ValueError):
        point_metrics(pts, pts, np.zeros((2, 3)), np.zeros((3, 3)))


def test_mesh_metrics_identical_scaled_and_noisy():
    v, f = icosphere(3)
    same = mesh_metrics(v, f, v, f, n_points=3000, seed=0)
    # two independent 3000-point samplings of one sphere (area pi) sit ~0.016 apart on average, so
    # even identical meshes score well below 1 at tau = 1 % (the sampling floor of the metric)
    assert same["fscore@2%"] > 0.6 and same["cd_l1"] < 0.02 and same["normal_consistency"] > 0.99
    # deterministic for a seed, and invariant to translation + scale under the normalisation
    assert mesh_metrics(v, f, v, f, n_points=3000, seed=0) == same
    moved = mesh_metrics(v.double().numpy() * 3 + 7, f.numpy(), v, f, n_points=3000, seed=0)
    for k in same:
        assert math.isclose(moved[k], same[k], rel_tol=1e-9, abs_tol=1e-12), k
    # without normalisation the scaled copy is far away
    assert mesh_metrics(v * 3 + 7, f, v, f, n_points=500, normalise=False)["fscore@2%"] == 0.0
    rough = v + 0.02 * torch.randn(v.shape, generator=torch.Generator().manual_seed(0))
    worse = mesh_metrics(rough, f, v, f, n_points=3000, seed=0)
    assert worse["fscore@1%"] < same["fscore@1%"] and worse["cd_l1"] > same["cd_l1"]
    assert worse["normal_consistency"] < same["normal_consistency"]


def test_mesh_metrics_rejects_bad_meshes():
    v, f = icosphere(1)
    with pytest.raises(ValueError):
        mesh_metrics(v[:0], f[:0], v, f)
    with pytest.raises(ValueError):
        mesh_metrics(np.zeros((3, 3)), [[0, 1, 2]], v, f)  # zero extent
    with pytest.raises(ValueError):
        mesh_metrics(v, f, v, f, n_points=0)
    with pytest.raises(ValueError):
        mesh_metrics(v, f.float(), v, f)
