"""Evaluate a 3D training run on its validation split: student, baseline and teacher vs ground truth.

Every number comes from ``engine.geometry.metrics.mesh_metrics(pred_verts, pred_faces, gt_verts,
gt_faces, n_points=10000, seed=0, normalise=True)``. **Normalisation**: each mesh is centred on its
bounding-box centre and scaled so its longest side is 1 before comparison; CD-L1 is in those units,
CD-L2 in squared units, F@1 % / F@2 % use thresholds of 0.01 / 0.02 of the longest side, normal
consistency is the mean |cos| between nearest-neighbour normals (1 = perfect).

    student   the run's checkpoint (``best`` by default) on each val shoe's views
    baseline  the best checkpoint of a baseline run (``baseline: true``) with the same val split
    teacher   the cached teacher mesh (shoes whose cache entry is usable — ``engine.cache.usable_entry``,
              the rule training applies: ok, not stale, file present; others are left out)

``evaluate_run`` writes ``evaluation.json`` (means, ratios, per-shoe rows sorted worst student CD-L1
first) and ``evaluation.md`` (the same as tables) into the run folder and returns the report.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from engine import storage
from engine.config import UserError
from engine.geometry.metrics import EVAL_POINTS as N_POINTS  # the evaluation's settings (compare quotes them)
from engine.geometry.metrics import EVAL_SEED as SEED
from engine.geometry.metrics import NORMALISATION
from engine.progress import NULL_CONTEXT

METRICS = ("cd_l1", "cd_l2", "fscore@1%", "fscore@2%", "normal_consistency")


def predict(model, views: torch.Tensor) -> torch.Tensor:
    """Student vertices (V, 3) for one shoe's uint8 views (4, 4, S, S)."""
    from engine.data.views import batch_views

    with torch.no_grad():
        return model(batch_views(views[None]))[0]


def _means(rows: list[dict], model: str, ids: set[str] | None = None) -> dict | None:
    vals = [r[model] for r in rows if r.get(model) and (ids is None or r["id"] in ids)]
    if not vals:
        return None
    return {"shoes": len(vals), **{k: sum(v[k] for v in vals) / len(vals) for k in METRICS}}


def evaluate_run(ctx, run_dir: Path, baseline_run: Path | None = None, checkpoint: str = "best") -> dict:
    """Evaluate ``run_dir`` (and ``baseline_run``) on the run's val split; see the module docstring.
    Both runs open through ``engine.students.trained_run.open_run``.

    ``UserError`` when a checkpoint is missing or of the wrong kind, the run has no val shoes, the
    baseline run is not a baseline or has another val split, or a val shoe's data is gone.
    """
    from engine.data.layout import load_mesh
    from engine.students.trained_run import open_run
    from engine.geometry.metrics import mesh_metrics

    ctx = ctx or NULL_CONTEXT
    run_dir = Path(run_dir)
    t0 = time.perf_counter()
    run = open_run(run_dir, checkpoint)
    val_ids = run.val_ids
    if not val_ids:
        raise UserError(f"{run_dir.name}: the run has no validation shoes to evaluate (val_fraction 0?)")
    models = {"student": run.student}
    if baseline_run is not None:
        base = open_run(Path(baseline_run), "best")
        if not base.config.get("baseline"):
            raise UserError(f"{Path(baseline_run).name}: not a baseline run (train it with --baseline)")
        if base.val_ids != val_ids:
            raise UserError(f"{Path(baseline_run).name}: its validation split differs from {run_dir.name}'s "
                            "(use the same data, seed and val_fraction)")
        models["baseline"] = base.student
    rows = []
    for i, sid in enumerate(val_ids):
        ctx.check_cancelled()
        shoe = run.shoe(sid)
        if not shoe.has_gt:
            raise UserError(f"val shoe {sid}: its GT mesh {sid}.obj is gone")
        gv, gf = load_mesh(shoe.obj_path)
        row = {"id": sid}
        for name, model in models.items():
            views = run.views(shoe, model.config.image_size)
            row[name] = mesh_metrics(predict(model, views), model.faces, gv, gf, n_points=N_POINTS, seed=SEED)
        data, _ = run.teacher(shoe)
        if data is not None:
            row["teacher"] = mesh_metrics(data["vertices"], data["faces"], gv, gf, n_points=N_POINTS, seed=SEED)
        rows.append(row)
        ctx.progress((i + 1) / len(val_ids), f"evaluating {sid} ({i + 1}/{len(val_ids)})")
    rows.sort(key=lambda r: r["student"]["cd_l1"], reverse=True)
    summary = {name: _means(rows, name) for name in ("student", "baseline", "teacher")}
    with_teacher = {r["id"] for r in rows if r.get("teacher")}
    ratios = {}
    if with_teacher:
        s_t = _means(rows, "student", with_teacher)
        ratios["student_vs_teacher_cd_l1"] = s_t["cd_l1"] / summary["teacher"]["cd_l1"]
        if "baseline" in models:
            ratios["baseline_vs_teacher_cd_l1"] = _means(rows, "baseline", with_teacher)["cd_l1"] / summary["teacher"]["cd_l1"]
    if "baseline" in models:
        ratios["student_vs_baseline_cd_l1"] = summary["student"]["cd_l1"] / summary["baseline"]["cd_l1"]
    report = {"run": run_dir.name, "checkpoint": checkpoint, "epoch": run.ckpt["epoch"],
              "baseline_run": Path(baseline_run).name if baseline_run is not None else None,
              "normalisation": NORMALISATION, "val_shoes": len(val_ids), "teacher_shoes": len(with_teacher),
              "summary": summary, "ratios": ratios, "rows": rows,
              "seconds": round(time.perf_counter() - t0, 3), "created": time.time()}
    storage.write_json(run_dir / "evaluation.json", report)
    storage.write_text(run_dir / "evaluation.md", format_markdown(report))
    # one line for the job log: the table itself is the caller's to show (the CLI prints it once)
    ctx.log(f"evaluated {len(val_ids)} val shoes of {run_dir.name}: "
            + ", ".join(f"{m} CD-L1 {summary[m]['cd_l1']:.5f}" for m in models if summary.get(m)))
    return report


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.5f}"


