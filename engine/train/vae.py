"""TinyVAE distillation (seed 003): config, the three phases, checkpoints, history, resume and cancel.

Phases (``run_vae_distillation``):
1. ``teacher``  — TeacherVAE pre-training on ``recon_weight·recon + kl_weight·kl`` for ``teacher_epochs``
   (skipped when ``teacher_checkpoint`` is given); writes ``teacher.pth``.
2. ``distill``  — MinimalVAE + LatentProjector on all five terms (``engine.train.vae_losses``) for
   ``epochs``. The teacher is frozen and its inputs are not augmented, so its latent means and
   reconstructions (eval mode, ``decode(mu)``) are computed once per run and reused every epoch.
3. ``finetune`` — the student alone on ``recon_weight·recon + kl_weight·kl`` for ``finetune_epochs`` at
   ``learning_rate·finetune_lr_scale``.

Data: the first ``limit`` images of the train split; the ``val_images`` after them are the validation
slice (best-checkpoint selection); the test split is only read by the report. Checkpoints in the output
folder (``checkpoint_dir``, else the job's run folder, else ``./checkpoints/tinyvae``):
``tinyvae_last.pth`` after every epoch (with optimiser state: what ``resume`` continues from),
``tinyvae_<phase>_epoch_NNN.pth`` every ``checkpoint_every`` epochs, ``tinyvae_best.pth`` = lowest student
validation ``recon_weight·recon + kl_weight·kl`` (eval mode; comparable across distill and finetune).
Each holds ``student_state_dict``, ``teacher_state_dict``, ``projector_state_dict`` and ``config``.
``recon_grid.png`` (rows: input / teacher / student) is rewritten after every epoch. History: one
record per batch (``kind: batch``, ``phase``, ``epoch``, ``step``, every term) and per epoch
(``kind: epoch``, train and val means).
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch

from engine import runs, storage
from engine.config import UserError
from engine.data import image_datasets as data
from engine.evaluate import vae_report
from engine.jobs import NULL_CONTEXT
from engine.students.vae import LatentProjector, MinimalVAE, TeacherVAE
from engine.train import vae_losses as L

SEED_DEFAULTS: dict[str, Any] = {  # exactly the keys of the seed's config JSON
    "dataset": "fashion-mnist", "batch_size": 64, "epochs": 3, "learning_rate": 1e-3,
    "teacher_latent_dim": 512, "student_latent_dim": 128, "recon_weight": 0.3, "kl_weight": 0.1,
    "distill_latent_weight": 0.3, "distill_recon_weight": 0.2, "perceptual_weight": 0.1,
    "temperature": 3.0, "checkpoint_dir": None,
}
EXTRA_DEFAULTS: dict[str, Any] = {  # what this implementation adds
    "teacher_epochs": 3, "finetune_epochs": 1, "finetune_lr_scale": 0.1, "seed": 0, "device": "cpu",
    "limit": 6000, "val_images": 500, "eval_limit": None, "teacher_checkpoint": None, "vgg_weights": None,
    "cifar10_root": None, "student_base_channels": 32, "checkpoint_every": 5, "resume": False, "report": True,
}
DEFAULTS = {**SEED_DEFAULTS, **EXTRA_DEFAULTS}
_POS_INT = ("batch_size", "teacher_latent_dim", "student_latent_dim", "student_base_channels", "checkpoint_every")
_NONNEG_INT = ("epochs", "teacher_epochs", "finetune_epochs", "seed")
_OPT_POS_INT = ("limit", "val_images", "eval_limit")
_NONNEG_FLOAT = ("recon_weight", "kl_weight", "distill_latent_weight", "distill_recon_weight", "perceptual_weight")
_POS_FLOAT = ("learning_rate", "temperature", "finetune_lr_scale")
_OPT_STR = ("checkpoint_dir", "teacher_checkpoint", "vgg_weights", "cifar10_root")
PHASES = ("teacher", "distill", "finetune")
N_ELEMENTS = 3 * 32 * 32
GRID_IMAGES = 8


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    """``DEFAULTS`` updated with ``config``; an unknown key or a bad value raises ``UserError`` naming it."""
    if not isinstance(config, dict):
        raise UserError("config: expected a JSON object")
    unknown = sorted(set(config) - set(DEFAULTS) - {"kind"})
    if unknown:
        raise UserError(f"unknown config key {unknown[0]!r} (known: {', '.join(sorted(DEFAULTS))})")
    cfg = {**DEFAULTS, **{k: v for k, v in config.items() if k != "kind"}}

    def bad(key: str, want: str) -> UserError:
        return UserError(f"config {key}={cfg[key]!r}: expected {want}")

    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    for k in _POS_INT:
        if not is_int(cfg[k]) or cfg[k] < 1:
            raise bad(k, "a positive integer")
    for k in _NONNEG_INT:
        if not is_int(cfg[k]) or cfg[k] < 0:
            raise bad(k, "an integer ≥ 0")
    for k in _OPT_POS_INT:
        if cfg[k] is not None and (not is_int(cfg[k]) or cfg[k] < 1):
            raise bad(k, "a positive integer or null")
    for k in _NONNEG_FLOAT + _POS_FLOAT:
        v = cfg[k]
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0 or (
                k in _POS_FLOAT and v == 0):
            raise bad(k, "a number > 0" if k in _POS_FLOAT else "a number ≥ 0")
        cfg[k] = float(v)
    for k in _OPT_STR:
        if cfg[k] is not None and (not isinstance(cfg[k], str) or not cfg[k].strip()):
            raise bad(k, "a path string or null")
    for k in ("resume", "report"):
        if not isinstance(cfg[k], bool):
            raise bad(k, "true or false")
    ds = cfg["dataset"]
    if not isinstance(ds, str) or not (ds in ("fashion-mnist", "cifar10") or ds.startswith(("cifar10:", "folder:"))):
        raise bad("dataset", data.describe_datasets())
    dev = cfg["device"]
    if not isinstance(dev, str) or not (dev == "cpu" or dev == "cuda" or dev.startswith("cuda:")):
        raise bad("device", "cpu, cuda or cuda:N")
    if dev != "cpu" and not torch.cuda.is_available():
        raise UserError(f"config device={dev!r}: CUDA is not available on this machine (use cpu)")
    if cfg["epochs"] + cfg["finetune_epochs"] == 0:
        raise UserError("config epochs and finetune_epochs are both 0: nothing would train the student")
    if cfg["teacher_epochs"] == 0 and cfg["teacher_checkpoint"] is None:
        raise UserError("config teacher_epochs=0 needs teacher_checkpoint (a trained teacher)")
    return cfg


def output_dir(ctx, cfg: dict[str, Any]) -> Path:
    """``checkpoint_dir``, else the job's run folder, else ``./checkpoints/tinyvae``."""
    if cfg["checkpoint_dir"]:
        return Path(cfg["checkpoint_dir"]).expanduser().resolve()
    return Path(ctx.run_dir) if getattr(ctx, "run_dir", None) else Path("checkpoints/tinyvae").resolve()


