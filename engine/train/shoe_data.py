"""Shoes in memory for 3D distillation: views, teacher points and ground-truth points, loaded once.

For every shoe of the dataset (``engine.data.layout``):

* ``views``: the four views resized to the student's ``image_size`` and kept as uint8
  (N, 4, 4, S, S) in ``camera.VIEW_NAMES`` order, channels RGBA; a missing view is all zeros
  (``engine.data.views``, the student's format). Converted to float in [0, 1] per batch there
  (``batch_views``).
* ``teacher``: the first ``target_points`` of the cache entry's 10k surface points and normals
  (i.i.d. area-uniform samples, so a prefix is a uniform subsample). Present only for a usable entry
  (``engine.cache.usable_entry``: ok, fingerprint still matching the images, file present); otherwise
  the shoe has no teacher (logged).
* ``gt``: ``max(target_points, val_points)`` area-uniform points + normals of the GT mesh, normalised
  (bbox centre at the origin, longest side 1), sampled once with a generator seeded from the shoe ID
  (``engine.cache.point_seed``) — the same points in every run. Training uses the first
  ``target_points`` of them (``ShoeSet.train_points``), validation all of them, so the val metric
  does not change with the training target count.

A KD-tree per fixed training target set (the ``train_points`` prefix) is built once (``PointTree``)
and reused every step.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from engine.config import UserError
from engine.data.views import load_views_tensor
from engine.geometry.chamfer import PointTree


@dataclass
class ShoeSet:
    """Tensors of N shoes (row i = ``ids[i]``); targets are zeros where the ``has_*`` flag is False."""

    ids: list[str]
    views: torch.Tensor  # (N, 4, 4, S, S) uint8
    teacher_points: torch.Tensor  # (N, M, 3) float32
    teacher_normals: torch.Tensor  # (N, M, 3) float32
    has_teacher: torch.Tensor  # (N,) bool
    gt_points: torch.Tensor  # (N, M_gt, 3) float32, M_gt >= train_points
    gt_normals: torch.Tensor  # (N, M_gt, 3) float32
    has_gt: torch.Tensor  # (N,) bool
    teacher_trees: list = field(default_factory=list)  # PointTree or None per shoe (all M points)
    gt_trees: list = field(default_factory=list)  # PointTree or None per shoe (the first train_points)
    train_points: int = 0  # training targets per shoe: teacher points M, the first M GT points
    teacher_features: torch.Tensor | None = None  # (N, *F) float16 cached teacher features, zeros where missing
    has_features: torch.Tensor | None = None  # (N,) bool

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, rows) -> "ShoeSet":
        rows = [int(r) for r in rows]
        idx = torch.as_tensor(rows, dtype=torch.long)
        return ShoeSet([self.ids[r] for r in rows], self.views[idx], self.teacher_points[idx],
                       self.teacher_normals[idx], self.has_teacher[idx], self.gt_points[idx], self.gt_normals[idx],
                       self.has_gt[idx], [self.teacher_trees[r] for r in rows], [self.gt_trees[r] for r in rows],
                       self.train_points, None if self.teacher_features is None else self.teacher_features[idx],
                       None if self.has_features is None else self.has_features[idx])

    def rows_of(self, ids) -> list[int]:
        pos = {sid: i for i, sid in enumerate(self.ids)}
        missing = [i for i in ids if i not in pos]
        if missing:
            raise UserError(f"shoe(s) not in the dataset: {', '.join(missing[:5])}")
        return [pos[i] for i in ids]


def gt_surface_points(obj_path: Path, shoe_id: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points and face normals on the normalised GT mesh of ``obj_path``, seeded by the shoe ID.

    Returns (n, 3) float32 each. ``UserError`` (from ``load_mesh``) for an unreadable mesh.
    """
    from engine.cache import point_seed
    from engine.data.layout import load_mesh
    from engine.geometry.mesh import sample_points
    from engine.geometry.normalise import normalise_vertices

    v, f = load_mesh(obj_path)
    v = normalise_vertices(torch.as_tensor(v, dtype=torch.float64))[0]
    gen = torch.Generator().manual_seed(point_seed(shoe_id))
    pts, nrm = sample_points(v, torch.as_tensor(f), int(n), generator=gen)  # (n, 3) each
    return pts.float(), nrm.float()


def _teacher_targets(cache_dir: Path | None, meta: dict | None, shoe, n: int, log) -> tuple | None:
    """(points, normals, features or None) of the shoe's usable cache entry (``cache.usable_entry``;
    points and normals (n, 3)), else None (with a log line why)."""
    from engine.cache import usable_entry

    if cache_dir is None:
        return None
    data, why = usable_entry(cache_dir, meta, shoe)
    if data is None:
        log(f"{shoe.id}: {why}")
        return None
    return data["points"][:n].contiguous(), data["normals"][:n].contiguous(), data.get("features")


