"""3D distillation training: the mesh student learns from cached teacher points and GT points.

``train_student(ctx, config)`` validates the config (``engine.train.distill_config``), loads every shoe once
(``engine.train.shoe_data``), splits train / val by seed (val = GT shoes only), and runs Adam for
``epochs`` epochs on the loss of ``engine.train.distill_loss`` with alpha from
``engine.train.schedules``. Photo-only shoes train on the teacher alone (alpha = 1), GT shoes whose
teacher entry failed on GT alone (alpha = 0); a baseline run (``baseline: true``) trains the same
student on GT alone.

Per step ``ctx.metric`` gets ``{"scope": "step", epoch, step, global_step, loss, cd, cd_teacher, cd_gt,
edge, smooth, alpha, alpha_batch, lr, seconds}``; per epoch ``{"scope": "epoch", ..., seconds,
seconds_per_step, val_cd_l1, val_cd_l2, val_fscore@1%, val_fscore@2%, val_normal_consistency, best}``
(val: the student mesh normalised — bbox centre 0, longest side 1 — ``VAL_POINTS`` (10k) seeded points
vs the shoe's 10k GT points, ``engine.geometry.metrics.point_metrics``, whatever ``target_points``
training uses; the epoch's log line also gives the validation seconds). Checkpoints go to
``ctx.run_dir/checkpoints/``: ``last.pt`` every epoch, ``best.pt`` on a new best val CD-L1 (train loss
when there is no val split), ``epoch_NNNN.pt`` every ``checkpoint_every`` epochs; each holds ``{kind,
student_config, train_config, state_dict, optimizer, epoch, best_val, best_epoch, split}`` (plain data
only).

As a background job: ``JobRunner.submit(train_student, kind="train3d", config=cfg)`` (the ``config``
keyword is both the job's argument and the run's ``config.json``); resume a run with
``submit(train_student, kind="train3d", existing_run=run_dir, config={**cfg, "resume": True})``.

Determinism: the model is initialised from ``seed``; the shuffle of epoch e is
``DistributedSampler(seed).set_epoch(e)``; the points of step s come from a generator seeded by
(seed, epoch, step, rank). So a run resumed from ``last.pt`` (history truncated to its epoch)
continues with exactly the numbers of an uninterrupted run. Cancelling stops at the next step; the
previous ``last.pt`` stays valid. Under ``torchrun`` (WORLD_SIZE > 1) the student is wrapped in DDP
(gloo on CPU, nccl on CUDA) and only rank 0 writes.

Speed on CPU (``bench/bench_train3d.py``): per step the student's forward + backward and the Chamfer
terms (KD-trees: one per fixed target built once at load, one per student point set and target)
dominate; validation costs about a tenth of an epoch. ``threads`` (default 1) is set for the run: on
a shared 2-core machine a second OpenMP thread is often descheduled and every parallel op then waits
for it. Measured on the 101 sample shoes, 2 cores: 2 threads 3.8 s vs 1 thread 5.2 s per epoch at
load ~1.5 (defaults); 12-32 s vs 8-10 s per epoch (a heavier student, 10k samples) while other
processes kept the cores busy (load ~3.5).
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path

import torch

from engine import runs, storage
from engine.config import UserError
from engine.data.views import batch_views
from engine.devices import resolve_device
from engine.progress import NULL_CONTEXT, JobCancelled
from engine.progress import Silent
from engine.students.checkpoint import CKPT_DIR, load_checkpoint, save_checkpoint
from engine.students.mesh_student import MeshStudent, StudentConfig
from engine.train.distill_config import resume_mismatch, validate_config, with_saved_student
from engine.train.distill_loss import total_loss
from engine.train.feature_distill import FeatureHook, FeatureTargets, feature_loss, make_projector
from engine.train.photo_views import load_or_build, swap_views
from engine.train.schedules import alpha_at, item_alphas, resolve_schedule
from engine.train.shoe_data import ShoeSet, load_shoes, split_ids

VAL_SEED = 12345  # fixed: val points are the same in every epoch and every run
VAL_POINTS = 10_000  # student and GT points per val shoe, whatever ``target_points`` training uses


class TrainingDiverged(UserError):
    """Too many non-finite steps in a row (lower the learning rate)."""


# -- small helpers ----------------------------------------------------------------------------------
def step_seed(seed: int, epoch: int, step: int, rank: int) -> int:
    """Seed of the point sampling of one step: distinct per (seed, epoch, step, rank), < 2**63."""
    return (int(seed) * 1_000_003 + epoch * 100_003 + step * 1_009 + rank * 7) % (2**63)


def _init_distributed(device: torch.device) -> tuple[int, int, bool]:
    """(rank, world, initialised_here) from torchrun's environment; (0, 1, False) without it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, False
    import torch.distributed as dist

    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), True


