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
from studio.components import error_text, is_finished, progress_html, run_ids
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
    job = gr.State(None)  # {"main", "pair" (bool), "eval" (or None)}
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
        return {"main": main, "pair": bool(with_baseline), "eval": None}, progress_html(studio.runner.get(main)), \
            gr.Timer(active=True), gr.update(choices=train_runs(studio), value=main)

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
        return {"main": job_id, "pair": pair, "eval": None}, progress_html(studio.runner.get(job_id)), \
            gr.Timer(active=True)

    def start_eval(state, run_id):
        state = state or {}
        run_id = run_id or state.get("main")  # the run picked in the dropdown, else the one just trained
        try:
            job_id = studio.runner.submit(evaluate_run, kind="evaluate", with_run=False,
                                          run_dir=runs.run_dir(run_id, studio.runs_root))
        except (UserError, ValueError, TypeError) as exc:
            return state, error_text(exc), gr.Timer(active=False)
        return {"main": run_id, "pair": False, "eval": job_id}, progress_html(studio.runner.get(job_id)), \
            gr.Timer(active=True)

    def poll(state, shown):
        keep = gr.update()
        if not state:
            return (state, keep, *figures(studio, shown), pair_figure(studio, shown), keep, gr.Timer(active=False))
        figs = (*figures(studio, state["main"]), pair_figure(studio, state["main"]))
        if state.get("eval"):
            ev = studio.runner.get(state["eval"])
            if not is_finished(ev):
                return state, progress_html(ev), *figs, keep, keep
            done = ev["state"] == "succeeded"
            return None, progress_html(ev), *figs, \
                format_markdown(studio.runner.result(state["eval"])) if done else keep, gr.Timer(active=False)
        snap = studio.runner.get(state["main"])  # runs of an earlier session are not in this runner
        if snap and not is_finished(snap):
            return state, progress_html(snap), *figs, keep, keep
        if snap and snap["state"] == "succeeded":
            if state.get("pair"):  # the workflow evaluated both and wrote the report
                report = load_report(runs.run_dir(state["main"], studio.runs_root))
                return None, progress_html(snap), *figs, report_markdown(report) if report else keep, \
                    gr.Timer(active=False)
            nxt, bar, _ = start_eval(state, state["main"])  # a single run: evaluate it vs teacher and GT
            return nxt, bar, *figs, keep, keep
        return None, progress_html(snap), *figs, keep, gr.Timer(active=False)

    def do_stop(state):
        for key in ("main", "eval"):
            if state and state.get(key):
                studio.runner.cancel(state[key])
        return progress_html(studio.runner.get(state["main"]) if state else None, idle="nothing running")

    form = [dataset, cache, schedule, a0, a1, epochs, lr, batch, l_edge, l_smooth, width, seed, baseline, l_feat]
    start.click(start_training, inputs=form, outputs=[job, progress, timer, resume_pick], api_name="train_start")
    resume.click(resume_run, inputs=[resume_pick], outputs=[job, progress, timer], api_name="train_resume")
    evaluate.click(start_eval, inputs=[job, resume_pick], outputs=[job, progress, timer], api_name="train_evaluate")
    stop.click(do_stop, inputs=[job], outputs=[progress])
    resume_pick.change(lambda rid: (*figures(studio, rid), pair_figure(studio, rid)), inputs=[resume_pick],
                       outputs=[loss_plot, epoch_plot, pair_plot])
    timer.tick(poll, inputs=[job, resume_pick], outputs=[job, progress, loss_plot, epoch_plot, pair_plot, table, timer],
               show_progress="hidden", api_name="train_poll")
