"""Does distillation pay? Every arm in one run, same seed, printed as a table (issue 12).

    python bench/bench_distill.py [--work DIR] [--sets sample,fewscan] [--epochs-sample 50]
                                  [--epochs-few 40] [--lambda-feat 0.5] [--timing-epochs 3] [--quick] [--no-timing]
                                  [--student default|fast] [--arms baseline,points,points+feat] [--seed 0]

Finished runs and caches under ``--work`` are reused, so ``--sets sample --no-timing`` and ``--sets fewscan
--no-timing`` may train in two processes at once and a final plain run prints the whole table (the
``s / epoch`` column then comes from those runs; the epoch-time ratio from its own arm, run alone).

Two datasets, built under ``--work`` (reused between runs):

* ``sample``: the 101 built-in sample shoes (seed 0), 81 train / 20 val, ``--epochs-sample`` epochs;
* ``fewscan``: 160 shoes of seed 11 with GT for the first 40 only (``data sample --gt 40``): 20 GT train +
  120 photo-only, 20 val, ``--epochs-few`` epochs.

Arms per dataset (same student, seed, split and epochs): ``baseline`` (GT alone), ``points`` (distilled
from the learned occupancy teacher's cached points) and ``points+feat`` (plus the feature term,
``--lambda-feat``). A finished run is reused only if its checkpoint holds the same student. Printed: val
CD-L1 / F@1 % of each arm and of the teacher (``evaluate_run``: each mesh normalised, longest side 1),
arm / baseline ratios against the targets (teacher <= 0.75x, student <= 0.85x on the sample and <= 0.70x
on the few-scan set), the epoch at which each distilled arm first reaches the baseline's final val CD-L1
(target <= half the epochs), the student's parameters, its ONNX Runtime latency per shoe, the teacher's
seconds per shoe (cache build) and its pre-training time (from the weights' record), and seconds per epoch with the teacher cached against today's visual-hull distillation
(``--timing-epochs`` epochs of each, alternately; target <= 1.15x).

Issue 17 item 6 (a smaller student without losing val CD-L1, +-3 %): ``--student NAME`` trains a named size
(``STUDENT_PRESETS``) in runs of its own (``<set>-<arm>-<size>``), ``--arms`` a subset of the arms, ``--seed``
another seed (``...-s<seed>``; the seed also draws the split, so compare sizes within a seed). Any of the three
prints only the size's table: each arm's val CD-L1 beside the default student's run of the same set, arm and
seed at the set's epochs (when it exists: train it with the same ``--arms`` / ``--seed`` and no ``--student``)
and their ratio. ``--epochs-sample`` / ``--epochs-few`` other than the sets' 50 / 40 train runs of their own
(``...-e<epochs>``); the table still compares with the default's run at the set's epochs (today's recipe)
and shows the default's run at the same epochs beside it when there is one.
"""
from __future__ import annotations

import argparse
import json
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

TARGETS = {"teacher": 0.75, "sample": 0.85, "fewscan": 0.70, "epoch_time": 1.15}
SETS = {"sample": {"count": 101, "seed": 0, "gt": None, "val_fraction": 0.2, "epochs": 50},
        "fewscan": {"count": 160, "seed": 11, "gt": 40, "val_fraction": 0.5, "epochs": 40}}


def prepare(work: Path, name: str, vh: bool = False) -> tuple[Path, Path, Path, dict]:
    """(data, occupancy cache, visual-hull cache, cache timing) of one dataset, built when absent (the
    visual-hull cache only with ``vh``)."""
    from engine.cache import build_cache, read_metadata
    from engine.cli import CliProgress
    from engine.data.sample_shoes import build_sample
    from engine.teachers.base import TeacherSettings

    spec = SETS[name]
    data, occ, vh = work / "data" / name, work / "cache" / f"{name}-occupancy", work / "cache" / f"{name}-vh"
    build_sample(CliProgress(quiet=True), data, count=spec["count"], seed=spec["seed"], gt=spec["gt"])
    t0 = time.perf_counter()
    build_cache(CliProgress(quiet=True), data, occ, teacher="occupancy", settings=TeacherSettings(preset="balanced"))
    took = time.perf_counter() - t0
    if vh:
        build_cache(CliProgress(quiet=True), data, vh, teacher="visual-hull", settings=TeacherSettings(preset="balanced"))
    secs = [e["seconds"] for e in read_metadata(occ)["entries"].values() if e.get("status") == "ok"]
    return data, occ, vh, {"teacher_s_per_shoe": statistics.median(secs), "cache_wall_s": took}


