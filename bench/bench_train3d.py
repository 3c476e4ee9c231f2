"""Benchmark of 3D distillation training on the 101 sample shoes (issue 5).

    python bench/bench_train3d.py [--data ROOT --cache DIR] [--work DIR] [--epochs 2] [--threads 1] [--full]

Measures, side by side in one run:

* student forward, batch 1, torch eager (inference mode): ms per shoe (target <= 15 ms), on 1 and 2
  threads, and batch 8 per shoe for comparison;
* training seconds per epoch over ``--epochs`` epochs of the default config (101 shoes, 20 % of the GT
  shoes held out) and the extrapolation to 50 epochs (target <= 10 min on 2 cores); epoch 1 is slower
  (the untrained student is far from its targets, so the nearest-neighbour search visits more of the
  KD-trees), so the extrapolation uses the last timed epoch and the mean is shown beside it;
* with ``--full``: 50 epochs distilled + 50 epochs baseline (same seed and split), then
  ``evaluate_run``: student vs teacher val CD-L1 (target <= 1.25x) and student vs baseline.

Data: ``--data`` / ``--cache`` if given; else ``$DS_DATA/sample`` and ``$DS_CACHE/visual-hull-balanced``
when they exist; else the sample is built (``build_sample``) and cached with the visual-hull teacher,
preset balanced, under ``--work`` (default: a folder in the system temp dir, reused between runs).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from engine import runs, storage  # noqa: E402
from engine.cli.train import RunContext  # noqa: E402
from engine.config import cache_root, sample_root  # noqa: E402

TARGET_FORWARD_MS = 15.0
TARGET_50_EPOCHS_S = 600.0
TARGET_VS_TEACHER = 1.25


def prepare(args) -> tuple[Path, Path]:
    """The dataset and teacher cache to use (built under ``--work`` when absent)."""
    from engine.cache import build_cache, read_metadata
    from engine.data.sample_shoes import build_sample
    from engine.teachers.base import TeacherSettings

    work = Path(args.work)
    data = Path(args.data) if args.data else sample_root()
    if not args.data and not (storage.read_json(data / "sample.json") or {}).get("complete"):
        data = work / "data"
        print(f"building the 101-shoe sample in {data} ...", flush=True)
        build_sample(RunContext(None, quiet=True), data, count=101, seed=0)
    cache = Path(args.cache) if args.cache else cache_root() / "visual-hull-balanced"
    if read_metadata(cache) is None:
        if args.cache:
            raise SystemExit(f"{cache}: no teacher cache there")
        cache = work / "cache"
        print(f"building the visual-hull (balanced) cache in {cache} ...", flush=True)
        build_cache(RunContext(None, quiet=True), data, cache, teacher="visual-hull",
                    settings=TeacherSettings(preset="balanced"))
    return data, cache


def forward_ms(batch: int, threads: int, reps: int = 30) -> float:
    """Median eager forward time per shoe (ms) of the default student at ``batch`` on ``threads`` threads."""
    from engine.students.mesh_student import MeshStudent, StudentConfig

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = MeshStudent(StudentConfig()).eval()
    x = torch.rand(batch, 4, 4, model.config.image_size, model.config.image_size)
    times = []
    with torch.inference_mode():
        for i in range(reps + 5):
            t = time.perf_counter()
            model(x)
            if i >= 5:
                times.append(time.perf_counter() - t)
    torch.set_num_threads(before)
    return 1000 * statistics.median(times) / batch


def train(ctx_root: Path, cfg: dict) -> tuple[Path, dict, float]:
    from engine.train.distill3d import train_student

    run = runs.create_run("train3d", cfg, root=ctx_root)
    t = time.perf_counter()
    result = train_student(RunContext(run, quiet=True), cfg)
    return run, result, time.perf_counter() - t


def row(name: str, value: float, unit: str, target: float | None = None) -> str:
    if target is None:
        return f"{name:<44}{value:>12.3f} {unit:<6}{'':>12}{'':>9}"
    ratio = value / target
    return f"{name:<44}{value:>12.3f} {unit:<6}{target:>12.3f}{ratio:>8.2f}x  {'PASS' if ratio <= 1 else 'MISS'}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None)
    parser.add_argument("--cache", default=None)
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "ds-bench-train3d"))
    parser.add_argument("--epochs", type=int, default=2, help="epochs to time (default 2)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for training (default 1: on a shared 2-core machine a second OpenMP "
                             "thread is often descheduled and every parallel op waits for it)")
    parser.add_argument("--full", action="store_true", help="also train 50 epochs distilled + baseline and evaluate")
    parser.add_argument("--full-epochs", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data, cache = prepare(args)
    run_root = Path(args.work) / "runs"
    print(f"data {data}\ncache {cache}\ntorch {torch.__version__}, training on {args.threads} thread(s), "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start", flush=True)

    fwd = {(b, t): forward_ms(b, t) for b in (1, 8) for t in (1, 2)}
    cfg = {"data": str(data), "cache": str(cache), "epochs": args.epochs, "seed": 0}
    run, result, total = train(run_root, cfg)
    epochs = [r for r in runs.read_history(run) if r["scope"] == "epoch"]
    secs = [r["seconds"] for r in epochs]
    load = total - sum(secs)
    steady, mean = secs[-1], statistics.mean(secs)
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end; run {run}")
    print(f"\n{'measure':<44}{'value':>12} {'unit':<6}{'target':>12}{'ratio':>9}")
    print("-" * 90)
    for (b, t), ms in fwd.items():
        print(row(f"student forward, batch {b}, {t} thread(s) (per shoe)", ms, "ms", TARGET_FORWARD_MS if b == 1 else None))
    print(row(f"shoes loaded ({result['train']} train, {result['val']} val)", load, "s"))
    for r in epochs:
        print(row(f"epoch {r['epoch']} (val CD-L1 {r['val_cd_l1']:.4f})", r["seconds"], "s"))
    print(row("seconds per training step (batch 4), last", epochs[-1]["seconds_per_step"], "s"))
    print(row("50 epochs, extrapolated from the last epoch", load + 50 * steady, "s", TARGET_50_EPOCHS_S))
    print(row("50 epochs, extrapolated from the mean epoch", load + 50 * mean, "s", TARGET_50_EPOCHS_S))
    if args.full:
        full(run_root, data, cache, args.full_epochs)
    return 0


def full(run_root: Path, data: Path, cache: Path, epochs: int) -> None:
    from engine.evaluate.mesh_eval import METRICS, evaluate_run

    cfg = {"data": str(data), "cache": str(cache), "epochs": epochs, "seed": 0}
    run, _, t_run = train(run_root, cfg)
    base, _, t_base = train(run_root, {**cfg, "baseline": True})
    report = evaluate_run(RunContext(None, quiet=True), run, baseline_run=base)
    print(f"\n{epochs} epochs: distilled {t_run:.0f} s ({run.name}), baseline {t_base:.0f} s ({base.name})")
    print(f"val split: {report['val_shoes']} shoes; {report['normalisation']}")
    print(f"\n{'model':<10}" + "".join(f"{k:>20}" for k in METRICS))
    for name, m in report["summary"].items():
        if m:
            print(f"{name:<10}" + "".join(f"{m[k]:>20.5f}" for k in METRICS))
    r = report["ratios"]
    print()
    print(row("student / teacher val CD-L1", r["student_vs_teacher_cd_l1"], "x", TARGET_VS_TEACHER))
    print(row("baseline / teacher val CD-L1", r["baseline_vs_teacher_cd_l1"], "x"))
    print(row("student / baseline val CD-L1", r["student_vs_baseline_cd_l1"], "x"))


if __name__ == "__main__":
    sys.exit(main())
