"""Train 3D tab: distil the cached teacher into the mesh student, watch the losses live, compare with a
GT-only baseline trained with the same student, seed and epochs (``engine.workflows.distill_with_baseline``:
one job trains both, evaluates and writes the distillation report the tab then shows)."""
from __future__ import annotations

import gradio as gr

from engine import runs
from engine.config import UserError, validate_id
from engine.data import layout
from engine.evaluate.distill_report import format_markdown as report_markdown
from engine.evaluate.distill_report import load_report, val_curve
from engine.evaluate.mesh_eval import evaluate_run, format_markdown
from engine.train.distill3d import train_student
from engine.workflows import PAIR, distill_with_baseline
from engine.train.schedules import SCHEDULE_NAMES, SCHEDULES
from engine.cache import list_caches
from studio.components import error_text, is_finished, job_state, progress_html, run_ids
from studio.context import Studio
from studio.plots import distillation_figure, history_figure

KIND = "train3d"
STEP_KEYS = ["loss", "cd_teacher", "cd_gt", "edge", "smooth", "feat"]
EPOCH_KEYS = ["alpha", "val_cd_l1"]


def train_runs(studio: Studio) -> list[str]:
    return run_ids(studio, KIND)


def figures(studio: Studio, run_id: str | None):
    """(loss figure per step, alpha + val CD-L1 figure per epoch) from the run's history.jsonl."""
    hist = []
    if run_id:
        try:
            hist = runs.read_history(runs.run_dir(run_id, studio.runs_root))
        except UserError:
            hist = []
    steps = [r for r in hist if r.get("scope") == "step" and not r.get("skipped")]
    epochs = [r for r in hist if r.get("scope") == "epoch"]
    return (history_figure(steps, STEP_KEYS, title="training losses per step", x_key="global_step"),
            history_figure(epochs, EPOCH_KEYS, title="α and val CD-L1 per epoch", x_key="epoch"))


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


def make_config(studio: Studio, ds, cache_name, schedule, a0, a1, epochs, lr, batch, l_edge, l_smooth, width,
                seed, l_feat=0.0) -> dict:
    cfg = {"data": str(studio.dataset_path(ds)), "epochs": int(epochs), "lr": float(lr), "batch_size": int(batch),
           "seed": int(seed), "schedule": schedule, "lambda_edge": float(l_edge), "lambda_smooth": float(l_smooth),
           "lambda_feat": float(l_feat or 0.0), "student": {"width": int(width)}}
    if cache_name:
        cfg["cache"] = str(studio.cache_root / validate_id(cache_name, "cache name"))
    if schedule == "custom":
        cfg["alpha_start"], cfg["alpha_end"] = float(a0), float(a1)
    return cfg


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
        width = gr.Number(value=12, precision=0, minimum=4, label="student width")
        seed = gr.Number(value=0, precision=0, label="seed")
        baseline = gr.Checkbox(value=True, label="also train the baseline (GT only)")
        l_feat = gr.Number(value=0.0, minimum=0, label="λ feat (feature distillation)", elem_id="train-lambda-feat")
    with gr.Row():
        start = gr.Button("Start", variant="primary", elem_id="train-start")
        stop = gr.Button("Stop", variant="stop")
        resume_pick = gr.Dropdown(choices=train_runs(studio), label="Run to resume / show", allow_custom_value=True,
                                  elem_id="train-run")
        resume = gr.Button("Resume")
        evaluate = gr.Button("Evaluate")
    progress = gr.HTML(elem_id="train-progress")
    with gr.Row():
        loss_plot = gr.Plot(label="Losses", elem_id="train-loss-plot")
        epoch_plot = gr.Plot(label="α and validation", elem_id="train-epoch-plot")
    pair_plot = gr.Plot(label="Distillation: student vs GT-only baseline", elem_id="train-pair-plot")
    table = gr.Markdown(elem_id="train-comparison")
    # {"id": job id, "what": "train" | "pair" (student + baseline) | "evaluate", "run": the run it trains or evaluates}
    job = gr.State(None)
    timer = gr.Timer(2.0, active=False)

    def start_training(ds, cache_name, sch, s0, s1, ep, rate, bs, le, ls, w, sd, with_baseline, lf=0.0):
        try:
            cfg = make_config(studio, ds, cache_name, sch, s0, s1, ep, rate, bs, le, ls, w, sd, lf)
            if with_baseline:
                main = studio.runner.submit(distill_with_baseline, kind=KIND, config={**cfg, "with_baseline": True})
            else:
                main = studio.runner.submit(train_student, kind=KIND, config=cfg)
        except (UserError, ValueError, TypeError) as exc:
            return None, error_text(exc), gr.Timer(active=False), gr.update()
        state = job_state(main, "pair" if with_baseline else "train", run=main)
        return state, progress_html(studio.runner.get(main)), gr.Timer(active=True), \
            gr.update(choices=train_runs(studio), value=main)

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
            return None, error_text(exc), gr.Timer(active=False)
        state = job_state(job_id, "pair" if pair else "train", run=job_id)
        return state, progress_html(studio.runner.get(job_id)), gr.Timer(active=True)

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

    def poll(state, shown):
        if not state:
            return {**plots(shown), timer: gr.Timer(active=False)}
        snap = studio.runner.get(state["id"])  # the job: training (one run or the pair) or an evaluation
        out = {**plots(state["run"]), progress: progress_html(snap)}
        if snap and not is_finished(snap):
            return out
        done = bool(snap) and snap["state"] == "succeeded"
        if done and state["what"] == "train":  # a single run: evaluate it vs teacher and GT
            nxt, bar, _ = start_eval(state, state["run"])
            return {**out, job: nxt, progress: bar}
        out.update({job: None, timer: gr.Timer(active=False)})
        if done and state["what"] == "evaluate":
            out[table] = format_markdown(studio.runner.result(state["id"]))
        elif done:  # the pair: the workflow evaluated both and wrote the report
            report = load_report(runs.run_dir(state["run"], studio.runs_root))
            if report:
                out[table] = report_markdown(report)
        return out

    def do_stop(state):
        for job_id in dict.fromkeys((state["run"], state["id"]) if state else ()):  # an evaluation: both
            studio.runner.cancel(job_id)
        return progress_html(studio.runner.get(state["run"]) if state else None, idle="nothing running")

    form = [dataset, cache, schedule, a0, a1, epochs, lr, batch, l_edge, l_smooth, width, seed, baseline, l_feat]
    start.click(start_training, inputs=form, outputs=[job, progress, timer, resume_pick], api_name="train_start")
    resume.click(resume_run, inputs=[resume_pick], outputs=[job, progress, timer], api_name="train_resume")
    evaluate.click(start_eval, inputs=[job, resume_pick], outputs=[job, progress, timer], api_name="train_evaluate")
    stop.click(do_stop, inputs=[job], outputs=[progress])
    resume_pick.change(plots, inputs=[resume_pick], outputs=[loss_plot, epoch_plot, pair_plot])
    timer.tick(poll, inputs=[job, resume_pick], outputs=[job, progress, loss_plot, epoch_plot, pair_plot, table, timer],
               show_progress="hidden", api_name="train_poll")
