"""Export tab: a trained 3D student to ONNX (optionally INT8), its parity and latency tables, the files to
download, and the exported model run on uploaded photos."""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from engine import runs, storage
from engine.config import UserError
from engine.evaluate.compare import compare_photos
from engine.export.mesh_student import EXPORT_DIR, LATENCY_COLUMNS, PARITY_COLUMNS, REPORT_NAME, export_student
from engine.geometry.camera import VIEW_NAMES
from studio.components import photo_upload, poll_finished, refused, run_picker, start_job
from studio.context import Studio


def _table(rows: list[dict], columns: tuple[str, ...]) -> dict:
    """A ``gr.Dataframe`` value from a list of dicts: ``columns`` first, then any others; floats rounded."""
    headers = list(columns) + sorted({k for r in rows for k in r} - set(columns))
    data = [[round(r[k], 6) if isinstance(r.get(k), float) else r.get(k) for k in headers] for r in rows]
    return {"headers": headers, "data": data} if rows else {"headers": ["-"], "data": [[None]]}


def show_report(report: dict | None):
    """(parity table, latency table, INT8 / summary markdown, files) of an export report."""
    if not report:
        return _table([], ()), _table([], ()), "No export yet for this run.", None
    files = [p for p in report["files"].values() if p and Path(p).is_file()]
    return (_table(report["parity_rows"], PARITY_COLUMNS), _table(report["latency_rows"], LATENCY_COLUMNS),
            report.get("markdown", ""),
            files or None)


def existing_report(studio: Studio, run_id: str) -> dict | None:
    """The run's last export report (``<run>/export/export.json``), if any."""
    if not run_id:
        return None
    try:
        return storage.read_json(runs.run_dir(run_id, studio.runs_root) / EXPORT_DIR / REPORT_NAME)
    except UserError:
        return None


def build(studio: Studio) -> None:
    gr.Markdown("Export a trained 3D student as ONNX: views (B, 4, 4, S, S) float in [0, 1] → vertices (B, 2562, 3); "
                "the faces and the input spec are saved beside it. Parity is checked against torch on the run's "
                "validation shoes and latency is measured on this machine (fixed threads, warm-up, median).")
    with gr.Row():
        run, ckpt = run_picker(studio, "export-run")
        int8 = gr.Checkbox(value=True, label="also INT8 (dynamic quantisation)")
        threads = gr.Number(value=2, precision=0, minimum=1, maximum=64, label="threads for timing")
    with gr.Row():
        go = gr.Button("Export", variant="primary", elem_id="export-go")
        stop = gr.Button("Cancel", variant="stop")
    progress = gr.HTML(elem_id="export-progress")
    with gr.Row():
        parity = gr.Dataframe(label="Parity: torch vs ONNX Runtime", interactive=False, elem_id="export-parity")
        latency = gr.Dataframe(label="Latency per shoe", interactive=False, elem_id="export-latency")
    summary = gr.Markdown(elem_id="export-summary")
    files = gr.File(label="Download", file_count="multiple", elem_id="export-files")
    gr.Markdown("### Run the exported ONNX student on photos")
    with gr.Row():
        uploads = [photo_upload(label=name, image_mode="RGBA", height=140, sources=["upload"],
                                elem_id=f"export-upload-{name}") for name in VIEW_NAMES]
    with gr.Row():
        try_go = gr.Button("Run ONNX student", elem_id="export-try")
        variant = gr.Radio(["fp32", "int8"], value="fp32", label="Model")
    viewer = gr.Model3D(label="ONNX student mesh", height=320, elem_id="export-model")
    try_notes = gr.Markdown()
    job = gr.State(None)  # {"id", "what"}: "export" | "try"
    timer = gr.Timer(1.0, active=False)

    def submit(what, fn, **kwargs):
        return start_job(studio.runner, fn, "export" if what == "export" else f"export-{what}", what, **kwargs)

    def start_export(run_id, which, with_int8, n_threads):
        try:
            run_dir = runs.run_dir(run_id or "", studio.runs_root)
        except UserError as exc:
            return refused(exc)
        return submit("export", export_student, run_dir=run_dir, int8=bool(with_int8), checkpoint=which,
                      threads=int(n_threads or 1))

    def start_try(run_id, which_model, *photos):
        report = existing_report(studio, run_id)
        key = "onnx_int8" if which_model == "int8" else "onnx"
        path = ((report or {}).get("files") or {}).get(key)
        if not path:
            return refused(UserError(f"export the run first{' with INT8' if key == 'onnx_int8' else ''}"))
        return submit("try", compare_photos, checkpoint=Path(path), out_dir=studio.scratch,
                      photos={name: f for name, f in zip(VIEW_NAMES, photos)})

    def poll(state):
        out, res = poll_finished(studio.runner, state, progress, timer, job)
        if res is None:
            return out
        if state["what"] == "export":
            out.update(zip((parity, latency, summary, files), show_report(res)))
        else:  # try
            stats = res["stats"]
            out[viewer] = res["student_glb"]
            out[try_notes] = f"ONNX student on {', '.join(stats['views'])}: {stats['vertices']} vertices in " \
                             f"{stats['student_ms']} ms"
        return out

    run.change(lambda rid: show_report(existing_report(studio, rid)), inputs=[run],
               outputs=[parity, latency, summary, files], api_name="export_show")
    go.click(start_export, inputs=[run, ckpt, int8, threads], outputs=[job, progress, timer], api_name="export_run")
    stop.click(lambda s: studio.runner.cancel(s["id"]) if s else None, inputs=[job])
    try_go.click(start_try, inputs=[run, variant, *uploads], outputs=[job, progress, timer], api_name="export_try")
    timer.tick(poll, inputs=[job], outputs=[progress, parity, latency, summary, files, viewer, try_notes, job, timer],
               api_name="export_poll", show_progress="hidden")