def format_summary(report: dict) -> str:
    """Plain-text table of the mean metrics (what the CLI prints)."""
    lines = [f"evaluation of {report['run']} ({report['checkpoint']}, epoch {report['epoch']}) on "
             f"{report['val_shoes']} val shoes; {report['normalisation']}",
             f"{'MODEL':<10}{'SHOES':>6}" + "".join(f"{k:>20}" for k in METRICS)]
    for name, m in report["summary"].items():
        if m:
            lines.append(f"{name:<10}{m['shoes']:>6}" + "".join(f"{_fmt(m[k]):>20}" for k in METRICS))
    for k, v in report["ratios"].items():
        lines.append(f"{k}: {v:.3f}")
    return "\n".join(lines)


def format_markdown(report: dict) -> str:
    """``evaluation.md``: means, ratios and per-shoe rows (worst student CD-L1 first)."""
    head = "| model | shoes | " + " | ".join(METRICS) + " |\n|---|---:|" + "---:|" * len(METRICS) + "\n"
    body = "".join(f"| {name} | {m['shoes']} | " + " | ".join(_fmt(m[k]) for k in METRICS) + " |\n"
                   for name, m in report["summary"].items() if m)
    ratios = "".join(f"- {k}: {v:.3f}\n" for k, v in report["ratios"].items())
    models = [n for n, m in report["summary"].items() if m]
    per = "| shoe | " + " | ".join(f"{n} CD-L1 | {n} F@1%" for n in models) + " |\n|---|" + "---:|---:|" * len(models) + "\n"
    for r in report["rows"]:
        per += f"| {r['id']} | " + " | ".join(
            f"{_fmt(r[n]['cd_l1'])} | {_fmt(r[n]['fscore@1%'])}" if r.get(n) else "- | -" for n in models) + " |\n"
    return (f"# Evaluation of {report['run']}\n\nCheckpoint `{report['checkpoint']}` (epoch {report['epoch']}), "
            f"{report['val_shoes']} validation shoes"
            + (f", baseline run `{report['baseline_run']}`" if report["baseline_run"] else "") + ".\n\n"
            f"Normalisation: {report['normalisation']}.\n\n## Means\n\n{head}{body}\n"
            + (f"## Ratios\n\n{ratios}\n" if ratios else "") + f"## Per shoe (worst student first)\n\n{per}")
