"""VAE tab: distil a teacher VAE into the TinyVAE (seed 003) with live plots of every loss term, the
reconstruction grid (input / teacher / student) refreshed each epoch, and the size / speed / quality report."""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from engine import runs
from engine.config import UserError, confine
from engine.evaluate.vae_report import format_markdown
from engine.workflows import distil_and_report
from studio.components import error_text, job_snapshot, job_state, poll_progress, progress_html, run_ids
from studio.context import Studio
from studio.plots import Panel, panels_figure

KIND = "vae"
TERMS = ["recon", "kl", "latent", "output", "perceptual"]  # the terms of "loss" (the weighted total)


def live_view(studio: Studio, run_id: str | None):
    """(per-batch loss figure: the total ``loss`` and, on its own panel, its terms — log axis when their
    scales differ; reconstruction grid path or None) from the run folder."""
    batches = []
    path = runs.run_dir(run_id, studio.runs_root) if run_id else None
    if path:
        batches = [{**r, "batch": i} for i, r in enumerate(r for r in runs.read_history(path) if r.get("scope") == "batch")]
    fig = panels_figure([Panel("total loss", batches, ["loss"], "batch"), Panel("terms", batches, TERMS, "batch")],
                        title="loss per batch (all phases)")
    grid = path / "recon_grid.png" if path else None
    return fig, str(grid) if grid and grid.is_file() else None


def ui_dataset(studio: Studio, spec: str) -> str:
    """The dataset field as the engine reads it; a ``folder:PATH`` / ``cifar10:PATH`` typed in the UI must
    lie inside the data root (relative paths are taken from there)."""
    spec = (spec or "").strip()
    if ":" not in spec:
        return spec
    kind, path = spec.split(":", 1)
    return f"{kind}:{confine(studio.data_root / path.strip(), [studio.data_root], 'dataset folder')}"


def resume_vae_run(studio: Studio, run_id: str) -> str:
    """Continue a stopped, killed or interrupted VAE run of the runs root from its ``tinyvae_last.pth``, in
    its own folder and with its saved config; returns the job ID (= the run ID). ``UserError`` for an
    unknown run, a run of another kind, or one another writer holds (``engine.runs.RunLock``)."""
    run = runs.load_run(run_id or "", studio.runs_root, studio.runner.live_ids())
    if run["status"].get("kind") != KIND:
        raise UserError(f"{run_id} is a {run['status'].get('kind')} run, not a VAE run")
    cfg = {k: v for k, v in (run["config"] or {}).items() if k != "kind"}
    return studio.runner.submit(distil_and_report, kind=KIND, existing_run=Path(run["path"]),
                                config={**cfg, "resume": True})


