"""The distillation report: did distilling pay? Student vs its GT-only baseline, with the teacher's line.

``build_report(student_run, baseline_run, evaluation)`` reads both runs' ``history.jsonl`` (val CD-L1 per
epoch) and the student run's ``evaluation.json`` (``engine.evaluate.mesh_eval.evaluate_run`` with the
baseline: student / baseline / teacher on the same val shoes, every metric with its normalisation) and
writes ``distillation.json`` and ``distillation.md`` into the student's run folder:

* ``curves``: ``{student: [[epoch, val_cd_l1], ...], baseline: [...]}`` and ``teacher_cd_l1`` (one line);
* ``reach_epoch``: the first epoch at which the student's val CD-L1 is at or below the baseline's *final*
  val CD-L1 (None if never), and ``baseline_epochs``;
* ``table``: the final means (CD-L1, CD-L2, F@1 %, F@2 %, NC) of student, baseline and teacher;
* ``verdict``: one line — ``distillation helped: -x % CD-L1 vs GT-only`` or ``did not help: +x % ...``.

Per-epoch val CD-L1 is the training loop's validation (``distill3d.validate``: 10k points per side, no
normalisation beyond the dataset's); the table is the evaluation's (each mesh normalised, 10k points,
seed 0), so the two can differ in the last digits.
"""
from __future__ import annotations

from pathlib import Path

from engine import runs, storage
from engine.config import UserError
from engine.evaluate.mesh_eval import METRICS

REPORT_JSON, REPORT_MD = "distillation.json", "distillation.md"


def val_curve(run_dir: Path) -> list[list[float]]:
    """``[[epoch, val_cd_l1], ...]`` from a run's epoch records (the last record of an epoch wins, so a
    resumed run's repeated epoch counts once)."""
    points: dict[int, float] = {}
    for r in runs.read_history(Path(run_dir)):
        if r.get("scope") == "epoch" and r.get("val_cd_l1") is not None:
            points[int(r["epoch"])] = float(r["val_cd_l1"])
    return [[e, points[e]] for e in sorted(points)]


def reach_epoch(student: list[list[float]], target: float) -> int | None:
    """First epoch whose value is <= ``target``; None when none is."""
    return next((int(e) for e, v in student if v <= target), None)


def verdict(student_cd: float, baseline_cd: float) -> str:
    """One line: the relative CD-L1 change of the student against the GT-only baseline."""
    change = (student_cd - baseline_cd) / baseline_cd
    if change < 0:
        return f"distillation helped: {100 * change:+.1f} % CD-L1 vs GT-only ({student_cd:.5f} vs {baseline_cd:.5f})"
    return (f"distillation did not help: {100 * change:+.1f} % CD-L1 vs GT-only ({student_cd:.5f} vs "
            f"{baseline_cd:.5f}); a teacher helps only where it knows more than the scans")


def build_report(student_run: Path, baseline_run: Path, evaluation: dict) -> dict:
    """The report (see the module docstring); written into ``student_run``. ``UserError`` when the
    evaluation has no baseline or a run has no validation curve."""
    student_run, baseline_run = Path(student_run), Path(baseline_run)
    summary = evaluation.get("summary") or {}
    if not summary.get("baseline"):
        raise UserError(f"{student_run.name}: the evaluation has no baseline; evaluate with --baseline first")
    curves = {"student": val_curve(student_run), "baseline": val_curve(baseline_run)}
    for name, curve in curves.items():
        if not curve:
            raise UserError(f"{name} run has no per-epoch val CD-L1 in its history (val_fraction 0?)")
    final_baseline = curves["baseline"][-1][1]
    teacher = summary.get("teacher")
    s_cd, b_cd = summary["student"]["cd_l1"], summary["baseline"]["cd_l1"]
    report = {
        "student_run": student_run.name, "baseline_run": baseline_run.name,
        "normalisation": evaluation.get("normalisation"), "val_shoes": evaluation.get("val_shoes"),
        "curves": curves, "teacher_cd_l1": teacher["cd_l1"] if teacher else None,
        "baseline_final_val_cd_l1": final_baseline, "baseline_epochs": int(curves["baseline"][-1][0]),
        "reach_epoch": reach_epoch(curves["student"], final_baseline),
        "table": {name: ({k: m[k] for k in METRICS} | {"shoes": m["shoes"]}) if m else None
                  for name, m in summary.items()},
        "student_vs_baseline_cd_l1": s_cd / b_cd,
        "teacher_vs_baseline_cd_l1": teacher["cd_l1"] / b_cd if teacher else None,
        "verdict": verdict(s_cd, b_cd),
    }
    storage.write_json(student_run / REPORT_JSON, report)
    storage.write_text(student_run / REPORT_MD, format_markdown(report))
    return report


def load_report(run_dir: Path) -> dict | None:
    return storage.read_json(Path(run_dir) / REPORT_JSON)


def _f(v, digits: int = 5) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def format_markdown(report: dict) -> str:
    """``distillation.md``: the verdict, the reach epoch and the final table."""
    rows = "".join(f"| {name} | {m['shoes']} | " + " | ".join(_f(m[k]) for k in METRICS) + " |\n"
                   for name, m in report["table"].items() if m)
    reach = report["reach_epoch"]
    reached = (f"epoch {reach} of {report['baseline_epochs']} ({100 * reach / report['baseline_epochs']:.0f} %)"
               if reach else "never")
    return (f"# Distillation report: {report['student_run']} vs {report['baseline_run']}\n\n"
            f"**{report['verdict']}**\n\n"
            f"- student reaches the baseline's final val CD-L1 ({_f(report['baseline_final_val_cd_l1'])}): {reached}\n"
            f"- teacher CD-L1 on the same val shoes: {_f(report['teacher_cd_l1'])}"
            + (f" ({report['teacher_vs_baseline_cd_l1']:.2f} x the baseline)" if report["teacher_vs_baseline_cd_l1"]
               else "") + "\n\n"
            f"| model | shoes | " + " | ".join(METRICS) + " |\n|---|---:|" + "---:|" * len(METRICS) + "\n" + rows +
            f"\nNormalisation: {report['normalisation']}.\n")


def format_summary(report: dict) -> str:
    """Plain text for the CLI."""
    lines = [report["verdict"],
             f"student reaches the baseline's final val CD-L1 at epoch {report['reach_epoch']} "
             f"of {report['baseline_epochs']}",
             f"{'MODEL':<10}{'SHOES':>6}" + "".join(f"{k:>20}" for k in METRICS)]
    for name, m in report["table"].items():
        if m:
            lines.append(f"{name:<10}{m['shoes']:>6}" + "".join(f"{_f(m[k]):>20}" for k in METRICS))
    return "\n".join(lines)
