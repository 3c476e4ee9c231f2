"""Evaluation metrics between a predicted and a ground-truth shape (no gradients).

Normalisation convention (the same for every table the studio shows): every compared mesh is first
centred on its axis-aligned bounding-box centre and scaled so that the longest bbox side is 1
(``engine.geometry.normalise.normalise_vertices``; ``mesh_metrics`` does this, ``point_metrics``
assumes its inputs are already in those units). F-score thresholds tau = 1 % and 2 % of that side,
i.e. 0.01 and 0.02 units.

Definitions, with d(p, Q) = min_q |p - q| (Euclidean) and pred P, ground truth G:

    cd_l1  = 1/2 (mean_{p in P} d(p, G)   + mean_{g in G} d(g, P))       units of length
    cd_l2  = 1/2 (mean_{p in P} d(p, G)^2 + mean_{g in G} d(g, P)^2)     squared units
    precision(tau) = fraction of p in P with d(p, G) < tau,   recall(tau) likewise for G -> P
    fscore@tau     = 2 precision recall / (precision + recall)   (0 when both are 0)
    normal_consistency = 1/2 (mean_p |cos(n_p, n_NN_G(p))| + mean_g |cos(n_g, n_NN_P(g))|)

Relation to ``engine.geometry.chamfer.chamfer_distance`` (a training loss, PyTorch3D convention of
*summing* the two direction means): cd_l2 = chamfer_distance(norm=2) / 2 and
cd_l1 = chamfer_distance(norm=1) / 2 for the same point sets. Nearest neighbours come from the same
exact KD-tree search, in float64.
"""
from __future__ import annotations

import numpy as np
import torch

from engine.geometry.chamfer import gather_distances, nearest_neighbours
from engine.geometry.mesh import sample_points
from engine.geometry.normalise import normalise_vertices

DEFAULT_TAUS = (0.01, 0.02)
# how every evaluation table samples and normalises (evaluation, compare, export all quote these)
EVAL_POINTS = 10_000
EVAL_SEED = 0
NORMALISATION = ("each mesh centred on its bounding-box centre and scaled to longest side 1; CD-L1 in those "
                 "units, CD-L2 squared; F-score thresholds 1 % and 2 % of the longest side; "
                 f"{EVAL_POINTS} surface points per mesh, seed {EVAL_SEED}")


