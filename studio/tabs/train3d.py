"""Train 3D tab: distil the cached teacher into the mesh student, watch the losses live, compare with a
GT-only baseline trained with the same student, seed and epochs (``engine.workflows.distill_with_baseline``:
one job trains both, evaluates and writes the distillation report the tab then shows)."""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from engine import runs
from engine.config import UserError, validate_id
from engine.data import layout
from engine.evaluate.distill_report import format_markdown as report_markdown
from engine.evaluate.distill_report import load_report, val_curve
from engine.evaluate.mesh_eval import evaluate_run, format_markdown
from engine.train.distill3d import train_student
from engine.train.distill_config import STUDENT_PRESETS, size_epochs, student_preset
from engine.workflows import PAIR, distill_with_baseline
from engine.train.schedules import SCHEDULE_NAMES, SCHEDULES
from engine.cache import list_caches
from studio.components import error_text, is_finished, job_state, progress_html, run_choices, run_dropdown
from studio.context import Studio
from studio.plots import Panel, distillation_figure, panels_figure

KIND = "train3d"
STEP_KEYS = ["loss", "cd_teacher", "cd_gt", "edge", "smooth", "feat"]


def figures(studio: Studio, run_id: str | None):
    """(loss figure per step, val CD-L1 and α per epoch on separate panels) from the run's history.jsonl."""
    hist = []
    if run_id:
        try:
            hist = runs.read_history(runs.run_dir(run_id, studio.runs_root))
        except UserError:
            hist = []
    steps = [r for r in hist if r.get("scope") == "step" and not r.get("skipped")]
    epochs = [r for r in hist if r.get("scope") == "epoch"]
    return (panels_figure([Panel("loss terms", steps, STEP_KEYS, "global_step")], title="training losses per step"),
            panels_figure([Panel("val CD-L1", epochs, ["val_cd_l1"], "epoch"), Panel("α", epochs, ["alpha"], "epoch")],
                          title="val CD-L1 and α per epoch", empty="no epochs yet"))


def pair_figure(studio: Studio, run_id: str | None):
    """Val CD-L1 per epoch of the student and (when the run has one) its baseline, the teacher's line."""
    if not run_id:
        return distillation_figure({}, None)
    try:
        run = runs.run_dir(run_id, studio.runs_root)
        curves = {"student": val_curve(run)}
        pair = (runs.load_run(run_id, studio.runs_root).get("config") or {}).get("with_baseline")
        if pair:
            from engine import storage

            base = (storage.read_json(run / PAIR) or {}).get("baseline_run")
            if base:
                curves["baseline"] = val_curve(runs.run_dir(base, studio.runs_root))
        report = load_report(run) or {}
    except UserError:
        return distillation_figure({}, None)
    return distillation_figure(curves, report.get("teacher_cd_l1"))


