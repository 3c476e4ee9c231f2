"""Pre-training the learned teacher on the procedural corpus: resumable, checkpointed, as a job.

    pretrain_teacher(ctx, config) -> {"weights", "val", "seconds", ...}

Config keys (``DEFAULTS``): ``corpus`` (a folder built by ``engine.data.corpus.build_corpus``), ``out``
(the weights file), ``shoes`` (train on the first N corpus shoes; None = all but the held-out ones),
``val_shoes`` (the corpus's last K shoes, never trained on), ``epochs``, ``batch_size`` (shoes per step),
``queries`` (occupancy queries per shoe per step, drawn from the stored ones), ``lr`` (Adam, cosine decay
to 5 % over the run), ``seed``, ``val_resolution`` (grid of the final mesh validation), ``model``
(``OccupancyConfig`` fields).

Queries per step (``queries`` per shoe): three quarters from the stored ones, half of those among the
queries the visual hull gets wrong (``hard_queries``, ``pick_queries``), and a quarter drawn afresh inside
the visual hull (``hull_queries``) — the targets come from the exact field, so any point can be asked. Loss per step: L1 between the output and the exact field's signed distance clamped to
``±TRUNCATION`` (the prediction is not clamped, so a wrong sign far out still pulls), mean over queries and shoes. The target is the procedural field at the
query (``sample_shoes.field_value``, negated so inside is positive) divided by the shoe's mm-per-unit scale:
distance-like in the normalised frame, and far richer than the inside / outside bit, so the surface is
found in fewer steps. Each epoch logs ``loss`` and the held-out shoes' ``val_iou`` / ``val_accuracy`` on all
their stored queries; ``checkpoints/last.pt`` (model + optimiser + epoch) is written atomically after every
epoch, so a killed run resumes with ``resume=True`` at the next epoch and ends with the same weights.
At the end the held-out shoes are meshed at ``val_resolution`` and compared with their GT meshes
(``validate_teacher``: CD-L1 / F@1 % in the normalised frame); the figures, per shoe, go into the
weights file's ``record`` so anyone can reproduce them.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from engine import storage
from engine.config import UserError
from engine.progress import JobCancelled

KIND = "teacher-pretrain"
DEFAULTS = {"corpus": None, "out": None, "shoes": None, "val_shoes": 16, "epochs": 16, "batch_size": 8,
            "queries": 2048, "lr": 1e-3, "seed": 0, "val_resolution": 64, "model": {}}
CKPT = "checkpoints/last.pt"
TRUNCATION = 0.05  # normalised units: the signed distance is clamped to +-this


def check_config(config: dict) -> dict:
    """Defaults filled in and types checked; ``UserError`` naming the bad key."""
    unknown = sorted(set(config) - set(DEFAULTS) - {"resume"})
    if unknown:
        raise UserError(f"unknown pretrain setting(s): {', '.join(unknown)}")
    cfg = {**DEFAULTS, **{k: v for k, v in config.items() if v is not None and k != "resume"}}
    if not cfg["corpus"] or not cfg["out"]:
        raise UserError("pretrain needs a corpus folder and an output weights file")
    for key, lo in (("epochs", 1), ("batch_size", 1), ("queries", 16), ("val_shoes", 1), ("val_resolution", 16)):
        if isinstance(cfg[key], bool) or not isinstance(cfg[key], int) or cfg[key] < lo:
            raise UserError(f"{key} must be an integer >= {lo} (got {cfg[key]!r})")
    if cfg["shoes"] is not None and (not isinstance(cfg["shoes"], int) or cfg["shoes"] < 1):
        raise UserError(f"shoes must be a positive integer (got {cfg['shoes']!r})")
    if not isinstance(cfg["lr"], (int, float)) or not 0 < cfg["lr"] < 1:
        raise UserError(f"lr must be in (0, 1) (got {cfg['lr']!r})")
    return cfg


def load_parts(paths: list[Path], log) -> dict:
    """Every corpus part concatenated: views, query, inside, surface (see ``engine.data.corpus``)."""
    parts = [storage.torch_load(p) for p in paths]
    keys = ("views", "query", "inside", "surface")
    for p, d in zip(paths, parts):
        if not isinstance(d, dict) or sorted(d) != sorted(keys):
            raise UserError(f"{p}: corrupt corpus part; delete it and rerun `teacher corpus`")
    data = {k: torch.cat([d[k] for d in parts]) for k in keys}
    log(f"corpus: {len(data['views'])} shoes loaded ({sum(p.stat().st_size for p in paths) / 1e6:.0f} MB)")
    return data


def sdf_targets(params: list, frames: list[dict], points: torch.Tensor) -> torch.Tensor:
    """(B, Q) truncated signed distances (> 0 inside, normalised units) of B shoes at (B, Q, 3) points."""
    from engine.data.sample_shoes import field_value

    out = []
    for p, fr, q in zip(params, frames, points):
        mm = q.double().numpy() * fr["scale"] + fr["centre"]
        out.append(torch.from_numpy(-field_value(p, mm) / fr["scale"]))
    return torch.stack(out).float().clamp_(-TRUNCATION, TRUNCATION)


def hard_queries(views_u8: torch.Tensor, query: torch.Tensor, inside: torch.Tensor, chunk: int = 16) -> torch.Tensor:
    """(N, Q) bool: queries the visual hull gets wrong — inside every given view's silhouette (bilinear
    alpha >= 0.5) yet outside the shoe: the collar's recess, the arch, the tops no view sees edge-on."""
    from engine.teachers.occupancy_net import N_VIEWS, sample, view_grids

    out = []
    for k in range(0, len(views_u8), chunk):
        v = views_u8[k:k + chunk, :, 3:4].float().div_(255.0)  # (b, 4, 1, S, S) alpha only
        b = len(v)
        alpha = sample([v.reshape(b * N_VIEWS, 1, *v.shape[-2:])], view_grids(query[k:k + chunk]))  # (b*4, Q, 1)
        hull = alpha.reshape(b, N_VIEWS, -1).amin(1)  # (b, Q)
        out.append((hull >= 0.5) & ~inside[k:k + chunk])
    return torch.cat(out)