def load_shoes(ctx, data_root: Path, cache_dir: Path | None, image_size: int, target_points: int,
               need_teacher: bool = True, val_points: int = 0, features: bool = False) -> tuple[ShoeSet, dict]:
    """Load every usable shoe of ``data_root`` into memory (see the module docstring).

    ``cache_dir`` None (or ``need_teacher`` False) loads no teacher points. A shoe is skipped (and
    logged) when it has no views, or has neither a usable teacher entry nor a readable GT mesh.
    Without teacher points (baseline) photo-only shoes are left out and counted, not logged one by one.
    ``val_points``: GT points kept per shoe for validation (at least ``target_points`` are kept).
    ``features``: also load the entries' teacher features (``ShoeSet.teacher_features``); ``UserError``
    when a usable entry has none (a cache of a teacher without features, such as the visual hull) —
    never a silent zero term.
    Returns ``(shoes, counts)`` with counts ``{total, used, both, teacher_only, gt_only, skipped,
    photo_only_left_out}``.
    ``UserError`` when the dataset or the cache is missing, the cache was built from another dataset
    (``engine.cache.check_dataset``), or no shoe is usable.
    """
    from engine.cache import check_dataset, read_metadata
    from engine.data.layout import list_shoes

    shoes = list_shoes(Path(data_root))
    meta = None
    if cache_dir is not None and need_teacher:
        meta = read_metadata(Path(cache_dir))
        if meta is None:
            raise UserError(f"{cache_dir}: no teacher cache here (metadata.json not found); build it first")
        check_dataset(Path(cache_dir), meta, shoes, Path(data_root))  # another dataset's cache is an error
    else:
        cache_dir = None
    gt_points = max(int(target_points), int(val_points))
    rows: list[tuple] = []
    counts = {"total": len(shoes), "skipped": 0, "photo_only_left_out": 0}
    for i, shoe in enumerate(shoes):
        ctx.check_cancelled()
        if not shoe.view_paths:
            ctx.log(f"{shoe.id}: skipped (no input images)")
            counts["skipped"] += 1
            continue
        teacher = _teacher_targets(cache_dir, meta, shoe, target_points, ctx.log)
        gt = None
        if shoe.has_gt:
            try:
                gt = gt_surface_points(shoe.obj_path, shoe.id, gt_points)
            except UserError as exc:
                ctx.log(f"{shoe.id}: GT mesh unusable, treated as photo-only ({exc})")
        if teacher is None and gt is None:
            if not need_teacher and not shoe.has_gt:
                counts["photo_only_left_out"] += 1  # expected in a GT-only (baseline) run, not a problem
                continue
            ctx.log(f"{shoe.id}: skipped (no usable teacher entry and no GT mesh)")
            counts["skipped"] += 1
            continue
        rows.append((shoe.id, load_views_tensor(shoe, image_size), teacher, gt))
        ctx.progress(0.02 * (i + 1) / len(shoes), f"loading shoes {i + 1}/{len(shoes)}")
    if not rows:
        raise UserError(f"{data_root}: no usable shoes (each needs views plus a teacher entry or a GT mesh)")
    zeros, gzeros = torch.zeros(target_points, 3), torch.zeros(gt_points, 3)
    tp = torch.stack([r[2][0] if r[2] else zeros for r in rows])
    tn = torch.stack([r[2][1] if r[2] else zeros for r in rows])
    gp = torch.stack([r[3][0] if r[3] else gzeros for r in rows])
    gn = torch.stack([r[3][1] if r[3] else gzeros for r in rows])
    has_t = torch.tensor([r[2] is not None for r in rows])
    has_g = torch.tensor([r[3] is not None for r in rows])
    feats = has_f = None
    if features and meta is not None:
        with_t = [r for r in rows if r[2] is not None]
        lacking = [r[0] for r in with_t if r[2][2] is None]
        if lacking or not with_t:
            raise UserError(f"{cache_dir}: {len(lacking)} of {len(with_t)} usable teacher entries have no features "
                            f"(e.g. {', '.join(lacking[:3]) or 'none usable'}; teacher {meta.get('teacher')}); "
                            "build the cache with a teacher that has them (--teacher occupancy) or set lambda_feat 0")
        shapes = {tuple(r[2][2].shape) for r in with_t}
        if len(shapes) > 1:
            raise UserError(f"{cache_dir}: teacher features of different shapes {sorted(shapes)}; rebuild the cache")
        fzero = torch.zeros(shapes.pop(), dtype=torch.float16)
        feats = torch.stack([r[2][2] if r[2] is not None else fzero for r in rows])  # (N, *F)
        has_f = has_t.clone()
    out = ShoeSet([r[0] for r in rows], torch.stack([r[1] for r in rows]), tp, tn, has_t, gp, gn, has_g,
                  [PointTree(tp[i]) if has_t[i] else None for i in range(len(rows))],
                  [PointTree(gp[i, :target_points]) if has_g[i] else None for i in range(len(rows))], target_points,
                  feats, has_f)
    counts.update(used=len(rows), both=int((has_t & has_g).sum()), teacher_only=int((has_t & ~has_g).sum()),
                  gt_only=int((~has_t & has_g).sum()))
    return out, counts


def split_ids(shoes: ShoeSet, val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(train ids, val ids). Validation shoes are drawn from the shoes with GT only: a seeded
    permutation of their sorted IDs, ``round(val_fraction * n_gt)`` of them (at least 1 when
    ``val_fraction > 0`` and there are 2+ GT shoes). The split depends only on the GT shoes, the
    fraction and the seed, so a baseline run and a distilled run of the same data share it.
    Every other shoe (photo-only included) trains. ``UserError`` when nothing is left to train on.
    """
    gt_ids = sorted(sid for sid, g in zip(shoes.ids, shoes.has_gt.tolist()) if g)
    n_val = int(round(val_fraction * len(gt_ids)))
    if val_fraction > 0 and len(gt_ids) >= 2:
        n_val = max(1, n_val)
    n_val = min(n_val, max(len(gt_ids) - 1, 0)) if len(shoes) == len(gt_ids) else n_val
    perm = torch.randperm(len(gt_ids), generator=torch.Generator().manual_seed(int(seed))).tolist()
    val = sorted(gt_ids[i] for i in perm[:n_val])
    val_set = set(val)
    train = [sid for sid in shoes.ids if sid not in val_set]
    if not train:
        raise UserError("no shoes left to train on after the validation split; lower val_fraction")
    return train, val