def trained_student(run: Path) -> dict | None:
    """The student config a finished run trained (its ``last.pt``: a config.json may name only some
    fields, read with the defaults of its day), None without a checkpoint."""
    from engine.config import UserError
    from engine.students.checkpoint import CKPT_DIR, load_checkpoint

    try:
        return load_checkpoint(run / CKPT_DIR / "last.pt")["student_config"]
    except (UserError, OSError, KeyError):
        return None


def same_student(saved: dict | None, wanted: dict | None) -> bool:
    """Whether a run's saved student and a wanted one name one architecture; False for None."""
    from engine.train.distill_config import full_student

    return saved is not None and full_student(saved) == full_student(wanted)


def train(work: Path, run_id: str, cfg: dict) -> Path:
    """Train (or reuse a finished run of the same epochs and student) run ``run_id`` under ``work/runs``;
    returns its folder."""
    from engine.cli import recorded_run
    from engine.train.distill3d import train_student

    root = work / "runs"
    run = root / run_id
    status = (storage.read_json(run / "status.json") or {}).get("state")
    if status == "succeeded" and storage.read_json(run / "config.json", {}).get("epochs") == cfg["epochs"] and \
            same_student(trained_student(run), cfg.get("student")):
        return run
    if run.exists():
        import shutil

        shutil.rmtree(run)
    run = runs.create_run("train3d", cfg, root=root, run_id=run_id)
    t0 = time.perf_counter()
    recorded_run(RunContext(run, quiet=True), train_student, cfg)
    print(f"  trained {run_id}: {time.perf_counter() - t0:.0f} s", flush=True)
    return run


def epoch_seconds(run: Path) -> float:
    recs = [r for r in runs.read_history(run) if r.get("scope") == "epoch"]
    return statistics.median(r["seconds"] for r in recs[1:] or recs)


def onnx_latency(run: Path) -> float:
    """ORT FP32 ms per shoe at batch 1, 2 threads (engine.export's own latency table)."""
    from engine.export.mesh_student import export_student

    out = export_student(None, run, int8=False, threads=2)
    ort = [r for r in out["latency_rows"] if r["runtime"] != "torch eager" and r["batch"] == 1]
    return float(ort[0]["ms_per_shoe"]) if ort else float("nan")


ARMS = ("baseline", "points", "points+feat")
RUN_NAMES = {"baseline": "baseline", "points": "points", "points+feat": "feat"}


def run_id(name: str, arm: str, student: str = "default", seed: int = 0, epochs: int | None = None) -> str:
    """``<set>-<arm>`` for the default student, the set's epochs and seed 0; ``-<size>`` for another size,
    ``-e<epochs>`` for other epochs, ``-s<seed>`` for another seed."""
    other = epochs is not None and epochs != SETS[name]["epochs"]
    return f"{name}-{RUN_NAMES[arm]}" + ("" if student == "default" else f"-{student}") + \
        (f"-e{epochs}" if other else "") + (f"-s{seed}" if seed else "")


def run_set(work: Path, name: str, epochs: int, lambda_feat: float, student: str = "default",
            arms: tuple[str, ...] = ARMS, seed: int = 0) -> dict:
    from engine.evaluate.distill_report import build_report
    from engine.evaluate.mesh_eval import evaluate_run
    from engine.train.distill_config import student_preset

    data, occ, _vh, timing = prepare(work, name)
    base = {"data": str(data), "epochs": epochs, "seed": seed, "val_fraction": SETS[name]["val_fraction"],
            "student": student_preset(student)}
    extra = {"baseline": {"baseline": True}, "points": {"cache": str(occ)},
             "points+feat": {"cache": str(occ), "lambda_feat": lambda_feat}}
    runs_ = {arm: train(work, run_id(name, arm, student, seed, epochs), {**base, **extra[arm]}) for arm in arms}
    out = {"timing": timing, "arms": {}, "epochs": epochs, "student": student, "seed": seed}
    base_run = runs_.get("baseline")
    for arm in (a for a in arms if a != "baseline"):
        ev = evaluate_run(None, runs_[arm], baseline_run=base_run)
        summary = ev["summary"]
        out["arms"][arm] = {"cd_l1": summary["student"]["cd_l1"], "f1": summary["student"]["fscore@1%"],
                            "reach": None, "seconds_per_epoch": epoch_seconds(runs_[arm])}
        out["teacher"] = {"cd_l1": summary["teacher"]["cd_l1"], "f1": summary["teacher"]["fscore@1%"]}
        if base_run is not None:
            rep = build_report(runs_[arm], base_run, ev)
            out["arms"][arm]["reach"] = rep["reach_epoch"]
            out["arms"]["baseline"] = {"cd_l1": summary["baseline"]["cd_l1"], "f1": summary["baseline"]["fscore@1%"],
                                       "reach": None, "seconds_per_epoch": epoch_seconds(base_run)}
            out["verdict_" + arm] = rep["verdict"]
    out["runs"] = {k: v.name for k, v in runs_.items()}
    return out