def build_models(cfg: dict[str, Any]) -> tuple[TeacherVAE, MinimalVAE, LatentProjector]:
    """Teacher, student and projector for ``cfg`` (initialised from ``cfg['seed']``)."""
    torch.manual_seed(cfg.get("seed", 0))
    teacher = TeacherVAE(cfg["teacher_latent_dim"])
    student = MinimalVAE(cfg["student_latent_dim"], cfg.get("student_base_channels", 32))
    return teacher, student, LatentProjector(student.latent_shape, cfg["teacher_latent_dim"])


def _load_into(module: torch.nn.Module, state: Any, what: str, path: Path) -> None:
    if not isinstance(state, dict):
        raise UserError(f"{path.name}: no {what} in this checkpoint (not a TinyVAE distillation checkpoint)")
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise UserError(f"{path.name}: {what} does not fit {type(module).__name__} with this config "
                        f"({str(exc).splitlines()[0][:160]})") from None


def load_checkpoint(path: Path) -> tuple[dict[str, Any], TeacherVAE, MinimalVAE, LatentProjector]:
    """(config, teacher, student, projector) from a ``tinyvae_*.pth`` checkpoint; ``UserError`` if it is
    not one (or holds models of other sizes than its config says)."""
    path = Path(path)
    ckpt = storage.torch_load(path)
    cfg = ckpt.get("config") if isinstance(ckpt, dict) else None
    if not isinstance(cfg, dict) or "student_state_dict" not in ckpt:
        raise UserError(f"{path.name}: not a TinyVAE distillation checkpoint (no student_state_dict/config)")
    cfg = validate_config({k: v for k, v in cfg.items() if k in DEFAULTS})
    teacher, student, projector = build_models(cfg)
    for module, key in ((teacher, "teacher_state_dict"), (student, "student_state_dict"),
                        (projector, "projector_state_dict")):
        _load_into(module, ckpt.get(key), key, path)
    return cfg, teacher.eval(), student.eval(), projector.eval()


