"""``python -m engine train ...`` and ``python -m engine evaluate ...``: 3D distillation in the foreground.

    python -m engine train --data ROOT --cache DIR [--config cfg.json] [--epochs N --lr X --batch-size B
                           --seed S --schedule NAME --baseline | --with-baseline --lambda-feat X
                           --photo-views K --device D --out-runs DIR]
                           [--resume RUN_ID]
    python -m engine evaluate --run ID [--baseline ID] [--runs DIR] [--checkpoint best|last]

``train`` creates a run folder (``engine.runs.create_run``, kind ``train3d``) and trains with a
``RunContext``: progress bar on stderr, ``history.jsonl`` / ``log.txt`` / ``status.json`` in the run
folder, the status lifecycle (running → succeeded / failed / cancelled) by the same
``engine.runs.RunRecorder`` the job runner uses. Flags override ``--config``. ``--resume RUN_ID``
continues that run from ``checkpoints/last.pt`` with its saved config (``--epochs`` may raise the epoch
count). Under ``torchrun --nproc-per-node N
-m engine train ...`` every rank trains (DDP); rank 0 creates the run folder and is the only writer
(the other ranks need the folder only to read ``last.pt`` when resuming).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from engine.cli import CliProgress

KIND = "train3d"


class RunContext(CliProgress):
    """``CliProgress`` with the run folder first: the terminal plus ``run_dir``'s status / history / log,
    written by ``engine.runs.RunRecorder`` as in the job runner. ``run_dir`` may be None (nothing written);
    ``write=False`` (DDP ranks > 0) keeps the folder to read only."""

    def __init__(self, run_dir: Path | None, quiet: bool = False, write: bool = True):
        super().__init__(quiet=quiet, run_dir=run_dir, write=write)


def _config_from_args(args: argparse.Namespace) -> dict:
    from engine.cli import read_config_json

    cfg: dict = read_config_json(args.config) if args.config else {}
    flags = {"data": args.data, "cache": args.cache, "epochs": args.epochs, "lr": args.lr,
             "batch_size": args.batch_size, "seed": args.seed, "schedule": args.schedule, "device": args.device,
             "lambda_feat": args.lambda_feat, "photo_views": args.photo_views}
    cfg.update({k: v for k, v in flags.items() if v is not None})
    if args.student is not None:  # a named size; the fields the config file names stay
        from engine.train.distill_config import size_epochs, student_preset

        cfg["student"] = {**student_preset(args.student), **(cfg.get("student") or {})}
        if "epochs" not in cfg:  # the size's own epochs (fast: twice the default's, to keep its quality)
            cfg["epochs"] = size_epochs(args.student)
    if args.baseline:
        cfg["baseline"] = True
    return cfg


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _world() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _train(args: argparse.Namespace) -> int:
    import contextlib

    with contextlib.ExitStack() as held:  # the run's lock is released however this ends
        return _train_in(args, held)


def _train_in(args: argparse.Namespace, held) -> int:
    from engine import runs, storage
    from engine.config import UserError
    from engine.train.distill3d import train_student
    from engine.train.distill_config import validate_config, with_saved_student

    rank = _rank()
    root = Path(args.out_runs).resolve() if args.out_runs else None
    if args.resume:
        from engine.cli import saved_run_config

        run_dir, cfg = saved_run_config(args.resume, root)
        lock = held.enter_context(runs.RunLock(run_dir)) if rank == 0 else None  # first: one writer per run
        if args.epochs is not None:
            cfg["epochs"] = args.epochs
        if args.device is not None:
            cfg["device"] = args.device
        pair = bool(cfg.pop("with_baseline", False))
        cfg = validate_config(with_saved_student({**cfg, "resume": True}, run_dir))
    else:
        lock = None
        pair = bool(args.with_baseline)
        cfg = validate_config(_config_from_args(args))
    if pair and _world() > 1:
        raise UserError("--with-baseline runs in one process; under torchrun train the two runs separately")
    saved_cfg = {k: v for k, v in cfg.items() if k != "resume"} | ({"with_baseline": True} if pair else {})
    if args.resume:
        if rank == 0:
            storage.write_json(run_dir / "config.json", {"kind": KIND, **saved_cfg})
    else:
        run_dir = None  # ranks > 0 of a new DDP run write nothing and need no folder
        if rank == 0:
            run_dir = runs.create_run(KIND, saved_cfg, root=root, run_id=args.run_id)
    from engine.cli import recorded_run

    ctx = RunContext(run_dir, quiet=args.quiet or rank != 0, write=rank == 0)
    if rank == 0 and not args.quiet:
        print(f"run {run_dir.name} in {run_dir.parent}", file=sys.stderr)
    if pair:
        from engine.evaluate.distill_report import format_summary
        from engine.workflows import distill_with_baseline

        report = recorded_run(ctx, distill_with_baseline, {**cfg, "resume": bool(args.resume)},
                              resumed=bool(args.resume), lock=lock)
        print(f"run      {run_dir.name} (baseline {report['baseline_run']})\n{format_summary(report)}\n"
              f"report   {run_dir / 'distillation.md'}")
        return 0
    result = recorded_run(ctx, train_student, cfg, resumed=bool(args.resume), lock=lock)
    if ctx.recorder:
        best = result["best_val"]
        print(f"run      {run_dir.name}\nepochs   {result['last_epoch']}/{result['epochs']}  "
              f"({result['train']} train, {result['val']} val shoes{', baseline' if result['baseline'] else ''})\n"
              f"best     {result['best_metric']} {best:.6f} at epoch {result['best_epoch']}\n"
              f"seconds  {result['seconds']:.1f}\ncheckpoints {run_dir / 'checkpoints'}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from engine import runs
    from engine.evaluate.mesh_eval import evaluate_run, format_summary

    root = Path(args.runs).resolve() if args.runs else None
    run_dir = runs.run_dir(args.run, root)
    baseline = runs.run_dir(args.baseline, root) if args.baseline else None
    report = evaluate_run(RunContext(None, quiet=args.quiet), run_dir, baseline_run=baseline, checkpoint=args.checkpoint)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_summary(report))
        print(f"wrote    {run_dir / 'evaluation.json'} and evaluation.md")
    return 0


def register(sub) -> None:
    from engine.train.distill_config import STUDENT_PRESETS, size_epochs
    from engine.train.schedules import SCHEDULE_NAMES

    p = sub.add_parser("train", help="train the 3D mesh student by distillation (or a GT-only baseline)")
    p.add_argument("--data", default=None, help="dataset folder (input_images/, OBJs/)")
    p.add_argument("--cache", default=None, help="teacher cache folder (see 'cache build')")
    p.add_argument("--config", default=None, help="JSON file with training config keys; flags override it")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default: the student size's, "
                   + ", ".join(f"{n} {size_epochs(n)}" for n in STUDENT_PRESETS) + ")")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 1e-3)")
    p.add_argument("--batch-size", type=int, default=None, help="shoes per step and process (default 4)")
    p.add_argument("--seed", type=int, default=None, help="seed (default 0)")
    p.add_argument("--schedule", choices=SCHEDULE_NAMES, default=None, help="teacher-weight schedule (default: default)")
    p.add_argument("--baseline", action="store_true", help="train on GT alone (alpha = 0)")
    p.add_argument("--with-baseline", action="store_true",
                   help="train the student, then its GT-only baseline, evaluate both and write the distillation report")
    p.add_argument("--lambda-feat", type=float, default=None,
                   help="weight of the feature-level distillation term (needs a cache with teacher features)")
    p.add_argument("--photo-views", type=int, default=None, metavar="K",
                   help="train also on K photo-style versions of each shoe's views (composited, segmented and "
                        "framed as uploaded photos are; about 4 s per shoe and version to make); default 0")
    p.add_argument("--student", default=None, choices=list(STUDENT_PRESETS),
                   help="student size: default (233k parameters) or fast (99k, about half the time per shoe "
                        "in ONNX Runtime; without --epochs it trains twice the default's 50, which keeps "
                        "the default's quality: see the README)")
    p.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N (default auto)")
    p.add_argument("--out-runs", default=None, help="runs folder (default $DS_RUNS or ./runs)")
    p.add_argument("--resume", default=None, metavar="RUN_ID", help="continue this run from checkpoints/last.pt")
    p.add_argument("--run-id", default=None, help="ID of the new run folder (default: time + kind + random)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)

    p = sub.add_parser("evaluate", help="student / baseline / teacher vs GT on a training run's val split")
    p.add_argument("--run", required=True, help="training run ID")
    p.add_argument("--baseline", default=None, metavar="ID", help="a baseline run to compare with")
    p.add_argument("--runs", default=None, help="runs folder (default $DS_RUNS or ./runs)")
    p.add_argument("--checkpoint", default="best", choices=("best", "last"), help="which checkpoint (default best)")
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_evaluate)
