"""Cache tab: run the teacher once per shoe and keep its mesh + 10k surface points (resumable)."""
from __future__ import annotations

import gradio as gr

from engine import cache
from engine.config import UserError, validate_id
from engine.data import layout
from engine.teachers.base import PRESETS, TeacherSettings, teacher_names
from studio.components import (availability_md, error_text, is_finished, job_snapshot, job_state, poll_progress,
                               progress_html, settings_md)
from studio.context import Studio

FAIL_HEADERS = ["shoe", "error"]


def summary_md(studio: Studio, name: str) -> tuple[str, list[list]]:
    """(markdown summary, failure rows) of the cache ``name``."""
    if not name:
        return "", []
    try:
        s = cache.cache_summary(studio.cache_root / validate_id(name, "cache name"))
    except UserError as exc:
        return error_text(exc), []
    mb = s["size_bytes"] / 1e6
    lines = [f"**{name}** — teacher `{s['teacher']}`, settings: {settings_md(s['settings'])}",
             f"{s['ok']} cached, {s['failed']} failed, {s['stale']} stale · {mb:.1f} MB on disk · "
             f"{s['mean_seconds'] or 0:.2f} s per shoe"]
    if s["with_gt"]:
        lines.append(f"Teacher vs ground truth on {s['with_gt']} shoes: mean CD-L1 **{s['mean_cd_l1']:.4f}**, "
                     f"mean F@1% **{s['mean_fscore@1%']:.3f}** (meshes normalised: bbox centre 0, longest side 1; "
                     "τ = 1 % of that side)")
    return "\n\n".join(lines), [[f["id"], f["error"]] for f in s["failures"]]


def build(studio: Studio) -> None:
    gr.Markdown("Offline distillation: the teacher runs once per shoe; its mesh and 10,000 surface points are "
                f"cached under `{studio.cache_root}/<name>/`. A build skips shoes that are up to date, rebuilds "
                "stale ones (teacher, settings or photos changed), records failures and carries on; "
                "**Build** again after a stop or a restart resumes where it left off.")
    gr.Markdown(availability_md())
    with gr.Row():
        dataset = gr.Dropdown(choices=layout.list_datasets(studio.data_root), label="Dataset",
                              allow_custom_value=True, elem_id="cache-dataset")
        teacher = gr.Dropdown(choices=teacher_names(), value=teacher_names()[0], label="Teacher",
                              elem_id="cache-teacher")
        preset = gr.Radio(choices=list(PRESETS), value="balanced", label="Preset", elem_id="cache-preset")
        first = gr.Number(value=0, precision=0, minimum=0, label="first N shoes (0 = all)")
        name = gr.Textbox(label="Cache name", placeholder="default: <dataset>-<teacher>-<preset>",
                          elem_id="cache-name")
    with gr.Row():
        start = gr.Button("Build / Resume", variant="primary", elem_id="cache-build")
        stop = gr.Button("Cancel", variant="stop")
        existing = gr.Dropdown(choices=cache.list_caches(studio.cache_root), label="Existing caches",
                               allow_custom_value=True)
    progress = gr.HTML(elem_id="cache-progress")
    summary = gr.Markdown(elem_id="cache-summary")
    failures = gr.Dataframe(headers=FAIL_HEADERS, interactive=False, wrap=True, label="Failures")
    job = gr.State(None)  # {"id": job id, "what": "build", "cache": its name}
    timer = gr.Timer(1.0, active=False)

    def start_build(ds, t, p, n, cname):
        try:
            data_root = studio.dataset_path(ds)
            cname = cname.strip() if cname and cname.strip() else f"{ds}-{t}-{p}"
            cache_dir = studio.cache_root / validate_id(cname, "cache name")
            settings = TeacherSettings(preset=p)
            n = int(n or 0)
            if n < 0:
                raise UserError("first N must be 0 (all) or more")
            job_id = studio.runner.submit(
                cache.build_cache, kind="cache",
                run_config={"dataset": str(data_root), "cache": str(cache_dir), "teacher": t, "preset": p,
                            "first": n or None},
                data_root=data_root, cache_dir=cache_dir, teacher=t, settings=settings, first=n or None)
        except (UserError, ValueError, TypeError) as exc:
            return None, error_text(exc), gr.Timer(active=False), gr.update()
        return job_state(job_id, "build", cache=cname), progress_html(studio.runner.get(job_id)), \
            gr.Timer(active=True), gr.update(value=cname)

    def poll(state):
        if not state:
            return {timer: gr.Timer(active=False)}
        snap = studio.runner.get(state["id"])
        md, rows = summary_md(studio, state["cache"])
        if not is_finished(snap):
            return {progress: progress_html(snap), summary: md, failures: rows}
        return {**poll_progress(snap, progress, timer), summary: md, failures: rows, job: None,
                existing: gr.update(choices=cache.list_caches(studio.cache_root))}

    def do_cancel(state):
        if state:
            studio.runner.cancel(state["id"])
        return progress_html(job_snapshot(studio.runner, state), idle="nothing running")

    start.click(start_build, inputs=[dataset, teacher, preset, first, name], outputs=[job, progress, timer, existing],
                api_name="build_cache")
    stop.click(do_cancel, inputs=[job], outputs=[progress])
    timer.tick(poll, inputs=[job], outputs=[job, progress, summary, failures, existing, timer], show_progress="hidden")
    existing.change(lambda n: summary_md(studio, n), inputs=[existing], outputs=[summary, failures],
                    api_name="cache_summary")
