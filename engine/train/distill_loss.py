"""The 3D distillation loss as small pure functions.

Per training shoe i with teacher weight a_i (``schedules.item_alphas``: the epoch's alpha, 1 for a
photo-only shoe, 0 for a GT shoe without a usable teacher entry):

    loss = mean_i [ a_i CD(S_i, T_i) + (1 - a_i) CD(S_i, G_i) ]
           + lambda_edge * edge_length_loss(student verts)
           + lambda_smooth * laplacian_smoothing_loss(student verts)

S_i: points sampled (differentiably) on the student mesh; T_i: the cached teacher points; G_i: the
GT points. CD is ``engine.geometry.chamfer.chamfer_distance`` (bidirectional *sum* of the two
direction means, PyTorch3D convention) with ``norm`` 1 (Euclidean, units of length) or 2 (squared
Euclidean, squared units); all in the normalised frame (bbox centre 0, longest side 1). A term whose
target is missing has weight 0 and is not computed.
"""
from __future__ import annotations

import torch

from engine.geometry.chamfer import chamfer_distance
from engine.geometry.losses import edge_length_loss, laplacian_smoothing_loss

Tensor = torch.Tensor


def masked_chamfer(pred: Tensor, targets: Tensor, mask: Tensor, trees: list | None, norm: int) -> Tensor:
    """Per-item Chamfer (B,) between ``pred`` (B, N, 3) and ``targets`` (B, M, 3) where ``mask`` (B,) is
    True; 0 (and no computation) where it is False. ``trees``: prebuilt ``PointTree`` per item (or None
    to build them). Differentiable in ``pred``. All items masked out gives zeros (B,).
    """
    out = pred.new_zeros(pred.shape[0])  # (B,)
    rows = torch.nonzero(mask.to(torch.bool)).squeeze(1)  # (K,)
    if len(rows) == 0:
        return out
    sub_trees = None if trees is None else [trees[int(r)] for r in rows]
    vals = chamfer_distance(pred[rows], targets[rows].to(pred), norm=norm, batch_reduction=None,
                            y_trees=sub_trees)  # (K,) per-item means
    return out.index_copy(0, rows.to(pred.device), vals)


def mix_chamfer(cd_teacher: Tensor, cd_gt: Tensor, alphas: Tensor) -> Tensor:
    """``mean_i [a_i cd_teacher_i + (1 - a_i) cd_gt_i]`` over the batch; inputs (B,), output scalar.

    Where a weight is exactly 0 the matching term is ignored (so a missing, zero-filled term never
    contributes). An empty batch gives 0.
    """
    if cd_teacher.numel() == 0:
        return cd_teacher.sum()
    a = alphas.to(cd_teacher)
    t = torch.where(a > 0, a * cd_teacher, torch.zeros_like(cd_teacher))
    g = torch.where(a < 1, (1 - a) * cd_gt, torch.zeros_like(cd_gt))
    return (t + g).mean()


def total_loss(verts: Tensor, points: Tensor, batch: dict, alphas: Tensor, edges: Tensor, laplacian: Tensor,
               lambda_edge: float, lambda_smooth: float, norm: int) -> tuple[Tensor, dict]:
    """The distillation loss of one batch and its parts.

    verts (B, V, 3) student vertices; points (B, N, 3) points sampled on them; ``batch`` holds
    ``teacher_points`` / ``gt_points`` (B, M, 3), ``has_teacher`` / ``has_gt`` (B,) bool and
    ``teacher_trees`` / ``gt_trees`` (lists, or None); alphas (B,). Returns ``(loss, parts)`` where
    ``parts`` holds detached floats: ``cd`` (the mixed Chamfer), ``cd_teacher`` / ``cd_gt`` (means over
    the items that have that target; None when none has), ``edge``, ``smooth`` and ``alpha_batch`` (the
    mean item weight).
    """
    ct = masked_chamfer(points, batch["teacher_points"], batch["has_teacher"], batch.get("teacher_trees"), norm)
    cg = masked_chamfer(points, batch["gt_points"], batch["has_gt"], batch.get("gt_trees"), norm)
    cd = mix_chamfer(ct, cg, alphas)
    edge = edge_length_loss(verts, edges)
    smooth = laplacian_smoothing_loss(verts, laplacian)
    loss = cd + lambda_edge * edge + lambda_smooth * smooth

    def masked_mean(v: Tensor, m: Tensor):
        m = m.to(torch.bool).to(v.device)
        return float(v.detach()[m].mean()) if bool(m.any()) else None

    parts = {"cd": float(cd.detach()), "cd_teacher": masked_mean(ct, batch["has_teacher"]),
             "cd_gt": masked_mean(cg, batch["has_gt"]), "edge": float(edge.detach()),
             "smooth": float(smooth.detach()), "alpha_batch": float(alphas.float().mean())}
    return loss, parts
