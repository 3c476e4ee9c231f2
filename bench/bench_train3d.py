"""Benchmark of 3D distillation training on the 101 sample shoes (issue 5).

    python bench/bench_train3d.py [--data ROOT --cache DIR] [--work DIR] [--epochs 2] [--threads N]
                                  [--compare-threads] [--full [--full-epochs 50]]

Measures, side by side in one run (these machines are noisy: read ratios, and the load average printed
at the start and the end):

* student forward, batch 1, torch eager (inference mode): ms per shoe (target <= 15 ms) on 1 and 2
  threads, taken alternately, and batch 8 per shoe for comparison;
* training seconds per epoch (validation included; its share is shown) over ``--epochs`` epochs of the
  default config (101 shoes, 20 % of the GT shoes held out) and the extrapolation to 50 epochs
  (target <= 10 min on 2 cores, shoe loading included); epoch 1 is slower (the untrained student is
  far from its targets, so the nearest-neighbour search visits more of the KD-trees), so the
  extrapolation uses the last timed epoch and the mean is shown beside it;
* ``--compare-threads``: the same short training on 1 and on 2 torch threads, alternately twice
  (1, 2, 1, 2), mean seconds per epoch of each;
* ``--full``: instead of the short timing, ``--full-epochs`` (50) epochs distilled + the same baseline
  (GT alone, same seed and split), then ``evaluate_run``: the real seconds per epoch and total
  (target <= 600 s), student vs teacher val CD-L1 (target <= 1.25x) and student vs baseline.

* ``--arms "A;B;..."``: instead, one ``--full-epochs`` run per arm, one after another in this process (each
  arm is comma-separated ``KEY=VALUE`` config overrides, e.g. ``"threads=1;threads=2,n_points=5000"``; a
  student field as ``student.width=12``), and
  a table side by side: total seconds (loading included), seconds per epoch, the per-part breakdown of
  an epoch (data, forward, loss = sampling + Chamfer + regularisers, backward, optimiser, validation,
  other), final, best and last-5-epoch mean val CD-L1 and each arm's ratios to the first arm (target:
  <= 240 s for 50 epochs with val CD-L1 within 3 % of the first arm, or lower: issue 17 asks for speed
  without losing quality). At a constant learning rate the
  val CD-L1 of single epochs swings by +-10 % near the end (measured: 0.0147 -> 0.0102 over the last 8
  epochs of one run), and two runs that differ only in the last bits (1 vs 2 threads) end 18 % apart
  on the final epoch but 2.5 % apart on the mean of the last 5, so the verdict uses that mean.

``--threads`` sets the training config's ``threads`` (default: the config's default). Data: ``--data``
/ ``--cache`` if given; else ``$DS_DATA/sample`` and ``$DS_CACHE/visual-hull-balanced`` when they
exist; else the sample is built (``build_sample``) and cached with the visual-hull teacher, preset
balanced, under ``--work`` (default: a folder in the system temp dir, reused between runs).
"""
from __future__ import annotations

import argparse
import json
import os
import re
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
TARGET_ARM_50_EPOCHS_S = 240.0  # issue 17
ARM_VAL_TOLERANCE = 0.03  # final val CD-L1 within 3 % of the first arm
PARTS = ("data", "forward", "loss", "backward", "optimiser", "validation")
TARGET_VS_TEACHER = 1.25
VAL_LINE = re.compile(r"epoch (\d+)/\d+: .*\(validation ([0-9.]+) s\)")


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


def overrides(items: list[str]) -> dict:
    """``KEY=VALUE`` strings -> config overrides (VALUE parsed as JSON, else kept as a string); a dotted
    ``student.FIELD=VALUE`` sets one field of the ``student`` mapping."""
    out: dict = {}
    for item in items:
        key, sep, value = item.strip().partition("=")
        if not sep:
            raise SystemExit(f"--set wants KEY=VALUE, got {item!r}")
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass
        outer, dot, inner = key.partition(".")
        if dot:
            out.setdefault(outer, {})[inner] = value
        else:
            out[key] = value
    return out


def forward_ms(rounds: int = 5, reps: int = 10) -> dict:
    """Median eager forward time per shoe (ms) of the default student, keyed by (batch, threads).

    Every (batch, threads) pair is timed in each of ``rounds`` rounds, alternately, so machine noise
    hits all alike; the figure is the median over all calls."""
    from engine.students.mesh_student import MeshStudent, StudentConfig

    before = torch.get_num_threads()
    torch.manual_seed(0)
    model = MeshStudent(StudentConfig()).eval()
    s = model.config.image_size
    keys = [(b, t) for b in (1, 8) for t in (1, 2)]
    inputs = {b: torch.rand(b, 4, 4, s, s) for b in (1, 8)}
    times: dict = {k: [] for k in keys}
    with torch.inference_mode():
        for r in range(rounds):
            for b, t in keys:
                torch.set_num_threads(t)
                for i in range(reps + (3 if r == 0 else 1)):
                    t0 = time.perf_counter()
                    model(inputs[b])
                    if i >= (3 if r == 0 else 1):
                        times[(b, t)].append((time.perf_counter() - t0) / b)
    torch.set_num_threads(before)
    return {k: 1000 * statistics.median(v) for k, v in times.items()}