def pick_queries(hard: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """(B, n) query indices per shoe: half drawn among its ``hard`` queries (when it has any), the rest
    uniformly, with replacement — the hull's mistakes are what the teacher must learn, and uniform
    sampling gives them a few per cent of the loss."""
    w_hard = hard.float() / hard.float().sum(1, keepdim=True).clamp_min(1)  # (B, Q)
    w = 0.5 * w_hard + 0.5 / hard.shape[1]
    w = torch.where(hard.any(1, keepdim=True), w, torch.ones_like(w))
    return torch.multinomial(w, n, replacement=True, generator=generator)


def hull_queries(views_u8: torch.Tensor, surface: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """(B, n, 3) fresh points uniform in each shoe's box (its surface points' bounds + 0.02) and inside
    its visual hull (rejection sampling from 3n candidates; short rows are topped up with outside ones).
    They reach the inside of the collar's recess, which surface-based samples barely touch."""
    from engine.teachers.occupancy_net import N_VIEWS, sample, view_grids

    b = len(views_u8)
    lo, hi = surface.amin(1, keepdim=True) - 0.02, surface.amax(1, keepdim=True) + 0.02  # (B, 1, 3)
    cand = lo + (hi - lo) * torch.rand(b, 3 * n, 3, generator=generator)  # (B, 3n, 3)
    alpha = views_u8[:, :, 3:4].float().div_(255.0).reshape(b * N_VIEWS, 1, *views_u8.shape[-2:])
    hull = sample([alpha], view_grids(cand)).reshape(b, N_VIEWS, -1).amin(1)  # (B, 3n)
    key = (hull >= 0.5).float() + torch.rand(hull.shape, generator=generator) * 0.5  # inside first, random order
    order = key.argsort(1, descending=True)[:, :n]
    return torch.gather(cand, 1, order.unsqueeze(-1).expand(-1, -1, 3))


def views_float(views_u8: torch.Tensor) -> torch.Tensor:
    return views_u8.float().div_(255.0)  # (B, 4, 4, S, S)


@torch.no_grad()
def query_scores(model, views: torch.Tensor, query: torch.Tensor, inside: torch.Tensor, chunk: int = 4) -> dict:
    """IoU and accuracy of the logits' sign against ``inside`` over all given shoes' queries."""
    inter = union = correct = total = 0
    for k in range(0, len(views), chunk):
        pred = model(views_float(views[k:k + chunk]), query[k:k + chunk]) > 0  # (b, Q)
        gt = inside[k:k + chunk]
        inter += int((pred & gt).sum())
        union += int((pred | gt).sum())
        correct += int((pred == gt).sum())
        total += gt.numel()
    return {"val_iou": inter / max(union, 1), "val_accuracy": correct / max(total, 1)}


def validate_teacher(model, views_u8: torch.Tensor, surfaces: torch.Tensor, resolution: int) -> list[dict]:
    """Per shoe: mesh the teacher's prediction at ``resolution`` and compare with the GT surface points
    (N, P, 3): ``{cd_l1, fscore@1%, seconds}`` in the normalised frame (the predicted mesh normalised by
    its bounding box, the GT points already are); a shoe the teacher cannot mesh gives ``cd_l1`` None."""
    from engine.geometry.metrics import point_metrics
    from engine.geometry.normalise import normalise_vertices
    from engine.teachers.base import TeacherFailed
    from engine.teachers.occupancy import predict_mesh
    from engine.geometry.mesh import sample_points

    rows = []
    for k in range(len(views_u8)):
        t0 = time.perf_counter()
        try:
            verts, faces, _f, _i = predict_mesh(model, views_float(views_u8[k:k + 1]), resolution)
        except TeacherFailed as exc:
            rows.append({"cd_l1": None, "fscore@1%": None, "error": str(exc)})
            continue
        v = normalise_vertices(torch.as_tensor(verts, dtype=torch.float64))[0]
        pts, _ = sample_points(v, torch.as_tensor(faces), surfaces.shape[1], generator=torch.Generator().manual_seed(0))
        m = point_metrics(pts, surfaces[k].double())  # the GT points are on the normalised GT mesh
        rows.append({"cd_l1": round(float(m["cd_l1"]), 6), "fscore@1%": round(float(m["fscore@1%"]), 6),
                     "seconds": round(time.perf_counter() - t0, 3)})
    return rows


def corpus_and_pretrain(ctx, config: dict) -> dict:
    """What the Teacher tab's "Pre-train" runs as one job: build (or finish) the corpus named by
    ``config['corpus']`` with ``corpus_count`` shoes (progress 0-20 %), then ``pretrain_teacher`` (20-100 %).
    The other keys are ``pretrain_teacher``'s."""
    from engine.data.corpus import build_corpus
    from engine.progress import Scaled

    cfg = dict(config)
    count, seed = int(cfg.pop("corpus_count", 1024)), int(cfg.pop("corpus_seed", 0))
    if not cfg.get("resume"):
        build_corpus(Scaled(ctx, 0.2), Path(cfg["corpus"]), count=count, seed=seed)
    return pretrain_teacher(Scaled(ctx, 0.8, 0.2), cfg)


def pretrain_teacher(ctx, config: dict) -> dict:
    """Train the occupancy teacher (see the module docstring); writes ``config['out']`` at the end."""
    from engine.data.corpus import corpus_frames, corpus_shoes, load_corpus
    from engine.teachers.occupancy import camera_signature
    from engine.teachers.occupancy_net import KIND as MODEL_KIND, OccupancyConfig, OccupancyNet, count_parameters

    resume = bool(config.get("resume"))
    cfg = check_config(config)
    run_dir = Path(ctx.run_dir) if getattr(ctx, "run_dir", None) else None
    settings, paths = load_corpus(Path(cfg["corpus"]))
    data = load_parts(paths, ctx.log)
    params = [p for _f, p in corpus_shoes(settings["families"], settings["count"], settings["seed"])]
    frames = corpus_frames(Path(cfg["corpus"]), settings, ctx.log)
    hard = hard_queries(data["views"], data["query"], data["inside"])  # (N, Q)
    ctx.log(f"queries the visual hull gets wrong: {100 * hard.float().mean():.1f} % (half of each step's draw)")
    n = len(data["views"])
    n_val = min(cfg["val_shoes"], n - 1)
    n_train = min(cfg["shoes"] or n - n_val, n - n_val)
    if n_train < 1:
        raise UserError(f"the corpus has {n} shoes: not enough for {n_val} held out and 1 to train on")
    val = slice(n - n_val, n)
    torch.manual_seed(cfg["seed"])
    model = OccupancyNet(OccupancyConfig.from_dict(cfg["model"]))
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    steps_per_epoch = math.ceil(n_train / cfg["batch_size"])
    total = cfg["epochs"] * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(s / total, 1))))
    first, seconds_before = 1, 0.0
    ckpt_path = run_dir / CKPT if run_dir else None
    if resume:
        if ckpt_path is None or not ckpt_path.is_file():
            raise UserError("nothing to resume: this run has no checkpoints/last.pt yet; start it again")
        ck = storage.torch_load(ckpt_path)
        model.load_state_dict(ck["state_dict"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        first, seconds_before = int(ck["epoch"]) + 1, float(ck.get("seconds", 0.0))
        ctx.log(f"resumed after epoch {ck['epoch']}")
    ctx.log(f"occupancy teacher: {count_parameters(model):,} parameters; {n_train} train shoes, {n_val} held out, "
            f"{steps_per_epoch} steps per epoch")
    t0 = time.perf_counter()
    for epoch in range(first, cfg["epochs"] + 1):
        gen = torch.Generator().manual_seed(cfg["seed"] * 100_003 + epoch)
        order = torch.randperm(n_train, generator=gen)
        model.train()
        losses = []
        for step in range(steps_per_epoch):
            if ctx.cancelled():
                ctx.log(f"cancelled in epoch {epoch}; checkpoints/last.pt holds epoch {epoch - 1}")
                raise JobCancelled("cancelled by the user")
            rows = order[step * cfg["batch_size"]:(step + 1) * cfg["batch_size"]]
            pick = pick_queries(hard[rows], cfg["queries"] - cfg["queries"] // 4, gen)  # (B, 3Q/4)
            q = torch.cat([torch.gather(data["query"][rows], 1, pick.unsqueeze(-1).expand(-1, -1, 3)),
                           hull_queries(data["views"][rows], data["surface"][rows], cfg["queries"] // 4, gen)], 1)
            y = sdf_targets([params[int(r)] for r in rows], [frames[int(r)] for r in rows], q)  # (B, Q)
            pred = model(views_float(data["views"][rows]), q)  # unclamped: a wrong sign far out still has a gradient
            loss = F.l1_loss(pred, y) / TRUNCATION  # in units of the truncation band
            if not torch.isfinite(loss):
                raise UserError(f"pre-training diverged (loss {float(loss)}) in epoch {epoch}; lower lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            done = (epoch - first) * steps_per_epoch + step + 1
            left = (time.perf_counter() - t0) / done * ((cfg["epochs"] - first + 1) * steps_per_epoch - done)
            ctx.progress(0.95 * ((epoch - 1) * steps_per_epoch + step + 1) / total,
                         f"epoch {epoch}/{cfg['epochs']} · step {step + 1}/{steps_per_epoch} · loss {loss:.4f} "
                         f"· ETA {left:.0f} s")
        model.eval()
        scores = query_scores(model, data["views"][val], data["query"][val], data["inside"][val])
        seconds = seconds_before + time.perf_counter() - t0
        record = {"scope": "epoch", "epoch": epoch, "loss": float(np.mean(losses)), **scores,
                  "lr": opt.param_groups[0]["lr"], "seconds": round(seconds, 1)}
        ctx.metric(record)
        ctx.log(f"epoch {epoch}: loss {record['loss']:.4f}, held-out IoU {scores['val_iou']:.4f}")
        if ckpt_path is not None:
            storage.torch_save(ckpt_path, {"state_dict": model.state_dict(), "optimizer": opt.state_dict(),
                                           "scheduler": sched.state_dict(), "epoch": epoch, "seconds": seconds})
    ctx.progress(0.96, f"meshing the {n_val} held-out shoes")
    rows = validate_teacher(model, data["views"][val], data["surface"][val], cfg["val_resolution"])
    cds = [r["cd_l1"] for r in rows if r["cd_l1"] is not None]
    val_cd = float(np.mean(cds)) if cds else None
    seconds = round(seconds_before + time.perf_counter() - t0, 1)
    record = {"corpus": settings, "train_shoes": n_train, "held_out": list(range(n - n_val, n)),
              "epochs": cfg["epochs"], "config": {k: v for k, v in cfg.items() if k not in ("corpus", "out")},
              "val_cd_l1": val_cd, "val_per_shoe": rows, "val_iou": scores["val_iou"],
              "val_resolution": cfg["val_resolution"], "seconds": seconds,
              "command": (f"python -m engine teacher corpus --out {cfg['corpus']} --count {settings['count']} "
                          f"--seed {settings['seed']} --families {','.join(settings['families'])} "
                          f"--image-size {settings['image_size']} --queries {settings['n_query']} && "
                          f"python -m engine teacher pretrain --corpus {cfg['corpus']} --out {cfg['out']} "
                          f"--epochs {cfg['epochs']} --shoes {n_train} --val-shoes {n_val} --queries {cfg['queries']} "
                          f"--batch-size {cfg['batch_size']} --lr {cfg['lr']} --seed {cfg['seed']}"
                          + (f" --config <{{\"model\": {json.dumps(cfg['model'])}}}>" if cfg["model"] else ""))}
    storage.torch_save(Path(cfg["out"]), {"kind": MODEL_KIND, "version": 1, "config": model.config.to_dict(),
                                          "camera": camera_signature(), "state_dict": model.state_dict(),
                                          "record": record})
    ctx.metric({"scope": "final", "val_cd_l1": val_cd, "val_iou": scores["val_iou"], "seconds": seconds})
    ctx.log(f"teacher weights -> {cfg['out']}: held-out CD-L1 {val_cd} at grid {cfg['val_resolution']}, "
            f"IoU {scores['val_iou']:.4f}, {seconds:.0f} s of training")
    ctx.progress(1.0, "done")
    return {"weights": str(cfg["out"]), "val_cd_l1": val_cd, "val_iou": scores["val_iou"], "seconds": seconds,
            "parameters": count_parameters(model)}