def missing_rows(studio: Studio, run_id: str, run: dict, evaluation: dict | None) -> list[str]:
    """One line per row of the student / baseline / teacher table that is missing, with why and what to do."""
    cfg, state = run["config"], run["status"].get("state")
    summary = (evaluation or {}).get("summary") or {}
    notes = []
    if not evaluation:
        if state in runs.ACTIVE_STATES:  # the job is still on it: nothing is missing yet
            return [f"no table yet: {run_id} is {state}"]
        if state in ("cancelled", "failed", "interrupted"):
            notes.append(f"no table: {run_id} {state} before its evaluation — **Resume** it (training continues from "
                         f"its last epoch{', then the baseline' if cfg.get('with_baseline') else ''})")
        else:
            notes.append("no table yet: **Evaluate** scores the run against the teacher and the ground truth")
    if cfg.get("baseline"):
        notes.append("this run is a GT-only baseline itself (no teacher in its loss)")
    elif not summary.get("baseline"):
        if cfg.get("with_baseline"):
            from engine import storage

            base = (storage.read_json(runs.run_dir(run_id, studio.runs_root) / PAIR) or {}).get("baseline_run")
            why = ""
            if base:
                try:
                    st = runs.load_run(base, studio.runs_root, studio.runner.live_ids())["status"]
                    why = f" ({base}: {st.get('state')}, {st.get('message', '')})"
                except UserError:
                    why = f" ({base} is gone)"
            notes.append(f"baseline row missing: the GT-only baseline is not trained yet{why} — **Resume** {run_id} "
                         "trains it and adds the row")
        else:
            notes.append("baseline row missing: the run was started without *also train the baseline (GT only)*; "
                         "tick it and **Start** to see whether distilling pays")
    if evaluation and not summary.get("teacher"):
        where = f" `{Path(cfg['cache']).name}`" if cfg.get("cache") else ""
        notes.append(f"teacher row missing: none of the {evaluation.get('val_shoes')} val shoes has a usable entry in "
                     f"the teacher cache{where} (missing, failed, or stale after the photos or settings changed) — "
                     "rebuild it in **Cache**" if cfg.get("cache") else "teacher row missing: the run has no teacher cache")
    elif evaluation and evaluation.get("teacher_shoes", 0) < evaluation.get("val_shoes", 0):
        notes.append(f"teacher row: scored on {evaluation['teacher_shoes']} of {evaluation['val_shoes']} val shoes "
                     "(the others have no usable cache entry)")
    return notes


def comparison_md(studio: Studio, run_id: str | None) -> str:
    """What the table under the plots shows for a run: its distillation report (student vs baseline vs
    teacher) or, without one, its evaluation (student vs teacher), then a line for each missing row."""
    if not run_id:
        return ""
    from engine import storage

    try:
        run = runs.load_run(run_id, studio.runs_root, studio.runner.live_ids())
        path = runs.run_dir(run_id, studio.runs_root)
        report, evaluation = load_report(path), storage.read_json(path / "evaluation.json")
    except UserError as exc:
        return error_text(exc)
    body = report_markdown(report) if report else (format_markdown(evaluation) if evaluation else "")
    notes = missing_rows(studio, run_id, run, evaluation)
    return body + ("\n\n" + "\n".join(f"> {n}  " for n in notes) if notes else "")


def make_config(studio: Studio, ds, cache_name, schedule, a0, a1, epochs, lr, batch, l_edge, l_smooth, width,
                seed, l_feat=0.0, photo_views=0, size="default") -> dict:
    """The training config of the form; ``width`` 0 (or empty) keeps the student size's own width."""
    student = student_preset(size or "default")
    if width:
        student["width"] = int(width)
    cfg = {"data": str(studio.dataset_path(ds)), "epochs": int(epochs), "lr": float(lr), "batch_size": int(batch),
           "seed": int(seed), "schedule": schedule, "lambda_edge": float(l_edge), "lambda_smooth": float(l_smooth),
           "lambda_feat": float(l_feat or 0.0), "student": student, "photo_views": int(photo_views or 0)}
    if cache_name:
        cfg["cache"] = str(studio.cache_root / validate_id(cache_name, "cache name"))
    if schedule == "custom":
        cfg["alpha_start"], cfg["alpha_end"] = float(a0), float(a1)
    return cfg


def epochs_for_size(size: str, epochs) -> int:
    """The epochs field after the student size changed to ``size``: that size's own epochs
    (``size_epochs``: fast trains twice the default's) while the field holds some size's own figure or
    nothing; a figure the user typed stays."""
    own = {size_epochs(name) for name in STUDENT_PRESETS}
    return size_epochs(size or "default") if not epochs or int(epochs) in own else int(epochs)