class BenchContext(RunContext):
    """A quiet run context that also keeps the log lines (the validation seconds are only logged)."""

    def __init__(self, run_dir):
        super().__init__(run_dir, quiet=True)
        self.val_seconds: dict[int, float] = {}

    def log(self, text: str) -> None:
        super().log(text)
        m = VAL_LINE.search(text)
        if m:
            self.val_seconds[int(m.group(1))] = float(m.group(2))


def train(run_root: Path, cfg: dict) -> dict:
    """One training run; returns ``{run, result, total, load, epochs: [epoch records], val: {epoch: s}}``."""
    from engine.train.distill3d import train_student

    run = runs.create_run("train3d", cfg, root=run_root)
    ctx = BenchContext(run)
    t = time.perf_counter()
    result = train_student(ctx, cfg)
    total = time.perf_counter() - t
    epochs = [r for r in runs.read_history(run) if r["scope"] == "epoch"]
    return {"run": run, "result": result, "total": total, "load": total - sum(r["seconds"] for r in epochs),
            "epochs": epochs, "val": ctx.val_seconds}


def row(name: str, value: float, unit: str, target: float | None = None) -> str:
    if target is None:
        return f"{name:<52}{value:>12.3f} {unit:<6}{'':>12}{'':>9}"
    ratio = value / target
    return f"{name:<52}{value:>12.3f} {unit:<6}{target:>12.3f}{ratio:>8.2f}x  {'PASS' if ratio <= 1 else 'MISS'}"


def header() -> None:
    print(f"\n{'measure':<52}{'value':>12} {'unit':<6}{'target':>12}{'ratio':>9}")
    print("-" * 98)


