"""Train 3D tab: distil the cached teacher into the mesh student, watch the losses live, compare with a
GT-only baseline trained with the same student, seed and epochs."""
from __future__ import annotations

import gradio as gr

from engine import runs
from engine.config import UserError, validate_id
from engine.data import layout
from engine.evaluate.mesh_eval import evaluate_run, format_markdown
from engine.train.distill3d import train_student
from engine.train.schedules import SCHEDULE_NAMES, SCHEDULES
from engine.cache import list_caches
from studio.components import error_text, is_finished, progress_html, run_ids
from studio.context import Studio
from studio.plots import history_figure

KIND = "train3d"
STEP_KEYS = ["loss", "cd_teacher", "cd_gt", "edge", "smooth"]
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


def make_config(studio: Studio, ds, cache_name, schedule, a0, a1, epochs, lr, batch, l_edge, l_smooth, width,
                seed) -> dict:
    cfg = {"data": str(studio.dataset_path(ds)), "epochs": int(epochs), "lr": float(lr), "batch_size": int(batch),
           "seed": int(seed), "schedule": schedule, "lambda_edge": float(l_edge), "lambda_smooth": float(l_smooth),
           "student": {"width": int(width)}}
    if cache_name:
        cfg["cache"] = str(studio.cache_root / validate_id(cache_name, "cache name"))
    if schedule == "custom":
        cfg["alpha_start"], cfg["alpha_end"] = float(a0), float(a1)
    return cfg


def build(studio: Studio) -> None:
    gr.Markdown("Loss = α·Chamfer(student, teacher) + (1−α)·Chamfer(student, GT) + λ_edge·edge + λ_smooth·Laplacian, "
                "α linear from start to end over the epochs (" +
                ", ".join(f"{k} {a:.2f}→{b:.2f}" for k, (a, b) in SCHEDULES.items()) +
                "). Photo-only shoes train on the teacher alone. The baseline is the same student trained on GT alone.")
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
    table = gr.Markdown(elem_id="train-comparison")
    job = gr.State(None)  # {"main", "baseline" (or None), "eval" (or None)}
    timer = gr.Timer(2.0, active=False)

    def start_training(ds, cache_name, sch, s0, s1, ep, rate, bs, le, ls, w, sd, with_baseline):
        try:
            cfg = make_config(studio, ds, cache_name, sch, s0, s1, ep, rate, bs, le, ls, w, sd)
            main = studio.runner.submit(train_student, kind=KIND, config=cfg)
            base = studio.runner.submit(train_student, kind=KIND, config={**cfg, "baseline": True}) \
                if with_baseline else None
        except (UserError, ValueError, TypeError) as exc:
            return None, error_text(exc), gr.Timer(active=False), gr.update()
        return {"main": main, "baseline": base, "eval": None}, progress_html(studio.runner.get(main)), \
            gr.Timer(active=True), gr.update(choices=train_runs(studio), value=main)

    def resume_run(run_id):
        try:
            run = runs.load_run(run_id, studio.runs_root, studio.runner.live_ids())
            if run["status"].get("state") in runs.ACTIVE_STATES:
                raise UserError(f"{run_id} is still {run['status']['state']}")
            cfg = {k: v for k, v in run["config"].items() if k != "kind"}
            job_id = studio.runner.submit(train_student, kind=KIND, existing_run=runs.run_dir(run_id, studio.runs_root),
                                          config={**cfg, "resume": True})
        except (UserError, ValueError, TypeError) as exc:
            return None, error_text(exc), gr.Timer(active=False)
        return {"main": job_id, "baseline": None, "eval": None}, progress_html(studio.runner.get(job_id)), \
            gr.Timer(active=True)

    def start_eval(state, run_id):
        state = state or {}
        run_id = run_id or state.get("main")  # the run picked in the dropdown, else the one just trained
        try:
            base = state.get("baseline") if run_id == state.get("main") else None
            job_id = studio.runner.submit(evaluate_run, kind="evaluate", with_run=False,
                                          run_dir=runs.run_dir(run_id, studio.runs_root),
                                          baseline_run=runs.run_dir(base, studio.runs_root) if base else None)
        except (UserError, ValueError, TypeError) as exc:
            return state, error_text(exc), gr.Timer(active=False)
        return {"main": run_id, "baseline": base, "eval": job_id}, progress_html(studio.runner.get(job_id)), \
            gr.Timer(active=True)

    def poll(state, shown):
        keep = gr.update()
        if not state:
            return (state, keep, *figures(studio, shown), keep, gr.Timer(active=False))
        # runs of an earlier session (evaluated from the dropdown) are not in this runner: no snapshot
        snaps = [s for s in (studio.runner.get(state[k]) for k in ("main", "baseline") if state.get(k)) if s]
        running = next((s for s in snaps if not is_finished(s)), snaps[-1] if snaps else None)
        figs = figures(studio, running["id"] if running else state.get("main"))
        if state.get("eval"):
            ev = studio.runner.get(state["eval"])
            if not is_finished(ev):
                return state, progress_html(ev), *figs, keep, keep
            if ev["state"] == "succeeded":
                return None, progress_html(ev), *figs, format_markdown(studio.runner.result(state["eval"])), \
                    gr.Timer(active=False)
            return None, progress_html(ev), *figs, keep, gr.Timer(active=False)
        if not all(is_finished(s) for s in snaps):
            return state, progress_html(running), *figs, keep, keep
        if snaps and snaps[0]["state"] == "succeeded":  # all done: evaluate student (and baseline) vs teacher and GT
            nxt, bar, _ = start_eval(state, state["main"])
            return nxt, bar, *figs, keep, keep
        return None, progress_html(snaps[0] if snaps else None), *figs, keep, gr.Timer(active=False)

    def do_stop(state):
        for key in ("main", "baseline", "eval"):
            if state and state.get(key):
                studio.runner.cancel(state[key])
        return progress_html(studio.runner.get(state["main"]) if state else None, idle="nothing running")

    form = [dataset, cache, schedule, a0, a1, epochs, lr, batch, l_edge, l_smooth, width, seed, baseline]
    start.click(start_training, inputs=form, outputs=[job, progress, timer, resume_pick], api_name="train_start")
    resume.click(resume_run, inputs=[resume_pick], outputs=[job, progress, timer], api_name="train_resume")
    evaluate.click(start_eval, inputs=[job, resume_pick], outputs=[job, progress, timer], api_name="train_evaluate")
    stop.click(do_stop, inputs=[job], outputs=[progress])
    resume_pick.change(lambda rid: figures(studio, rid), inputs=[resume_pick], outputs=[loss_plot, epoch_plot])
    timer.tick(poll, inputs=[job, resume_pick], outputs=[job, progress, loss_plot, epoch_plot, table, timer],
               show_progress="hidden", api_name="train_poll")