def _all_reduce(values: list[float], world: int, op: str = "sum") -> list[float]:
    if world <= 1:
        return values
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return t.tolist()


def _batch(shoes: ShoeSet, rows: list[int], device, photo: tuple | None = None) -> dict:
    """One step's tensors; ``photo`` = ``(table, prob, generator)`` swaps in photo-style views
    (``engine.train.photo_views.swap_views``)."""
    idx = torch.as_tensor(rows, dtype=torch.long)
    cpu = device.type == "cpu"
    views = shoes.views[idx]  # (B, 4, 4, S, S) uint8
    if photo is not None:
        views = swap_views(views, [shoes.ids[r] for r in rows], *photo)
    return {"views": batch_views(views, device),
            "teacher_points": shoes.teacher_points[idx].to(device),
            "gt_points": shoes.gt_points[idx, :shoes.train_points].to(device),
            "has_teacher": shoes.has_teacher[idx], "has_gt": shoes.has_gt[idx],
            "teacher_trees": [shoes.teacher_trees[r] for r in rows] if cpu else None,
            "gt_trees": [shoes.gt_trees[r] for r in rows] if cpu else None}


def validate(model: MeshStudent, val: ShoeSet, batch_size: int, n_points: int, device, rank: int = 0,
             world: int = 1) -> dict:
    """Mean val metrics of ``model`` (split over ranks and summed): ``{val_cd_l1, val_cd_l2,
    val_fscore@1%, val_fscore@2%, val_normal_consistency}`` — the student mesh normalised (bbox centre
    0, longest side 1), ``n_points`` seeded surface points vs the shoe's GT points, via
    ``point_metrics``. ``{}`` without val shoes."""
    from engine.geometry.mesh import sample_points
    from engine.geometry.metrics import point_metrics
    from engine.geometry.normalise import normalise_vertices

    if len(val) == 0:
        return {}
    keys = ("cd_l1", "cd_l2", "fscore@1%", "fscore@2%", "normal_consistency")
    sums = [0.0] * len(keys)
    mine = list(range(rank, len(val), world))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for s in range(0, len(mine), batch_size):
            rows = mine[s:s + batch_size]
            verts = model(batch_views(val.views[torch.as_tensor(rows)], device)).cpu().double()  # (b, V, 3)
            for j, r in enumerate(rows):
                if not bool(torch.isfinite(verts[j]).all()):
                    raise TrainingDiverged(f"validation: the student predicts non-finite vertices for {val.ids[r]}")
                vn = normalise_vertices(verts[j])[0]
                gen = torch.Generator().manual_seed(VAL_SEED + r)
                pts, nrm = sample_points(vn, model.faces.cpu(), n_points, generator=gen)
                m = point_metrics(pts, val.gt_points[r], nrm, val.gt_normals[r])
                sums = [a + m[k] for a, k in zip(sums, keys)]
    model.train(was_training)
    sums = _all_reduce(sums, world)
    return {f"val_{k}": v / len(val) for k, v in zip(keys, sums)}


