"""``python -m engine teacher corpus|pretrain``: the learned teacher's corpus and its pre-training.

    python -m engine teacher corpus --out corpus/teacher [--count 1024 --seed 0 --families sneaker,boot,...]
    python -m engine teacher pretrain --corpus corpus/teacher [--out WEIGHTS] [--config cfg.json] [--shoes N
                                      --epochs E --batch-size B --lr X --seed S] [--resume RUN_ID] [--run-id ID]

``pretrain`` is a run (kind ``teacher-pretrain``): progress bar with ETA, ``history.jsonl`` (loss, held-out
IoU per epoch — the Runs tab plots it), ``checkpoints/last.pt`` after every epoch; ``--resume RUN_ID``
continues a killed run from there with its saved config. The weights go to ``--out`` (default: the file
the occupancy teacher loads, ``$DS_OCCUPANCY_WEIGHTS`` or ``assets/teachers/occupancy.pt``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

KIND = "teacher-pretrain"


def _corpus(args: argparse.Namespace) -> int:
    from engine.cli import CliProgress
    from engine.data.corpus import FAMILIES, build_corpus

    result = build_corpus(CliProgress(quiet=args.quiet), Path(args.out), families=args.families or ",".join(FAMILIES),
                          count=args.count, seed=args.seed, image_size=args.image_size, n_query=args.queries)
    print(f"corpus: {result['count']} shoes in {result['parts']} parts ({result['built']} built) -> {result['out']} "
          f"({result['seconds']:.0f} s)")
    return 0


def _pretrain(args: argparse.Namespace) -> int:
    from engine import runs
    from engine.cli import CliProgress, recorded_run
    from engine.config import UserError
    from engine.teachers.occupancy import weights_path
    from engine.train.teacher_pretrain import check_config, pretrain_teacher

    root = Path(args.out_runs).resolve() if args.out_runs else None
    if args.resume:
        from engine.cli import saved_run_config

        run_dir, cfg = saved_run_config(args.resume, root)
    else:
        if not args.corpus:
            raise UserError("give --corpus (a folder made by `python -m engine teacher corpus`) or --resume RUN_ID")
        from engine.cli import read_config_json

        flags = {"corpus": args.corpus, "out": args.out or str(weights_path()), "shoes": args.shoes,
                 "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
                 "val_shoes": args.val_shoes, "queries": args.queries}
        base = read_config_json(args.config) if args.config else {}
        cfg = check_config({**base, **{k: v for k, v in flags.items() if v is not None}})
        run_dir = runs.create_run(KIND, cfg, root=root, run_id=args.run_id)
    ctx = CliProgress(quiet=args.quiet, run_dir=run_dir)
    if not args.quiet:
        print(f"run {run_dir.name} in {run_dir.parent}", file=sys.stderr)
    result = recorded_run(ctx, pretrain_teacher, {**cfg, "resume": bool(args.resume)}, resumed=bool(args.resume))
    print(f"run      {run_dir.name}\nweights  {result['weights']}  ({result['parameters']:,} parameters)\n"
          f"held-out CD-L1 {result['val_cd_l1']}  IoU {result['val_iou']:.4f}\nseconds  {result['seconds']:.0f}")
    return 0


def register(t_sub) -> None:
    """Add ``corpus`` and ``pretrain`` to the ``teacher`` command group's subparsers."""
    p = t_sub.add_parser("corpus", help="build the learned teacher's procedural corpus (resumable)")
    p.add_argument("--out", required=True, help="corpus folder")
    p.add_argument("--count", type=int, default=1024, help="shoes (default 1024)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--families", default=None, help="comma-separated (default: all seven)")
    p.add_argument("--image-size", type=int, default=256, help="view size in pixels (default 256)")
    p.add_argument("--queries", type=int, default=12288, help="stored occupancy queries per shoe (default 12288)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_corpus)
    p = t_sub.add_parser("pretrain", help="pre-train the occupancy teacher on a corpus (a resumable run)")
    p.add_argument("--corpus", default=None, help="folder made by `teacher corpus`")
    p.add_argument("--config", default=None, help="JSON file of pretrain settings (flags override it), e.g. "
                   '{"model": {"width": 16}, "queries": 1024, "val_shoes": 8}')
    p.add_argument("--out", default=None, help="weights file (default: what the occupancy teacher loads)")
    p.add_argument("--shoes", type=int, default=None, help="train on the first N corpus shoes")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--val-shoes", type=int, default=None, help="the corpus's last N shoes are held out (default 16)")
    p.add_argument("--queries", type=int, default=None, help="occupancy queries per shoe per step (default 2048)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--resume", default=None, metavar="RUN_ID", help="continue that run from checkpoints/last.pt")
    p.add_argument("--run-id", default=None)
    p.add_argument("--out-runs", default=None, help="runs folder (default $DS_RUNS)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_pretrain)