def epoch_rows(t: dict, label: str) -> None:
    """Per-epoch seconds (validation share), and the 50-epoch figure: extrapolated or real."""
    epochs = t["epochs"]
    for r in epochs if len(epochs) <= 5 else epochs[:2] + epochs[-2:]:
        val = t["val"].get(r["epoch"])
        print(row(f"{label} epoch {r['epoch']} (val CD-L1 {r['val_cd_l1']:.4f}"
                  + (f", val {val:.1f} s)" if val is not None else ")"), r["seconds"], "s"))
    secs = [r["seconds"] for r in epochs]
    print(row(f"{label} seconds per epoch, mean of {len(secs)}", statistics.mean(secs), "s"))
    print(row(f"{label} shoes loaded ({t['result']['train']} train, {t['result']['val']} val)", t["load"], "s"))
    if len(epochs) >= 50:
        print(row(f"{label} {len(epochs)} epochs, measured (loading included)", t["total"], "s",
                  TARGET_50_EPOCHS_S if len(epochs) == 50 else None))
    else:
        print(row(f"{label} 50 epochs, extrapolated from the last epoch", t["load"] + 50 * secs[-1], "s",
                  TARGET_50_EPOCHS_S))
        print(row(f"{label} 50 epochs, extrapolated from the mean epoch", t["load"] + 50 * statistics.mean(secs), "s",
                  TARGET_50_EPOCHS_S))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None)
    parser.add_argument("--cache", default=None)
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "ds-bench-train3d"))
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the short timing (default 2)")
    parser.add_argument("--threads", type=int, default=None, help="training threads (default: the config's)")
    parser.add_argument("--compare-threads", action="store_true", help="short training on 1 vs 2 threads, alternately")
    parser.add_argument("--full", action="store_true", help="train --full-epochs distilled + baseline and evaluate")
    parser.add_argument("--full-epochs", type=int, default=50)
    parser.add_argument("--arms", default=None, help='";"-separated arms of "KEY=VALUE,..." overrides (see above)')
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a training config key (JSON value), e.g. --set n_points=5000")
    args = parser.parse_args()
    from engine.train.distill_config import DEFAULTS

    threads = DEFAULTS["threads"] if args.threads is None else args.threads
    data, cache = prepare(args)
    run_root = Path(args.work) / "runs"
    print(f"data {data}\ncache {cache}\ntorch {torch.__version__}, training on {threads} thread(s), "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start", flush=True)
    if args.arms:
        base = {"data": str(data), "cache": str(cache), "seed": 0, "threads": threads, **overrides(args.set)}
        return compare_arms(run_root, base, args.arms, args.full_epochs)
    fwd = forward_ms()
    cfg = {"data": str(data), "cache": str(cache), "seed": 0, "threads": threads, **overrides(args.set)}
    if args.full:
        t_run = train(run_root, {**cfg, "epochs": args.full_epochs})
        t_base = train(run_root, {**cfg, "epochs": args.full_epochs, "baseline": True})
    else:
        t_run = train(run_root, {**cfg, "epochs": args.epochs})
    compare = {}
    if args.compare_threads:
        for n in (1, 2, 1, 2):
            t = train(run_root, {**cfg, "epochs": args.epochs, "threads": n})
            compare.setdefault(n, []).extend(r["seconds"] for r in t["epochs"])
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end; run {t_run['run']}")
    header()
    for (b, t), ms in fwd.items():
        print(row(f"student forward, batch {b}, {t} thread(s) (per shoe)", ms, "ms",
                  TARGET_FORWARD_MS if b == 1 else None))
    epoch_rows(t_run, "distilled")
    for n, secs in compare.items():
        print(row(f"{n} thread(s): mean s/epoch over {len(secs)} epochs (alternating runs)",
                  statistics.mean(secs), "s"))
    if args.full:
        epoch_rows(t_base, "baseline")
        evaluate(t_run["run"], t_base["run"])
    return 0


def epoch_parts(epochs: list[dict]) -> dict[str, float]:
    """Mean seconds per epoch of each part (``<part>_seconds`` in the epoch records) and ``other``."""
    out = {p: statistics.mean(r.get(f"{p}_seconds", 0.0) for r in epochs) for p in PARTS}
    out["other"] = statistics.mean(r["seconds"] for r in epochs) - sum(out.values())
    return out


def compare_arms(run_root: Path, base: dict, arms: str, epochs: int) -> int:
    """Train one run per arm (``epochs`` each) and print them side by side; see the module docstring."""
    results = []
    for arm in arms.split(";"):
        extra = overrides([kv for kv in arm.split(",") if kv.strip()])
        print(f"arm {arm or '(defaults)'}: training {epochs} epochs ...", flush=True)
        t = train(run_root, {**base, "epochs": epochs, **extra})
        results.append((arm or "(defaults)", t))
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")
    cols = ["arm", "total s", "s/epoch", *PARTS, "other", "final val", "best val", "last-5 val", "time/1st",
            "last-5/1st", "verdict"]
    print(" | ".join(cols))
    def last5(t: dict) -> float:
        return statistics.mean(r["val_cd_l1"] for r in t["epochs"][-5:])

    first_total, first_val = results[0][1]["total"], last5(results[0][1])
    for name, t in results:
        parts = epoch_parts(t["epochs"])
        final = t["epochs"][-1]["val_cd_l1"]
        best = min(r["val_cd_l1"] for r in t["epochs"])
        secs = statistics.mean(r["seconds"] for r in t["epochs"])
        ratio = last5(t) / first_val
        val = "same" if abs(ratio - 1) <= ARM_VAL_TOLERANCE else ("better" if ratio < 1 else "worse")
        fast = t["total"] <= TARGET_ARM_50_EPOCHS_S * epochs / 50
        print(" | ".join([name, f"{t['total']:.1f}", f"{secs:.2f}", *(f"{parts[p]:.2f}" for p in (*PARTS, "other")),
                          f"{final:.5f}", f"{best:.5f}", f"{last5(t):.5f}", f"{t['total'] / first_total:.2f}x",
                          f"{last5(t) / first_val:.3f}",
                          ("PASS" if fast and val != "worse" else "MISS") + f" (time {'ok' if fast else 'over'}, "
                          f"val {val})"]))
    print(f"verdict: total <= {TARGET_ARM_50_EPOCHS_S:g} s per 50 epochs (scaled to {epochs}) and the last-5-epoch "
          f"mean val CD-L1 within {ARM_VAL_TOLERANCE:.0%} of the first arm's or lower (same / better / worse)")
    return 0


def evaluate(run: Path, base: Path) -> None:
    from engine.evaluate.mesh_eval import METRICS, evaluate_run

    report = evaluate_run(RunContext(None, quiet=True), run, baseline_run=base)
    print(f"\nval split: {report['val_shoes']} shoes; {report['normalisation']}")
    print(f"\n{'model':<10}" + "".join(f"{k:>20}" for k in METRICS))
    for name, m in report["summary"].items():
        if m:
            print(f"{name:<10}" + "".join(f"{m[k]:>20.5f}" for k in METRICS))
    r = report["ratios"]
    header()
    print(row("student / teacher val CD-L1", r["student_vs_teacher_cd_l1"], "x", TARGET_VS_TEACHER))
    print(row("baseline / teacher val CD-L1", r["baseline_vs_teacher_cd_l1"], "x"))
    print(row("student / baseline val CD-L1", r["student_vs_baseline_cd_l1"], "x"))


if __name__ == "__main__":
    sys.exit(main())