def _truncate_history(run_dir: Path, epoch: int) -> None:
    """Keep only the history records of epochs <= ``epoch`` (resume continues from there)."""
    import json

    kept = [r for r in runs.read_history(run_dir) if int(r.get("epoch", 0)) <= epoch]
    storage.write_text(Path(run_dir) / "history.jsonl", "".join(json.dumps(r, default=float) + "\n" for r in kept))


# -- training ---------------------------------------------------------------------------------------
def train_student(ctx, config: dict) -> dict:
    """Train the mesh student (see the module docstring); returns a summary dict:
    ``{run_dir, epochs, last_epoch, best_epoch, best_val, best_metric, train, val, counts, nan_skipped,
    seconds}``. ``UserError`` for a bad config, missing data or cache, or a non-resumable run."""
    ctx = ctx or NULL_CONTEXT
    if config.get("resume") and ctx.run_dir is not None:
        config = with_saved_student(config, Path(ctx.run_dir))
    cfg = validate_config(config)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(cfg["device"], local_rank)
    rank, world, owned = _init_distributed(device)
    threads = torch.get_num_threads()
    if device.type == "cpu" and cfg["threads"]:
        torch.set_num_threads(cfg["threads"])  # process-wide (torch has no per-thread setting); restored below
    try:
        return _train(ctx if rank == 0 else Silent(ctx), cfg, device, rank, world)  # ranks > 0 write nothing
    finally:
        torch.set_num_threads(threads)
        if owned:
            import torch.distributed as dist

            dist.destroy_process_group()


def _prepare(ctx, cfg: dict, rank: int) -> tuple[ShoeSet, ShoeSet, dict, dict]:
    """Load the shoes, split them and log the counts; returns (train, val, split, counts)."""
    sc = cfg["student"]
    log = ctx.log
    shoes, counts = load_shoes(ctx, Path(cfg["data"]), Path(cfg["cache"]) if cfg["cache"] else None,
                               sc["image_size"], cfg["target_points"], need_teacher=not cfg["baseline"],
                               val_points=VAL_POINTS if cfg["val_fraction"] > 0 else 0,
                               features=uses_features(cfg))
    train_ids, val_ids = split_ids(shoes, cfg["val_fraction"], cfg["seed"])
    train = shoes.subset(shoes.rows_of(train_ids))
    if cfg["baseline"]:
        log(f"baseline: training on GT alone (alpha = 0); {counts['photo_only_left_out']} photo-only shoe(s) left out")
    val = shoes.subset(shoes.rows_of(val_ids))
    t_only = int((train.has_teacher & ~train.has_gt).sum())
    g_only = int((~train.has_teacher & train.has_gt).sum())
    counts.update(train=len(train), val=len(val), train_teacher_only=t_only, train_gt_only=g_only)
    log(f"shoes: {counts['used']} used of {counts['total']} ({counts['skipped']} skipped); train {len(train)}, "
        f"val {len(val)} (GT shoes only)")
    if not cfg["baseline"]:
        log(f"train: {len(train) - t_only - g_only} with teacher + GT, {t_only} photo-only (teacher term alone, "
            f"alpha = 1), {g_only} GT-only without a usable teacher entry (GT term alone, alpha = 0; why is "
            "logged per shoe above)")
    return train, val, {"train": list(train.ids), "val": list(val.ids)}, counts


def uses_features(cfg: dict) -> bool:
    """Feature-level distillation is on: a distilled run (not the baseline) with ``lambda_feat > 0``."""
    return not cfg["baseline"] and cfg["lambda_feat"] > 0