class _Recorder:
    """ctx.metric, plus ``history.jsonl`` in the output folder when not running as a job."""

    def __init__(self, ctx, out_dir: Path):
        self.ctx, self.file_dir = ctx, (None if getattr(ctx, "run_dir", None) else out_dir)

    def __call__(self, record: dict[str, Any]) -> None:
        self.ctx.metric(record)
        if self.file_dir is not None:
            runs.append_history(self.file_dir, {"time": round(time.time(), 3), **record})


def _batches(n: int, batch_size: int, order: torch.Tensor | None = None):
    idx = order if order is not None else torch.arange(n)
    for i in range(0, n, batch_size):
        yield idx[i:i + batch_size]


@torch.no_grad()
def teacher_targets(teacher: TeacherVAE, images: torch.Tensor, device: torch.device, batch_size: int = 256):
    """The frozen teacher's latent means (N, D) and reconstructions (N, 3, 32, 32), eval mode, on CPU."""
    teacher.eval()
    mus, recons = [], []
    for idx in _batches(len(images), batch_size):
        mu = teacher.encode(images[idx].to(device))
        mus.append(mu.cpu())
        recons.append(teacher.decode(mu).cpu())
    return torch.cat(mus), torch.cat(recons)


def compute_terms(phase: str, models: dict, x: torch.Tensor, t_mu: torch.Tensor | None, t_recon: torch.Tensor | None,
                  vgg, cfg: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The loss terms of one batch for ``phase`` (teacher / distill / finetune), weighted total in ``loss``."""
    if phase == "teacher":
        recon, mu, logvar = models["teacher"](x)
    else:
        recon, mu, logvar = models["student"](x)
    terms = {"recon": L.reconstruction_loss(recon, x), "kl": L.kl_divergence(mu, logvar, N_ELEMENTS)}
    weights = {"recon": cfg["recon_weight"], "kl": cfg["kl_weight"]}
    if phase == "distill":
        terms["latent"] = L.latent_distillation_loss(models["projector"](mu), t_mu, cfg["temperature"])
        terms["output"] = L.output_distillation_loss(recon, t_recon)
        weights.update(latent=cfg["distill_latent_weight"], output=cfg["distill_recon_weight"])
        if vgg is not None:
            terms["perceptual"] = L.perceptual_loss(vgg, recon, x)
            weights["perceptual"] = cfg["perceptual_weight"]
    terms["loss"] = L.weighted_total(terms, weights)
    return terms


def _checkpoint(models: dict, cfg: dict, **extra: Any) -> dict[str, Any]:
    return {"student_state_dict": models["student"].state_dict(), "teacher_state_dict": models["teacher"].state_dict(),
            "projector_state_dict": models["projector"].state_dict(), "config": dict(cfg), **extra}


def run_vae_distillation(ctx, config: dict[str, Any] | None = None, **options: Any) -> dict[str, Any]:
    """Run teacher pre-training, distillation and fine-tuning as configured; returns a summary dict
    (output folder, best/last checkpoint paths, final validation numbers, report).

    ``config`` and keyword ``options`` are merged (options win), so that it runs as a job with
    ``JobRunner.submit(run_vae_distillation, kind="vae", config=cfg, **cfg)`` (submit's own ``config``
    argument only fills the run's config.json) as well as ``run_vae_distillation(NULL_CONTEXT, cfg)``.
    """
    ctx = ctx or NULL_CONTEXT
    t_start = time.time()
    cfg = validate_config({**(config or {}), **options})
    out = output_dir(ctx, cfg)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(cfg["device"])
    record = _Recorder(ctx, out)
    teacher, student, projector = build_models(cfg)
    models = {"teacher": teacher.to(device), "student": student.to(device), "projector": projector.to(device)}
    vgg = None
    if cfg["perceptual_weight"] > 0:
        from engine.students.vgg import load_vgg16
        vgg = load_vgg16(cfg["vgg_weights"]).to(device)

    pool = data.load_images(cfg["dataset"], "train",
                            limit=cfg["limit"] + cfg["val_images"] if cfg["limit"] else None,
                            cifar10_root=cfg["cifar10_root"])
    train_x, val_x = data.split_train_val(pool, cfg["val_images"])
    train_x = train_x[:cfg["limit"]]
    ctx.log(f"data: {len(train_x)} training, {len(val_x)} validation images from {cfg['dataset']}; output {out}")

    plan = {"teacher": cfg["teacher_epochs"], "distill": cfg["epochs"], "finetune": cfg["finetune_epochs"]}
    if cfg["teacher_checkpoint"]:
        path = Path(cfg["teacher_checkpoint"]).expanduser()
        ckpt = storage.torch_load(path)
        _load_into(teacher, ckpt.get("teacher_state_dict") if isinstance(ckpt, dict) else None,
                   "teacher_state_dict", path)
        plan["teacher"] = 0
    state = {"phase": 0, "epoch": 0, "best": float("inf"), "optimizer": None}
    last_path = out / "tinyvae_last.pth"
    if cfg["resume"]:
        if not last_path.is_file():
            raise UserError(f"resume: no {last_path.name} in {out}")
        ckpt = storage.torch_load(last_path)
        old = ckpt.get("config", {}) if isinstance(ckpt, dict) else {}
        for key in ("dataset", "teacher_latent_dim", "student_latent_dim", "student_base_channels", "seed", "limit"):
            if old.get(key) != cfg[key]:
                raise UserError(f"resume: {key}={cfg[key]!r} differs from the checkpoint's {old.get(key)!r}")
        for key in ("teacher", "student", "projector"):
            _load_into(models[key], ckpt.get(f"{key}_state_dict"), f"{key}_state_dict", last_path)
        state.update(phase=PHASES.index(ckpt["phase"]), epoch=int(ckpt["epoch"]), best=float(ckpt["best"]),
                     optimizer=ckpt.get("optimizer_state_dict"))
        ctx.log(f"resuming after {ckpt['phase']} epoch {state['epoch']}")

    grid_x = val_x[:GRID_IMAGES]
    n_batches = {p: plan[p] * math.ceil(len(train_x) / cfg["batch_size"]) for p in PHASES}
    total_batches, done_batches = max(1, sum(n_batches.values())), 0
    cache: dict[str, Any] = {}
    val_select = None
    for p_idx, phase in enumerate(PHASES):
        if plan[phase] == 0 or p_idx < state["phase"]:
            done_batches += n_batches[phase]
            continue
        first_epoch = state["epoch"] + 1 if p_idx == state["phase"] else 1
        if phase == "teacher":
            params, lr = list(teacher.parameters()), cfg["learning_rate"]
        elif phase == "distill":
            params, lr = list(student.parameters()) + list(projector.parameters()), cfg["learning_rate"]
        else:
            params, lr = list(student.parameters()), cfg["learning_rate"] * cfg["finetune_lr_scale"]
        opt = torch.optim.Adam(params, lr=lr)
        if p_idx == state["phase"] and state["optimizer"] is not None and first_epoch > 1:
            opt.load_state_dict(state["optimizer"])
        if phase == "distill" and "train" not in cache:
            cache["train"], cache["val"] = teacher_targets(teacher, train_x, device), teacher_targets(teacher, val_x, device)
        done_batches += (first_epoch - 1) * math.ceil(len(train_x) / cfg["batch_size"])
        for epoch in range(first_epoch, plan[phase] + 1):
            t_epoch = time.time()
            torch.manual_seed(cfg["seed"] * 1_000_003 + p_idx * 10_007 + epoch)
            for m in models.values():
                m.train()
            teacher.train(phase == "teacher")
            sums: dict[str, float] = {}
            order = data.epoch_order(len(train_x), cfg["seed"], epoch, p_idx)
            for step, idx in enumerate(_batches(len(train_x), cfg["batch_size"], order), start=1):
                ctx.check_cancelled()
                t_batch = time.time()
                x = train_x[idx].to(device)
                t_mu, t_rec = ((cache["train"][0][idx].to(device), cache["train"][1][idx].to(device))
                               if phase == "distill" else (None, None))
                terms = compute_terms(phase, models, x, t_mu, t_rec, vgg, cfg)
                opt.zero_grad(set_to_none=True)
                terms["loss"].backward()
                opt.step()
                values = {k: float(v.detach()) for k, v in terms.items()}
                if not math.isfinite(values["loss"]):
                    raise UserError(f"training diverged: {phase} epoch {epoch} step {step}: loss is {values['loss']}; "
                                    f"lower learning_rate (now {lr:g})")
                for k, v in values.items():
                    sums[k] = sums.get(k, 0.0) + v * len(idx)
                record({"kind": "batch", "phase": phase, "epoch": epoch, "step": step, **values, "lr": lr,
                        "seconds": round(time.time() - t_batch, 4)})
                done_batches += 1
                ctx.progress(0.95 * done_batches / total_batches,
                             f"{phase} epoch {epoch}/{plan[phase]} step {step} loss {values['loss']:.4f}")
            val = evaluate_terms(phase, models, val_x, cache.get("val"), vgg, cfg, device)
            rec = {"kind": "epoch", "phase": phase, "epoch": epoch,
                   **{f"train_{k}": v / len(train_x) for k, v in sums.items()},
                   **{f"val_{k}": v for k, v in val.items()}, "lr": lr, "seconds": round(time.time() - t_epoch, 3)}
            extra = {"phase": phase, "epoch": epoch, "best": state["best"], "optimizer_state_dict": opt.state_dict()}
            if phase != "teacher":
                val_select = val["select"]
                if val_select < state["best"]:
                    state["best"] = extra["best"] = val_select
                    storage.torch_save(out / "tinyvae_best.pth", _checkpoint(models, cfg, phase=phase, epoch=epoch,
                                                                            val_select=val_select))
                    rec["best"] = True
            storage.torch_save(last_path, _checkpoint(models, cfg, **extra))
            if epoch % cfg["checkpoint_every"] == 0:
                storage.torch_save(out / f"tinyvae_{phase}_epoch_{epoch:03d}.pth",
                                   _checkpoint(models, cfg, phase=phase, epoch=epoch))
            record(rec)
            save_grid(out / "recon_grid.png", models, grid_x, device)
            ctx.log(f"{phase} epoch {epoch}/{plan[phase]}: train {rec['train_loss']:.4f} val {val['loss']:.4f} "
                    f"({rec['seconds']:.0f}s)")
        if phase == "teacher":
            storage.torch_save(out / "teacher.pth", {"teacher_state_dict": teacher.state_dict(), "config": dict(cfg)})

    result: dict[str, Any] = {"output_dir": str(out), "last": str(last_path), "val_select": val_select,
                              "best": str(out / "tinyvae_best.pth") if (out / "tinyvae_best.pth").is_file() else None,
                              "train_seconds": round(time.time() - t_start, 1)}
    if cfg["report"] and result["best"]:
        ctx.progress(0.96, "report: held-out metrics, ONNX export and timings")
        folders = [out] + ([Path(ctx.run_dir)] if getattr(ctx, "run_dir", None) and Path(ctx.run_dir) != out else [])
        result["report"] = vae_report.build_report(ctx, Path(result["best"]), eval_limit=cfg["eval_limit"],
                                                   out_dirs=folders)
    ctx.progress(1.0, "done")
    return result


@torch.no_grad()
def evaluate_terms(phase: str, models: dict, images: torch.Tensor, targets, vgg, cfg: dict, device,
                   batch_size: int = 256) -> dict[str, float]:
    """Mean loss terms over ``images`` in eval mode (recon from the latent mean), plus ``select`` =
    recon_weight·recon + kl_weight·kl of the model the phase trains."""
    for m in models.values():
        m.eval()
    sums: dict[str, float] = {}
    for idx in _batches(len(images), batch_size):
        t_mu, t_rec = (targets[0][idx].to(device), targets[1][idx].to(device)) if targets is not None else (None, None)
        terms = compute_terms(phase, models, images[idx].to(device), t_mu, t_rec, vgg, cfg)
        for k, v in terms.items():
            sums[k] = sums.get(k, 0.0) + float(v) * len(idx)
    means = {k: v / len(images) for k, v in sums.items()}
    means["select"] = cfg["recon_weight"] * means["recon"] + cfg["kl_weight"] * means["kl"]
    return means


@torch.no_grad()
def save_grid(path: Path, models: dict, x: torch.Tensor, device) -> Path:
    """``recon_grid.png``: rows input / teacher / student (eval mode) for the images ``x``."""
    for m in models.values():
        m.eval()
    x = x.to(device)
    rows = [x, models["teacher"].decode(models["teacher"].encode(x)), models["student"].decode(models["student"].encode(x))]
    return storage.write_bytes(path, vae_report.grid_png(rows))
