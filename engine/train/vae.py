"""TinyVAE distillation (seed 003): config, the three phases, checkpoints, history, resume and cancel.

Phases (``PHASES``: data, one ``Phase`` each — what trains, which loss terms with which config weights,
epochs and lr factor; ``run_vae_distillation`` runs them in order):
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
Each holds ``student_state_dict``, ``teacher_state_dict``, ``projector_state_dict`` and ``config`` (the
format is ``engine.students.vae_checkpoint``'s). ``recon_grid.png`` (rows: input / teacher / student) is
rewritten after every epoch. History (``ctx.metric``; also ``history.jsonl`` in the output folder when
not a job): one record per batch (``scope: batch``, ``phase``, ``epoch``, ``step``, every term) and per
epoch (``scope: epoch``, train and val means). The report on the best checkpoint is not made here:
``engine.workflows.distil_and_report`` runs this and then the report (the CLI's and the
studio's VAE job).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from engine import runs, storage
from engine.config import UserError
from engine.data import image_datasets as data
from engine.progress import NULL_CONTEXT
from engine.students.vae import TeacherVAE
from engine.students.vae_checkpoint import (MODEL_KEYS, build_models, checkpoint_dict,  # noqa: F401 - the API
                                            load_checkpoint, load_into)
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
N_ELEMENTS = 3 * 32 * 32
GRID_IMAGES = 8


@dataclass(frozen=True)
class Phase:
    """One training phase (torchdistill's "stage"): its ``name``; ``model``, whose forward pass the loss
    reads (``teacher`` | ``student``); ``trains``, the models whose parameters Adam updates; ``terms``,
    ``(loss term, config key of its weight)`` in summation order; ``epochs``, the config key of its epoch
    count; ``lr_scale``, the config key of its ``learning_rate`` factor (None: 1)."""

    name: str
    model: str
    trains: tuple[str, ...]
    terms: tuple[tuple[str, str], ...]
    epochs: str
    lr_scale: str | None = None

    @property
    def needs_targets(self) -> bool:
        """Whether its terms read the frozen teacher's latents / reconstructions."""
        return any(name in ("latent", "output") for name, _ in self.terms)


_VAE_TERMS = (("recon", "recon_weight"), ("kl", "kl_weight"))
PHASES: tuple[Phase, ...] = (
    Phase("teacher", model="teacher", trains=("teacher",), terms=_VAE_TERMS, epochs="teacher_epochs"),
    Phase("distill", model="student", trains=("student", "projector"), epochs="epochs",
          terms=_VAE_TERMS + (("latent", "distill_latent_weight"), ("output", "distill_recon_weight"),
                              ("perceptual", "perceptual_weight"))),
    Phase("finetune", model="student", trains=("student",), terms=_VAE_TERMS, epochs="finetune_epochs",
          lr_scale="finetune_lr_scale"),
)
PHASE_BY_NAME = {phase.name: phase for phase in PHASES}
TERMS: dict[str, Callable[[dict], torch.Tensor]] = {  # loss term -> its value from one batch's tensors
    "recon": lambda b: L.reconstruction_loss(b["recon"], b["x"]),
    "kl": lambda b: L.kl_divergence(b["mu"], b["logvar"], N_ELEMENTS),
    "latent": lambda b: L.latent_distillation_loss(b["projector"](b["mu"]), b["t_mu"], b["temperature"]),
    "output": lambda b: L.output_distillation_loss(b["recon"], b["t_recon"]),
    "perceptual": lambda b: L.perceptual_loss(b["vgg"], b["recon"], b["x"]),
}


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


def compute_terms(phase: str | Phase, models: dict, x: torch.Tensor, t_mu: torch.Tensor | None,
                  t_recon: torch.Tensor | None, vgg, cfg: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The loss terms of one batch for ``phase`` (a ``Phase`` or its name), weighted total in ``loss``.
    ``perceptual`` is left out when ``vgg`` is None (its weight is 0)."""
    phase = PHASE_BY_NAME[phase] if isinstance(phase, str) else phase
    recon, mu, logvar = models[phase.model](x)
    inputs = {"x": x, "recon": recon, "mu": mu, "logvar": logvar, "t_mu": t_mu, "t_recon": t_recon, "vgg": vgg,
              "projector": models["projector"], "temperature": cfg["temperature"]}
    terms, weights = {}, {}
    for name, weight_key in phase.terms:
        if name == "perceptual" and vgg is None:
            continue
        terms[name] = TERMS[name](inputs)
        weights[name] = cfg[weight_key]
    terms["loss"] = L.weighted_total(terms, weights)
    return terms


def run_vae_distillation(ctx, config: dict[str, Any] | None = None, **options: Any) -> dict[str, Any]:
    """Run the ``PHASES`` as configured; returns a summary dict (output folder, best/last checkpoint
    paths, final validation number, training seconds). The report is not made here:
    ``engine.workflows.distil_and_report`` is this plus the report.

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

    plan = {phase.name: cfg[phase.epochs] for phase in PHASES}
    if cfg["teacher_checkpoint"]:
        path = Path(cfg["teacher_checkpoint"]).expanduser()
        ckpt = storage.torch_load(path)
        load_into(teacher, ckpt.get("teacher_state_dict") if isinstance(ckpt, dict) else None,
                  "teacher_state_dict", path)
        plan.update({phase.name: 0 for phase in PHASES if "teacher" in phase.trains})
    run = _Training(ctx, cfg, out, device, models, vgg, train_x, val_x, plan)
    if cfg["resume"]:
        run.resume()
    run.run()
    best = out / "tinyvae_best.pth"
    ctx.progress(1.0, "done")
    return {"output_dir": str(out), "last": str(run.last_path), "val_select": run.val_select,
            "best": str(best) if best.is_file() else None, "train_seconds": round(time.time() - t_start, 1)}


class _Training:
    """The state of one ``run_vae_distillation``: models, data, where it is (phase, epoch), best so far."""

    def __init__(self, ctx, cfg: dict, out: Path, device, models: dict, vgg, train_x, val_x, plan: dict):
        self.ctx, self.cfg, self.out, self.device, self.models, self.vgg = ctx, cfg, out, device, models, vgg
        self.train_x, self.val_x, self.plan = train_x, val_x, plan
        self.last_path = out / "tinyvae_last.pth"
        self.history = None if getattr(ctx, "run_dir", None) else runs.RunRecorder(out)  # not a job: own file
        self.start_phase, self.start_epoch, self.best, self.opt_state = 0, 0, float("inf"), None
        self.val_select, self.targets = None, {}
        self.steps = math.ceil(len(train_x) / cfg["batch_size"])
        self.total, self.done = max(1, self.steps * sum(plan.values())), 0

    def record(self, rec: dict) -> None:
        self.ctx.metric(rec)
        if self.history is not None:
            self.history.metric(rec)

    def resume(self) -> None:
        """Continue after the phase and epoch of ``tinyvae_last.pth`` (same data, sizes and seed only)."""
        cfg, path = self.cfg, self.last_path
        if not path.is_file():
            raise UserError(f"resume: no {path.name} in {self.out}")
        ckpt = storage.torch_load(path)
        old = ckpt.get("config", {}) if isinstance(ckpt, dict) else {}
        for key in ("dataset", "teacher_latent_dim", "student_latent_dim", "student_base_channels", "seed", "limit"):
            if old.get(key) != cfg[key]:
                raise UserError(f"resume: {key}={cfg[key]!r} differs from the checkpoint's {old.get(key)!r}")
        for key in MODEL_KEYS:
            load_into(self.models[key], ckpt.get(f"{key}_state_dict"), f"{key}_state_dict", path)
        self.start_phase = [phase.name for phase in PHASES].index(ckpt["phase"])
        self.start_epoch, self.best = int(ckpt["epoch"]), float(ckpt["best"])
        self.opt_state = ckpt.get("optimizer_state_dict")
        self.ctx.log(f"resuming after {ckpt['phase']} epoch {self.start_epoch}")

    def run(self) -> None:
        for p_idx, phase in enumerate(PHASES):
            epochs = self.plan[phase.name]
            if epochs == 0 or p_idx < self.start_phase:
                self.done += epochs * self.steps
                continue
            first = self.start_epoch + 1 if p_idx == self.start_phase else 1
            lr = self.cfg["learning_rate"] * (self.cfg[phase.lr_scale] if phase.lr_scale else 1.0)
            opt = torch.optim.Adam([p for key in phase.trains for p in self.models[key].parameters()], lr=lr)
            if p_idx == self.start_phase and self.opt_state is not None and first > 1:
                opt.load_state_dict(self.opt_state)
            if phase.needs_targets and "train" not in self.targets:
                teacher = self.models["teacher"]
                self.targets["train"] = teacher_targets(teacher, self.train_x, self.device)
                self.targets["val"] = teacher_targets(teacher, self.val_x, self.device)
            self.done += (first - 1) * self.steps
            for epoch in range(first, epochs + 1):
                self.epoch(p_idx, phase, epoch, opt, lr)
            if phase.model == "teacher":
                storage.torch_save(self.out / "teacher.pth",
                                   {"teacher_state_dict": self.models["teacher"].state_dict(), "config": dict(self.cfg)})

    def epoch(self, p_idx: int, phase: Phase, epoch: int, opt, lr: float) -> None:
        cfg, models, device, ctx = self.cfg, self.models, self.device, self.ctx
        t_epoch = time.time()
        torch.manual_seed(cfg["seed"] * 1_000_003 + p_idx * 10_007 + epoch)
        for m in models.values():
            m.train()
        models["teacher"].train(phase.model == "teacher")
        sums: dict[str, float] = {}
        order = data.epoch_order(len(self.train_x), cfg["seed"], epoch, p_idx)
        for step, idx in enumerate(_batches(len(self.train_x), cfg["batch_size"], order), start=1):
            ctx.check_cancelled()
            t_batch = time.time()
            x = self.train_x[idx].to(device)
            t_mu, t_rec = ((self.targets["train"][0][idx].to(device), self.targets["train"][1][idx].to(device))
                           if phase.needs_targets else (None, None))
            terms = compute_terms(phase, models, x, t_mu, t_rec, self.vgg, cfg)
            opt.zero_grad(set_to_none=True)
            terms["loss"].backward()
            opt.step()
            values = {k: float(v.detach()) for k, v in terms.items()}
            if not math.isfinite(values["loss"]):
                raise UserError(f"training diverged: {phase.name} epoch {epoch} step {step}: loss is "
                                f"{values['loss']}; lower learning_rate (now {lr:g})")
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + v * len(idx)
            self.record({"scope": "batch", "phase": phase.name, "epoch": epoch, "step": step, **values, "lr": lr,
                         "seconds": round(time.time() - t_batch, 4)})
            self.done += 1
            ctx.progress(self.done / self.total, f"{phase.name} epoch {epoch}/{self.plan[phase.name]} step {step} "
                                                 f"loss {values['loss']:.4f}")
        val = evaluate_terms(phase, models, self.val_x, self.targets.get("val"), self.vgg, cfg, device)
        rec = {"scope": "epoch", "phase": phase.name, "epoch": epoch,
               **{f"train_{k}": v / len(self.train_x) for k, v in sums.items()},
               **{f"val_{k}": v for k, v in val.items()}, "lr": lr, "seconds": round(time.time() - t_epoch, 3)}
        extra = {"phase": phase.name, "epoch": epoch, "best": self.best, "optimizer_state_dict": opt.state_dict()}
        if phase.model == "student":  # best = lowest student validation select, whichever phase
            self.val_select = val["select"]
            if self.val_select < self.best:
                self.best = extra["best"] = self.val_select
                storage.torch_save(self.out / "tinyvae_best.pth", checkpoint_dict(
                    models, cfg, phase=phase.name, epoch=epoch, val_select=self.val_select))
                rec["best"] = True
        storage.torch_save(self.last_path, checkpoint_dict(models, cfg, **extra))
        if epoch % cfg["checkpoint_every"] == 0:
            storage.torch_save(self.out / f"tinyvae_{phase.name}_epoch_{epoch:03d}.pth",
                               checkpoint_dict(models, cfg, phase=phase.name, epoch=epoch))
        self.record(rec)
        save_grid(self.out / "recon_grid.png", models, self.grid_x, device)
        ctx.log(f"{phase.name} epoch {epoch}/{self.plan[phase.name]}: train {rec['train_loss']:.4f} "
                f"val {val['loss']:.4f} ({rec['seconds']:.0f}s)")

    @property
    def grid_x(self) -> torch.Tensor:
        return self.val_x[:GRID_IMAGES]


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
    return storage.write_bytes(path, data.grid_png(rows))