def _feature_setup(student: MeshStudent, train: ShoeSet, cfg: dict, device):
    """``(FeatureTargets, projector)`` for feature-level distillation, or None when it is off. The student's
    hooked map size comes from one dry forward pass on a blank view (no gradient)."""
    if not uses_features(cfg):
        return None
    with torch.no_grad(), FeatureHook(student) as hook:
        s = cfg["student"]["image_size"]
        student(torch.zeros(1, 4, 4, s, s, device=device))
    targets = FeatureTargets(train.teacher_features, train.has_features, tuple(hook.output.shape[-2:]))
    return targets, make_projector(hook.output.shape[1], targets).to(device)


def _train(ctx, cfg: dict, device: torch.device, rank: int, world: int) -> dict:
    from torch.utils.data import DistributedSampler

    from engine.geometry.mesh import laplacian_matrix, sample_points, unique_edges

    t_start = time.perf_counter()
    writer = rank == 0 and ctx.run_dir is not None
    log, metric = ctx.log, ctx.metric
    ckpt_dir = Path(ctx.run_dir) / CKPT_DIR if ctx.run_dir is not None else None
    train, val, split, counts = _prepare(ctx, cfg, rank)
    photo_table = None
    if cfg["photo_views"] > 0:
        photo_table = load_or_build(ctx, Path(ctx.run_dir) if writer else None, Path(cfg["data"]), list(train.ids),
                                    cfg["student"]["image_size"], cfg["photo_views"], cfg["seed"])

    torch.manual_seed(cfg["seed"])
    student = MeshStudent(StudentConfig.from_dict(cfg["student"])).to(device)
    feat = _feature_setup(student, train, cfg, device)  # None, or (targets, projector)
    params = list(student.parameters()) + (list(feat[1].parameters()) if feat else [])
    optimizer = torch.optim.Adam(params, lr=cfg["lr"])
    first_epoch, best_val, best_epoch = 1, None, None
    if cfg["resume"]:
        if ckpt_dir is None:
            raise UserError("resume needs a run folder (ctx.run_dir)")
        ckpt = load_checkpoint(ckpt_dir / "last.pt")
        diff = resume_mismatch(ckpt["train_config"], cfg)
        if diff:
            raise UserError(f"cannot resume: the config differs from the checkpoint's in {', '.join(diff)}")
        student.load_state_dict(ckpt["state_dict"])
        if feat:
            feat[1].load_state_dict((ckpt.get("extra") or {})["projector"])
        optimizer.load_state_dict(ckpt["optimizer"])
        first_epoch, best_val, best_epoch = ckpt["epoch"] + 1, ckpt.get("best_val"), ckpt.get("best_epoch")
        if writer:
            _truncate_history(ctx.run_dir, ckpt["epoch"])
        log(f"resumed from last.pt at epoch {ckpt['epoch']} (best val {best_val})")
    elif ctx.run_dir is None:
        log("no run folder: checkpoints are not written")
    model = student
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(student, device_ids=[device.index] if device.type == "cuda" else None)

    faces = student.faces
    edges = unique_edges(faces.cpu()).to(device)  # (E, 2)
    lap = laplacian_matrix(faces.cpu(), len(student.template), device=device)  # (V, V) sparse
    a_start, a_end = (0.0, 0.0) if cfg["baseline"] else resolve_schedule(cfg["schedule"], cfg["alpha_start"], cfg["alpha_end"])
    sampler = DistributedSampler(range(len(train)), num_replicas=world, rank=rank, shuffle=True, seed=cfg["seed"])
    bs, epochs = cfg["batch_size"], cfg["epochs"]
    steps_per_epoch = math.ceil(len(sampler) / bs)
    total_steps = max(1, (epochs - first_epoch + 1) * steps_per_epoch)
    done, nan_streak, nan_skipped, last_epoch = 0, 0, 0, first_epoch - 1
    has_val = len(val) > 0
    student.train()
    for epoch in range(first_epoch, epochs + 1):
        t_epoch = time.perf_counter()
        alpha = alpha_at(epoch, epochs, a_start, a_end)
        sampler.set_epoch(epoch)
        order = list(sampler)
        sums, n_ok = {}, 0
        clock = PartClock()
        for step in range(1, steps_per_epoch + 1):
            t_step = time.perf_counter()
            clock.start()
            stop = 1.0 if ctx.cancelled() else 0.0
            if _all_reduce([stop], world, "max")[0] > 0:
                log(f"cancelled at epoch {epoch} step {step}; checkpoints/last.pt holds epoch {epoch - 1}")
                ctx.check_cancelled()
                raise JobCancelled("cancelled by the user")
            rows = order[(step - 1) * bs: step * bs]
            photo = None if photo_table is None else (photo_table, cfg["photo_prob"], torch.Generator().manual_seed(
                step_seed(cfg["seed"] + 1, epoch, step, rank)))
            b = _batch(train, rows, device, photo)
            alphas = item_alphas(alpha, b["has_teacher"], b["has_gt"]).to(device)  # (B,)
            clock.lap("data")
            with FeatureHook(model) as hook:
                verts = model(b["views"])  # (B, V, 3)
            clock.lap("forward")
            loss, parts = None, {}
            if bool(torch.isfinite(verts).all()):
                gen = torch.Generator(device=device).manual_seed(step_seed(cfg["seed"], epoch, step, rank))
                pts = sample_points(verts, faces, cfg["n_points"], generator=gen, return_normals=False)  # (B, N, 3)
                loss, parts = total_loss(verts, pts, b, alphas, edges, lap, cfg["lambda_edge"],
                                         cfg["lambda_smooth"], cfg["chamfer_norm"])
                if feat:
                    idx = torch.as_tensor(rows, dtype=torch.long)
                    lf = feature_loss(hook.output, feat[0].values[idx], feat[0].has[idx], feat[1], feat[0].kind)
                    loss = loss + cfg["lambda_feat"] * lf
                    parts["feat"] = float(lf.detach())
            clock.lap("loss")
            # every rank takes the same branch (a rank skipping backward alone would hang DDP)
            bad = _all_reduce([float(loss is None or not bool(torch.isfinite(loss)))], world, "max")[0] > 0
            if not bad:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                clock.lap("backward")
                bad = not all(bool(torch.isfinite(p.grad).all()) for p in student.parameters() if p.grad is not None)
                bad = _all_reduce([float(bad)], world, "max")[0] > 0
            if bad:
                nan_streak += 1
                nan_skipped += 1
                optimizer.zero_grad(set_to_none=True)
                log(f"epoch {epoch} step {step}: non-finite loss or gradients, step skipped "
                    f"({nan_streak} in a row)")
                metric({"scope": "step", "epoch": epoch, "step": step, "skipped": True, "alpha": alpha})
                if nan_streak >= cfg["max_nan_steps"]:
                    raise TrainingDiverged(f"training diverged: {nan_streak} non-finite steps in a row at epoch "
                                           f"{epoch}; lower lr (now {cfg['lr']:g})")
                continue
            optimizer.step()
            clock.lap("optimiser")
            nan_streak = 0
            n_ok += 1
            parts["loss"] = float(loss.detach())
            parts = _mean_parts(parts, world)
            for k, v in parts.items():
                if v is not None:
                    sums[k] = sums.get(k, 0.0) + v
            done += 1
            secs = time.perf_counter() - t_step
            metric({"scope": "step", "epoch": epoch, "step": step,
                    "global_step": (epoch - 1) * steps_per_epoch + step, **parts, "alpha": alpha,
                    "lr": optimizer.param_groups[0]["lr"], "seconds": secs})
            eta = (time.perf_counter() - t_start) / max(done, 1) * (total_steps - done)
            ctx.progress(0.02 + 0.98 * done / total_steps,
                         f"epoch {epoch}/{epochs} · step {step}/{steps_per_epoch} · ETA {runs.format_duration(eta)}")
        t_val = time.perf_counter()
        vals = validate(student, val, bs, VAL_POINTS, device, rank, world)
        t_val = time.perf_counter() - t_val
        clock.seconds["validation"] = t_val
        record = {k: v / max(n_ok, 1) for k, v in sums.items()}
        current = vals["val_cd_l1"] if has_val else record.get("loss", math.inf)
        is_best = best_val is None or current < best_val
        if is_best:
            best_val, best_epoch = float(current), epoch
        secs = time.perf_counter() - t_epoch
        metric({"scope": "epoch", "epoch": epoch, "step": steps_per_epoch, **record, **vals, "alpha": alpha,
                "lr": optimizer.param_groups[0]["lr"], "seconds": secs, "seconds_per_step": secs / steps_per_epoch,
                "best": is_best, "skipped_steps": steps_per_epoch - n_ok, **clock.record()})
        extra = {"projector": feat[1].state_dict()} if feat else None
        if writer:
            if is_best:
                save_checkpoint(ckpt_dir / "best.pt", student, optimizer, cfg, epoch, best_val, best_epoch, split,
                                extra)
            if cfg["checkpoint_every"] and epoch % cfg["checkpoint_every"] == 0:
                save_checkpoint(ckpt_dir / f"epoch_{epoch:04d}.pt", student, optimizer, cfg, epoch, best_val,
                                best_epoch, split, extra)
            save_checkpoint(ckpt_dir / "last.pt", student, optimizer, cfg, epoch, best_val, best_epoch, split, extra)
        shown = f"val CD-L1 {vals['val_cd_l1']:.5f}" if has_val else f"train loss {current:.5f}"
        log(f"epoch {epoch}/{epochs}: loss {record.get('loss', float('nan')):.5f}, {shown}, alpha {alpha:.3f}, "
            f"{secs:.1f} s (validation {t_val:.1f} s){' (best)' if is_best else ''}")
        last_epoch = epoch
    ctx.progress(1.0, f"done: best {'val CD-L1' if has_val else 'train loss'} {best_val} at epoch {best_epoch}")
    return {"run_dir": str(ctx.run_dir) if ctx.run_dir else None, "epochs": epochs, "last_epoch": last_epoch,
            "best_epoch": best_epoch, "best_val": best_val, "best_metric": "val_cd_l1" if has_val else "train_loss",
            "train": len(train), "val": len(val), "counts": counts, "nan_skipped": nan_skipped,
            "seconds": round(time.perf_counter() - t_start, 3), "baseline": cfg["baseline"]}