def _points64(a, name: str, width: int = 3) -> torch.Tensor:
    """Any (N, 3) array-like -> float64 CPU tensor, validated."""
    t = a.detach().to("cpu", torch.float64) if isinstance(a, torch.Tensor) \
        else torch.as_tensor(np.asarray(a, dtype=np.float64))
    if t.dim() != 2 or t.shape[1] != width:
        raise ValueError(f"{name} must have shape (N, {width}), got {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    return t


def tau_key(tau: float) -> str:
    """Metric name for an F-score threshold given as a fraction of the longest side: 0.01 -> 'fscore@1%'."""
    return f"fscore@{100 * float(tau):g}%"


def fscore(precision: float, recall: float) -> float:
    """Harmonic mean 2 P R / (P + R) of two fractions in [0, 1]; 0 when P + R = 0."""
    return 0.0 if precision + recall <= 0 else 2.0 * precision * recall / (precision + recall)


def _abs_cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|cos| between rows of a (N, 3) and b (N, 3); 0 where either vector is zero."""
    na, nb = a.norm(dim=1), b.norm(dim=1)  # (N,), (N,)
    return (a * b).sum(1).abs() / (na * nb).clamp_min(torch.finfo(a.dtype).tiny)


def point_metrics(pred_pts, gt_pts, pred_normals=None, gt_normals=None,
                  taus=DEFAULT_TAUS) -> dict:
    """Chamfer (L1, L2), F-scores and normal consistency between two point sets (see module doc).

    pred_pts (N, 3), gt_pts (M, 3), optional normals of the same shapes (need not be unit length);
    NumPy arrays or torch tensors, in normalised units. Returns plain floats:
    ``{"cd_l1", "cd_l2", "fscore@1%", "fscore@2%", "normal_consistency"}`` (one F-score key per tau,
    named by ``tau_key``); ``normal_consistency`` is None unless both normal sets are given.
    Raises ``ValueError`` for an empty point set (the metrics are undefined), mismatched shapes,
    non-finite values or a non-positive tau.
    """
    p, g = _points64(pred_pts, "pred_pts"), _points64(gt_pts, "gt_pts")
    if len(p) == 0 or len(g) == 0:
        raise ValueError(f"cannot compare empty point sets ({len(p)} predicted, {len(g)} ground-truth points)")
    taus = tuple(float(t) for t in taus)
    if any(not t > 0 for t in taus):
        raise ValueError(f"F-score thresholds must be positive, got {taus}")
    i_pg = nearest_neighbours(p, g)  # (N,)
    i_gp = nearest_neighbours(g, p)  # (M,)
    d_pg = gather_distances(p[None], g[None], i_pg[None], norm=1)[0]  # (N,)
    d_gp = gather_distances(g[None], p[None], i_gp[None], norm=1)[0]  # (M,)
    out = {
        "cd_l1": 0.5 * (d_pg.mean().item() + d_gp.mean().item()),
        "cd_l2": 0.5 * (d_pg.pow(2).mean().item() + d_gp.pow(2).mean().item()),
    }
    for t in taus:
        out[tau_key(t)] = fscore((d_pg < t).double().mean().item(), (d_gp < t).double().mean().item())
    out["normal_consistency"] = None
    if pred_normals is not None and gt_normals is not None:
        pn, gn = _points64(pred_normals, "pred_normals"), _points64(gt_normals, "gt_normals")
        if pn.shape != p.shape or gn.shape != g.shape:
            raise ValueError("normals must have the same shape as their points")
        out["normal_consistency"] = 0.5 * (_abs_cos(pn, gn[i_pg]).mean().item()
                                           + _abs_cos(gn, pn[i_gp]).mean().item())
    return out


def _mesh64(verts, faces, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    v = _points64(verts, f"{name} vertices")
    f = faces.detach().cpu() if isinstance(faces, torch.Tensor) else torch.as_tensor(np.asarray(faces))
    if f.dim() != 2 or f.shape[1] != 3 or f.dtype.is_floating_point:
        raise ValueError(f"{name} faces must be an integer (F, 3) array, got shape {tuple(f.shape)}")
    if len(v) == 0 or len(f) == 0:
        raise ValueError(f"{name} mesh is empty ({len(v)} vertices, {len(f)} faces)")
    return v, f.long()


def mesh_metrics(pred_verts, pred_faces, gt_verts, gt_faces, n_points: int = 10000, seed: int = 0,
                 normalise: bool = True, taus=DEFAULT_TAUS) -> dict:
    """``point_metrics`` between two meshes, each normalised and sampled with its normals.

    Each mesh is normalised on its own (bbox centre to the origin, longest side 1) unless
    ``normalise`` is False (then the inputs must already be in those units), then ``n_points``
    area-weighted surface points with face normals are drawn from each (``sample_points``, float64,
    one ``torch.Generator`` seeded with ``seed``: the same inputs and seed give the same numbers).
    Inputs: vertices (V, 3) and faces (F, 3), NumPy or torch. Returns plain floats (see
    ``point_metrics``). Raises ``ValueError`` for an empty or degenerate mesh.
    """
    if isinstance(n_points, bool) or not isinstance(n_points, (int, np.integer)) or n_points < 1:
        raise ValueError(f"n_points must be a positive integer, got {n_points!r}")
    pv, pf = _mesh64(pred_verts, pred_faces, "predicted")
    gv, gf = _mesh64(gt_verts, gt_faces, "ground-truth")
    if normalise:
        pv, gv = normalise_vertices(pv)[0], normalise_vertices(gv)[0]
    gen = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        pp, pn = sample_points(pv, pf, int(n_points), generator=gen)  # (n, 3) each
        gp, gn = sample_points(gv, gf, int(n_points), generator=gen)  # (n, 3) each
    return point_metrics(pp, gp, pn, gn, taus=taus)