def build(studio: Studio) -> None:
    gr.Markdown("Loss = α·Chamfer(student, teacher) + (1−α)·Chamfer(student, GT) + λ_edge·edge + λ_smooth·Laplacian, "
                "α linear from start to end over the epochs (" +
                ", ".join(f"{k} {a:.2f}→{b:.2f}" for k, (a, b) in SCHEDULES.items()) +
                ") + λ_feat·MSE(projector(student features), teacher features) when the cache holds the "
                "teacher's features (the occupancy teacher's). Photo-only shoes (no scan) learn through the teacher "
                "alone. With the baseline, one job trains the student, then the same student on GT alone, evaluates "
                "both and reports whether distilling paid.")
    with gr.Row():
        dataset = gr.Dropdown(choices=layout.list_datasets(studio.data_root), label="Dataset", allow_custom_value=True,
                              elem_id="train-dataset")
        cache = gr.Dropdown(choices=list_caches(studio.cache_root), label="Teacher cache", allow_custom_value=True,
                            elem_id="train-cache")
        schedule = gr.Radio(list(SCHEDULE_NAMES), value="default", label="α schedule")
        a0 = gr.Number(value=0.9, label="α start (custom)")
        a1 = gr.Number(value=0.3, label="α end (custom)")
    with gr.Row():
        epochs = gr.Number(value=50, precision=0, minimum=1, label="epochs", elem_id="train-epochs")
        lr = gr.Number(value=1e-3, label="learning rate")
        batch = gr.Number(value=4, precision=0, minimum=1, label="batch size")
        l_edge = gr.Number(value=2.0, label="λ edge")
        l_smooth = gr.Number(value=1.0, label="λ smooth")
        size = gr.Dropdown(choices=list(STUDENT_PRESETS), value="default", elem_id="train-student-size",
                           label="student size (fast: half the time per shoe; it trains twice the epochs "
                                 "to keep the default's quality, see README)")
        width = gr.Number(value=0, precision=0, minimum=0, label="student width", info="0: the student size's own")
        seed = gr.Number(value=0, precision=0, label="seed")
        baseline = gr.Checkbox(value=True, label="also train the baseline (GT only)")
        l_feat = gr.Number(value=0.0, minimum=0, label="λ feat (feature distillation)", elem_id="train-lambda-feat")
        photo_views = gr.Number(value=0, precision=0, minimum=0, elem_id="train-photo-views",
                                label="photo-style views per shoe (for students run on phone photos; ~4 s per shoe each)")
    with gr.Row():
        start = gr.Button("Start", variant="primary", elem_id="train-start")
        stop = gr.Button("Stop", variant="stop", elem_id="train-stop")
    with gr.Row():
        resume_pick = run_dropdown(studio, "train-run", label="Run to resume / show", kind=KIND, finished=False,
                                   scale=4, min_width=420)
        resume = gr.Button("Resume", scale=1, elem_id="train-resume")
        evaluate = gr.Button("Evaluate", scale=1)
    progress = gr.HTML(elem_id="train-progress")
    with gr.Row():
        loss_plot = gr.Plot(label="Losses", elem_id="train-loss-plot")
        epoch_plot = gr.Plot(label="Validation and α", elem_id="train-epoch-plot")
    pair_plot = gr.Plot(label="Distillation: student vs GT-only baseline", elem_id="train-pair-plot")
    table = gr.Markdown(elem_id="train-comparison")
    # {"id": job id, "what": "train" | "pair" (student + baseline) | "evaluate", "run": the run it trains or evaluates}
    job = gr.State(None)
    timer = gr.Timer(2.0, active=False)

    def start_training(ds, cache_name, sch, s0, s1, ep, rate, bs, le, ls, w, sd, with_baseline, lf=0.0, pv=0,
                       size="default"):
        try:
            cfg = make_config(studio, ds, cache_name, sch, s0, s1, ep, rate, bs, le, ls, w, sd, lf, pv, size)
            if with_baseline:
                main = studio.runner.submit(distill_with_baseline, kind=KIND, config={**cfg, "with_baseline": True})
            else:
                main = studio.runner.submit(train_student, kind=KIND, config=cfg)
        except (UserError, ValueError, TypeError) as exc:
            return None, error_text(exc), gr.Timer(active=False), gr.update(), gr.update()
        state = job_state(main, "pair" if with_baseline else "train", run=main)
        return state, progress_html(studio.runner.get(main)), gr.Timer(active=True), \
            gr.update(choices=run_choices(studio, KIND, finished=False), value=main), ""

    def resume_run(run_id):
        try:
            run = runs.load_run(run_id, studio.runs_root, studio.runner.live_ids())
            if run["status"].get("state") in runs.ACTIVE_STATES:
                raise UserError(f"{run_id} is still {run['status']['state']}")
            cfg = {k: v for k, v in run["config"].items() if k != "kind"}
            pair = bool(cfg.get("with_baseline"))  # a pair resumes both runs, never the student alone
            job_id = studio.runner.submit(distill_with_baseline if pair else train_student, kind=KIND,
                                          existing_run=runs.run_dir(run_id, studio.runs_root),
                                          config={**cfg, "resume": True})
        except (UserError, ValueError, TypeError) as exc:
            return None, error_text(exc), gr.Timer(active=False), gr.update()
        state = job_state(job_id, "pair" if pair else "train", run=job_id)
        return state, progress_html(studio.runner.get(job_id)), gr.Timer(active=True), ""

    def start_eval(state, run_id):
        run_id = run_id or (state or {}).get("run")  # the run picked in the dropdown, else the one just trained
        try:
            job_id = studio.runner.submit(evaluate_run, kind="evaluate", with_run=False,
                                          run_dir=runs.run_dir(run_id, studio.runs_root))
        except (UserError, ValueError, TypeError) as exc:
            return state, error_text(exc), gr.Timer(active=False)
        return job_state(job_id, "evaluate", run=run_id), progress_html(studio.runner.get(job_id)), \
            gr.Timer(active=True)

    def plots(run_id):
        return dict(zip((loss_plot, epoch_plot, pair_plot), (*figures(studio, run_id), pair_figure(studio, run_id))))

    def show(run_id):  # a run picked: its plots and its table (never the previous run's)
        return {**plots(run_id), table: comparison_md(studio, run_id)}

    def poll(state, shown):
        if not state:
            return {**show(shown), timer: gr.Timer(active=False)}
        snap = studio.runner.get(state["id"])  # the job: training (one run or the pair) or an evaluation
        out = {**plots(state["run"]), progress: progress_html(snap)}
        if snap and not is_finished(snap):
            return out
        done = bool(snap) and snap["state"] == "succeeded"
        if done and state["what"] == "train":  # a single run: evaluate it vs teacher and GT
            nxt, bar, _ = start_eval(state, state["run"])
            return {**out, job: nxt, progress: bar}
        out.update({job: None, timer: gr.Timer(active=False)})
        out[table] = comparison_md(studio, state["run"])  # report / evaluation, and what is missing and why
        return out

    def do_stop(state):
        for job_id in dict.fromkeys((state["run"], state["id"]) if state else ()):  # an evaluation: both
            studio.runner.cancel(job_id)
        return progress_html(studio.runner.get(state["run"]) if state else None, idle="nothing running")

    form = [dataset, cache, schedule, a0, a1, epochs, lr, batch, l_edge, l_smooth, width, seed, baseline, l_feat, photo_views,
            size]
    start.click(start_training, inputs=form, outputs=[job, progress, timer, resume_pick, table], api_name="train_start")
    resume.click(resume_run, inputs=[resume_pick], outputs=[job, progress, timer, table], api_name="train_resume")
    evaluate.click(start_eval, inputs=[job, resume_pick], outputs=[job, progress, timer], api_name="train_evaluate")
    stop.click(do_stop, inputs=[job], outputs=[progress], api_name="train_stop")
    size.change(epochs_for_size, inputs=[size, epochs], outputs=[epochs])
    resume_pick.change(show, inputs=[resume_pick], outputs=[loss_plot, epoch_plot, pair_plot, table])
    timer.tick(poll, inputs=[job, resume_pick], outputs=[job, progress, loss_plot, epoch_plot, pair_plot, table, timer],
               show_progress="hidden", api_name="train_poll")