class PartClock:
    """Wall seconds spent in each part of a training epoch (data, forward, loss = sampling + Chamfer +
    regularisers, backward, optimiser; validation is set by the caller), summed over the epoch's steps.
    ``lap(part)`` charges the time since the previous lap (or the step's start) to ``part``."""

    PARTS = ("data", "forward", "loss", "backward", "optimiser", "validation")

    def __init__(self):
        self.seconds = dict.fromkeys(self.PARTS, 0.0)
        self._t = time.perf_counter()

    def start(self) -> None:
        self._t = time.perf_counter()

    def lap(self, part: str) -> None:
        now = time.perf_counter()
        self.seconds[part] += now - self._t
        self._t = now

    def record(self) -> dict:
        """``{"<part>_seconds": s}`` for the epoch record (keys ending in ``_seconds`` are never plotted)."""
        return {f"{k}_seconds": round(v, 4) for k, v in self.seconds.items()}


def _mean_parts(parts: dict, world: int) -> dict:
    """Average the step's loss parts over ranks (parts that are None on a rank are averaged over the
    ranks that have them)."""
    if world <= 1:
        return parts
    keys = sorted(parts)
    vals = [0.0 if parts[k] is None else parts[k] for k in keys] + [0.0 if parts[k] is None else 1.0 for k in keys]
    red = _all_reduce(vals, world)
    n = len(keys)
    return {k: (red[i] / red[n + i] if red[n + i] > 0 else None) for i, k in enumerate(keys)}