def default_cd_l1(work: Path, name: str, arm: str, seed: int = 0, epochs: int | None = None) -> float | None:
    """The default student's val CD-L1 for ``arm`` on set ``name`` with ``seed`` and ``epochs`` (default: the
    set's; its finished run's ``evaluation.json``, best checkpoint), None without one (or when that run
    trained another student)."""
    run = work / "runs" / run_id(name, arm, seed=seed, epochs=epochs)
    if not same_student(trained_student(run), {}):
        return None
    ev = storage.read_json(run / "evaluation.json") or {}
    return ((ev.get("summary") or {}).get("student") or {}).get("cd_l1")


def size_table(work: Path, results: dict, student: str) -> list[str]:
    """Lines of the table of a size's arms beside the default student's run of the same set, arm and seed
    at the set's epochs (today's recipe): val CD-L1 of both, their ratio and issue 17's bar (within +3 %);
    and, when the size trained other epochs and the default has a run of those too, the default's figure
    there (the same recipe for both)."""
    lines = [f"| set | arm | epochs | val CD-L1, {student} | F@1 % | default, the set's epochs | {student} / default | "
             "within 3 % | default, same epochs |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        for arm, a in r["arms"].items():
            ref = default_cd_l1(work, name, arm, r["seed"]) if student != "default" else None
            if ref:
                ratio, bar = f"{a['cd_l1'] / ref:.3f}", "PASS" if a["cd_l1"] / ref <= 1.03 else "MISS"
            else:
                ratio, bar = "-", "-" if student == "default" else f"- (train the default: --arms {arm})"
            same = default_cd_l1(work, name, arm, r["seed"], r["epochs"]) \
                if student != "default" and r["epochs"] != SETS[name]["epochs"] else None
            lines.append(f"| {name} | {arm} | {r['epochs']} (default {SETS[name]['epochs']}) | {a['cd_l1']:.5f} | "
                         f"{a['f1']:.3f} | {f'{ref:.5f}' if ref else '-'} | {ratio} | {bar} | "
                         f"{f'{same:.5f}' if same else '-'} |")
    return lines


def epoch_time_ratio(work: Path, epochs: int, lambda_feat: float) -> tuple[float, float]:
    """Seconds per epoch on the sample: visual-hull distillation (today) vs occupancy points + features,
    ``epochs`` epochs each, run alternately twice; medians."""
    data, occ, vh, _ = prepare(work, "sample", vh=True)
    base = {"data": str(data), "epochs": epochs, "seed": 0, "val_fraction": 0.2}
    today, new = [], []
    for k in range(2):
        today.append(epoch_seconds(train(work, f"timing-vh-{k}", {**base, "cache": str(vh)})))
        new.append(epoch_seconds(train(work, f"timing-feat-{k}", {**base, "cache": str(occ), "lambda_feat": lambda_feat})))
    return statistics.median(today), statistics.median(new)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "ds-bench-distill"))
    p.add_argument("--sets", default="sample,fewscan")
    p.add_argument("--epochs-sample", type=int, default=SETS["sample"]["epochs"], help="epochs on the sample "
                   "(other than the set's own train runs of their own, <set>-<arm>[-<size>]-e<epochs>[-s<seed>])")
    p.add_argument("--epochs-few", type=int, default=SETS["fewscan"]["epochs"], help="epochs on the few-scan set")
    p.add_argument("--lambda-feat", type=float, default=0.5)
    p.add_argument("--timing-epochs", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="4 epochs per arm (a smoke run, not the figures)")
    p.add_argument("--student", default="default", help="student size (engine.train.distill_config.STUDENT_PRESETS)")
    p.add_argument("--arms", default=",".join(ARMS), help="arms to train, from " + ", ".join(ARMS))
    p.add_argument("--seed", type=int, default=0, help="training seed (model init, split, order); another than 0 "
                   "trains runs of its own (<set>-<arm>[-<size>]-s<seed>) and prints a size's table only")
    p.add_argument("--no-timing", action="store_true", help="skip the epoch-time comparison and the ONNX latency "
                   "(to train the sets in two processes at once; a later full run reuses their finished runs)")
    args = p.parse_args()
    from engine.train.distill_config import STUDENT_PRESETS

    arms = tuple(a.strip() for a in args.arms.split(",") if a.strip())
    if args.student not in STUDENT_PRESETS or not arms or set(arms) - set(ARMS):
        p.error(f"--student is one of {', '.join(STUDENT_PRESETS)}; --arms a subset of {', '.join(ARMS)}")
    torch.set_num_threads(1)
    work = Path(args.work)
    from engine.students.mesh_student import MeshStudent, count_parameters
    from engine.teachers.occupancy import load_weights, weights_path

    _model, ckpt = load_weights(weights_path())
    rec = ckpt["record"]
    print(f"load {os.getloadavg()[0]:.2f}; teacher {weights_path().name}: pre-trained {rec['seconds'] / 60:.0f} min "
          f"on {rec['train_shoes']} corpus shoes, {rec['epochs']} epochs; held-out corpus CD-L1 {rec['val_cd_l1']:.5f}")
    results = {}
    for name in args.sets.split(","):
        epochs = 4 if args.quick else (args.epochs_sample if name == "sample" else args.epochs_few)
        print(f"== {name}: {epochs} epochs per arm", flush=True)
        results[name] = run_set(work, name, epochs, args.lambda_feat, args.student, arms, args.seed)
    if args.student != "default" or set(arms) != set(ARMS) or args.seed:  # a size's (or a subset's) figures, no timing
        print("\n".join(["", *size_table(work, results, args.student)]))
        out = work / f"bench_distill-{args.student}-s{args.seed}.json"
        storage.write_json(out, {"results": results})
        print(f"load {os.getloadavg()[0]:.2f}; figures in {out}")
        return 0
    if args.no_timing:
        print(json.dumps(results, indent=1))
        return 0
    today, new = epoch_time_ratio(work, args.timing_epochs, args.lambda_feat)
    latency = onnx_latency(work / "runs" / results[next(iter(results))]["runs"]["points+feat"])
    print()
    print("| set | arm | val CD-L1 | F@1 % | / baseline | target | reaches baseline's final at epoch | s / epoch |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        b = r["arms"]["baseline"]["cd_l1"]
        t = r["teacher"]["cd_l1"] / b
        print(f"| {name} | teacher (occupancy) | {r['teacher']['cd_l1']:.5f} | {r['teacher']['f1']:.3f} | {t:.2f} | "
              f"<= {TARGETS['teacher']} {'PASS' if t <= TARGETS['teacher'] else 'MISS'} | - | - |")
        for arm in ("baseline", "points", "points+feat"):
            a = r["arms"][arm]
            ratio = a["cd_l1"] / b
            target = "" if arm == "baseline" else \
                f"<= {TARGETS[name]} {'PASS' if ratio <= TARGETS[name] else 'MISS'}"
            reach = "-" if arm == "baseline" else \
                (f"{a['reach']} of {r['epochs']} {'PASS' if a['reach'] and a['reach'] <= r['epochs'] / 2 else 'MISS'}"
                 if a["reach"] else f"never (MISS)")
            print(f"| {name} | {arm} | {a['cd_l1']:.5f} | {a['f1']:.3f} | {ratio:.2f} | {target} | {reach} | "
                  f"{a['seconds_per_epoch']:.1f} |")
        print(f"| {name} | teacher seconds per shoe (occupancy, balanced) | {r['timing']['teacher_s_per_shoe']:.2f} | | | | | |")
    params = count_parameters(MeshStudent())
    print(f"\nstudent: {params:,} parameters (<= 300,000 {'PASS' if params <= 300_000 else 'MISS'}); "
          f"ONNX Runtime FP32 {latency:.2f} ms per shoe (<= 7 {'PASS' if latency <= 7 else 'MISS'})")
    print(f"seconds per epoch, sample, teacher cached: visual hull (today) {today:.2f}, occupancy points + features "
          f"{new:.2f} = {new / today:.2f}x (<= {TARGETS['epoch_time']} {'PASS' if new / today <= TARGETS['epoch_time'] else 'MISS'})")
    for name, r in results.items():
        for arm in ("points", "points+feat"):
            print(f"{name} {arm}: {r['verdict_' + arm]}")
    storage.write_json(work / "bench_distill.json", {"results": results, "epoch_seconds": [today, new],
                                                     "latency_ms": latency, "parameters": params})
    print(f"load {os.getloadavg()[0]:.2f}; figures in {work / 'bench_distill.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