def build(studio: Studio) -> None:
    gr.Markdown("Teacher VAE (latent 512, ~10 M parameters) → TinyVAE (latent 4×4×128, ~1.1 M). Loss = "
                "w_recon·MSE(x̂, x) + w_kl·KL + w_latent·latent distillation (projected student latent vs teacher's, "
                "softened by temperature T) + w_out·MSE(x̂, teacher(x)) + w_perc·VGG16 perceptual. Phases: teacher "
                "pre-training → distillation → fine-tuning. Data: `fashion-mnist` (Debian package), `cifar10` "
                "(local python-pickle folder) or `folder:PATH`.")
    with gr.Row():
        dataset = gr.Textbox(value="fashion-mnist", label="dataset", elem_id="vae-dataset")
        limit = gr.Number(value=6000, precision=0, minimum=16, label="training images (first N)")
        teacher_epochs = gr.Number(value=3, precision=0, minimum=0, label="teacher epochs")
        epochs = gr.Number(value=3, precision=0, minimum=0, label="distillation epochs", elem_id="vae-epochs")
        finetune = gr.Number(value=1, precision=0, minimum=0, label="fine-tune epochs")
        batch = gr.Number(value=64, precision=0, minimum=1, label="batch size")
        lr = gr.Number(value=1e-3, label="learning rate")
    with gr.Row():
        w = [gr.Number(value=v, label=n) for n, v in (("w_recon", 0.3), ("w_kl", 0.1), ("w_latent", 0.3),
                                                      ("w_out", 0.2), ("w_perc", 0.1))]
        temperature = gr.Number(value=3.0, label="temperature T")
        seed = gr.Number(value=0, precision=0, label="seed")
        report_images = gr.Number(value=0, precision=0, minimum=0, label="report: test images (0 = all)")
    with gr.Row():
        start = gr.Button("Start", variant="primary", elem_id="vae-start")
        stop = gr.Button("Stop", variant="stop", elem_id="vae-stop")
        shown = gr.Dropdown(choices=run_ids(studio, KIND), label="Run", allow_custom_value=True, elem_id="vae-run",
                            scale=2, min_width=300)  # wide enough for a whole run ID
        resume = gr.Button("Resume", elem_id="vae-resume")
    progress = gr.HTML(elem_id="vae-progress")
    with gr.Row():
        plot = gr.Plot(label="Loss terms", elem_id="vae-plot")
        grid = gr.Image(label="Reconstructions: input / teacher / student", type="filepath", elem_id="vae-grid")
    report = gr.Markdown(elem_id="vae-report")
    job = gr.State(None)  # {"id": job id (= its run), "what": "distil"}
    timer = gr.Timer(2.0, active=False)

    def start_job(ds, n, te, ep, ft, bs, rate, wr, wk, wl, wo, wp, t, sd, n_report=0):
        try:
            cfg = {"dataset": ui_dataset(studio, ds), "limit": int(n), "teacher_epochs": int(te), "epochs": int(ep),
                   "finetune_epochs": int(ft), "batch_size": int(bs), "learning_rate": float(rate),
                   "recon_weight": float(wr), "kl_weight": float(wk), "distill_latent_weight": float(wl),
                   "distill_recon_weight": float(wo), "perceptual_weight": float(wp), "temperature": float(t),
                   "seed": int(sd), "eval_limit": int(n_report) or None}
            job_id = studio.runner.submit(distil_and_report, kind=KIND, config=cfg)
        except (UserError, ValueError, TypeError) as exc:
            return None, error_text(exc), gr.Timer(active=False), gr.update()
        return job_state(job_id, "distil"), progress_html(studio.runner.get(job_id)), gr.Timer(active=True), \
            gr.update(choices=[job_id], value=job_id)

    def resume_job(run_id):
        try:
            job_id = resume_vae_run(studio, run_id)
        except (UserError, ValueError, TypeError) as exc:
            return None, error_text(exc), gr.Timer(active=False)
        return job_state(job_id, "distil"), progress_html(studio.runner.get(job_id)), gr.Timer(active=True)

    def poll(state):
        snap = job_snapshot(studio.runner, state)
        fig, img = live_view(studio, state["id"] if state else None)
        out = {**poll_progress(snap, progress, timer), plot: fig, grid: img}
        result = studio.runner.result(state["id"]) if snap and snap["state"] == "succeeded" else None
        if result and result.get("report"):
            out[report] = format_markdown(result["report"])
        return out

    def show(run_id):
        try:
            fig, img = live_view(studio, run_id)
            rep = Path(runs.run_dir(run_id, studio.runs_root)) / "report.md" if run_id else None
            return fig, img, rep.read_text() if rep and rep.is_file() else ""
        except UserError as exc:
            return live_view(studio, None) + (error_text(exc),)

    start.click(start_job, inputs=[dataset, limit, teacher_epochs, epochs, finetune, batch, lr, *w, temperature, seed,
                                       report_images],
                outputs=[job, progress, timer, shown], api_name="vae_start")
    resume.click(resume_job, inputs=[shown], outputs=[job, progress, timer], api_name="vae_resume")
    stop.click(lambda s: studio.runner.cancel(s["id"]) if s else None, inputs=[job])
    timer.tick(poll, inputs=[job], outputs=[progress, plot, grid, report, timer], show_progress="hidden")
    shown.change(show, inputs=[shown], outputs=[plot, grid, report], api_name="vae_show")
