"""Export tab: a trained 3D student to ONNX (optionally INT8), its parity and latency tables, the files to
download (with the web bundle's zip), a link that opens the bundle's page served by the studio (the
student runs in the browser), and the exported model run on uploaded photos."""
from __future__ import annotations

import html
from pathlib import Path
from urllib.parse import quote

import gradio as gr

from engine import runs, storage
from engine.config import UserError, validate_id
from engine.evaluate.compare import compare_photos
from engine.export.mesh_student import (EXPORT_DIR, EXPORT_KIND, LATENCY_COLUMNS, PARITY_COLUMNS, REPORT_NAME,
                                        export_student)
from engine.export.web_bundle import WEB_DIR, ZIP_NAME, page_info
from engine.geometry.camera import VIEW_NAMES
from studio import photo_preview
from studio.components import (enclosing_tab, job_state, photo_upload, photos_md, poll_finished, progress_html,
                               refused, run_picker, start_job, views_note)
from studio.context import Studio


ERROR_KEYS = ("max_abs_err", "cd_l1", "tolerance")  # tiny numbers: scientific notation, never rounded to 0
MS_KEYS = ("ms_per_shoe",)  # latencies: "31.5 ms"


def cell(key: str, value):
    """One table cell as a person reads it: errors in scientific notation (``2.68e-07``), latencies as
    ``31.5 ms``, speed-ups as ``1.53x``, sizes as ``0.37 MB``, booleans as yes / NO, other floats to 4
    significant digits."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if not isinstance(value, float):
        return value
    if key in ERROR_KEYS:
        return f"{value:.2e}"
    if key in MS_KEYS:
        return f"{value:.1f} ms"
    if key.startswith("speedup"):
        return f"{value:.2f}x"
    if key.endswith("_mb"):
        return f"{value:.2f} MB"
    return f"{value:.4g}"


def _table(rows: list[dict], columns: tuple[str, ...]) -> dict:
    """A ``gr.Dataframe`` value from a list of dicts: ``columns`` first, then any others; cells as ``cell``."""
    headers = list(columns) + sorted({k for r in rows for k in r} - set(columns))
    data = [[cell(k, r.get(k)) for k in headers] for r in rows]
    return {"headers": headers, "data": data} if rows else {"headers": ["-"], "data": [["-"]]}


def summary_md(report: dict) -> str:
    """What the two tables do not show: the checkpoint, the files, and the INT8 model's size and accuracy
    (one line each; the parity and latency numbers are in the tables only)."""
    head = (f"**{report['run']}** `{report['checkpoint']}` (epoch {report['epoch']}) — image size "
            f"{report['image_size']}, {report['vertices']} vertices / {report['faces']} faces; parity "
            f"{'within tolerance on every input' if report.get('parity_ok') else '**outside tolerance**'}.")
    files = "Files: " + ", ".join(f"`{Path(p).name}`" for p in report["files"].values() if p)
    rec = report.get("recommended")
    if rec:  # the fastest file that keeps quality
        files += f"\n\n**Recommended: `{Path(rec['file']).name}`** — {rec['reason']}."
    q = report.get("int8")
    if not q:
        return "\n\n".join([head, files])
    acc = (f"CD-L1 {q['cd_l1_fp32']:.5f} → {q['cd_l1_int8']:.5f} ({q['cd_l1_change_pct']:+.1f} %) on {q['shoes']} "
           "val shoes" if q.get("cd_l1_change") is not None else q.get("note", ""))
    int8 = (f"INT8 (dynamic quantisation): {q['bytes'] / 2**20:.2f} MB, {q['size_pct']:.0f} % of FP32's "
            f"{q['fp32_bytes'] / 2**20:.2f} MB; max abs error vs FP32 {q['max_abs_err_vs_fp32']:.2e}; {acc}.")
    rows = q.get("profile_rows") or []
    if rows:  # where INT8's time goes, beside FP32's
        top = ", ".join(r["op"] for r in sorted(rows, key=lambda r: -(r["int8_ms"] or 0))[:3])
        int8 += f" Its time goes mostly to {top} (export.md: every operator's time beside FP32's)."
    return "\n\n".join([head, files, int8])


def show_report(report: dict | None):
    """(parity table, latency table, summary markdown, files) of an export report."""
    if not report:
        return _table([], ()), _table([], ()), "No export yet for this run.", None
    files = [p for p in report["files"].values() if p and Path(p).is_file()]
    return (_table(report["parity_rows"], PARITY_COLUMNS), _table(report["latency_rows"], LATENCY_COLUMNS),
            summary_md(report), files or None)


def existing_report(studio: Studio, run_id: str) -> dict | None:
    """The run's last export report (``<run>/export/export.json``), if any."""
    if not run_id:
        return None
    try:
        return storage.read_json(runs.run_dir(run_id, studio.runs_root) / EXPORT_DIR / REPORT_NAME)
    except UserError:
        return None


_SERVED: set[Path] = set()  # web folders handed to gr.set_static_paths (it is process-wide)


def served_web_dir(studio: Studio, run_id: str) -> Path | None:
    """``<runs>/<run_id>/export/web`` when it holds a bundle's page, registered with Gradio's static files
    (``gr.set_static_paths``: that folder only, nothing else of the run) so the studio serves it at
    ``gradio_api/file=<folder>/index.html``; None for a bad ID, a folder outside the runs root or no bundle."""
    try:
        validate_id(run_id or "", "run ID")
    except UserError:
        return None
    root = Path(studio.runs_root).resolve()
    folder = (root / run_id / EXPORT_DIR / WEB_DIR).resolve()
    if root not in folder.parents or page_info(folder) is None:
        return None
    if folder not in _SERVED:
        gr.set_static_paths([folder])
        _SERVED.add(folder)
    return folder


def web_html(studio: Studio, run_id: str | None, report: dict | None) -> str:
    """The "try in browser" link of a run's export (or why there is none)."""
    if not report:
        return ""
    folder = served_web_dir(studio, run_id or "")
    if folder is None:
        return ("<p id='export-web-none'>No web bundle for this export: onnxruntime-web was not installed when it "
                "ran. Run <code>make install</code>, then export again.</p>")
    info = page_info(folder) or {}
    href = "gradio_api/file=" + quote(str(folder / "index.html"), safe="/")
    mb = info.get("bytes", 0) / 2**20
    return (f"<p><a id='export-web-link' href='{html.escape(href)}' target='_blank' rel='noopener'>Try the student in "
            f"your browser</a> — the exported model runs in the browser itself (onnxruntime-web "
            f"{html.escape(str(info.get('onnxruntime-web', '?')))}, WebAssembly), on 1–4 photos, with its latency "
            f"per shoe. <code>{ZIP_NAME}</code> ({mb:.1f} MB unpacked) in the downloads above is the same page: "
            "unzip it and serve the folder with any static server (<code>python -m http.server</code>).</p>")


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
    summary = gr.Markdown(elem_id="export-summary")
    parity = gr.Dataframe(label="Parity: torch vs ONNX Runtime (max abs error of the vertices, CD-L1 between "
                                "the two meshes)", interactive=False, elem_id="export-parity")
    latency = gr.Dataframe(label="Latency per shoe (batch 1, median of alternating rounds)", interactive=False,
                           elem_id="export-latency")
    files = gr.File(label="Download", file_count="multiple", elem_id="export-files")
    web = gr.HTML(elem_id="export-web")
    gr.Markdown("### Run the exported ONNX student on photos")
    with gr.Row():
        uploads = [photo_upload(label=name, image_mode="RGBA", height=140, sources=["upload"],
                                elem_id=f"export-upload-{name}") for name in VIEW_NAMES]
    with gr.Row():
        try_go = gr.Button("Run ONNX student", elem_id="export-try")
        variant = gr.Radio(["fp32", "int8"], value="fp32", label="Model")
    accept = photo_preview.build(studio, uploads, "export")
    viewer = gr.Model3D(label="ONNX student mesh", height=320, elem_id="export-model")
    try_notes = gr.Markdown()
    job = gr.State(None)  # {"id", "what"}: "export" | "try"
    timer = gr.Timer(1.0, active=False)

    def submit(what, fn, **kwargs):
        return start_job(studio.runner, fn, "export" if what == "export" else f"export-{what}", what, **kwargs)

    def start_export(run_id, which, with_int8, n_threads):
        try:  # an export is a run of its own (kind "export"): listed in the Runs tab with its log
            run_dir = runs.run_dir(run_id or "", studio.runs_root)
            args = {"int8": bool(with_int8), "checkpoint": which, "threads": int(n_threads or 1)}
            job_id = studio.runner.submit(export_student, kind=EXPORT_KIND, run_config={"run": run_id, **args},
                                          run_dir=run_dir, **args)
        except (UserError, ValueError, TypeError) as exc:
            return refused(exc)
        return job_state(job_id, "export"), progress_html(studio.runner.get(job_id)), gr.Timer(active=True)

    def start_try(run_id, which_model, front, left, back, right, unsure=False):
        photos = (front, left, back, right)
        report = existing_report(studio, run_id)
        key = "onnx_int8" if which_model == "int8" else "onnx"
        path = ((report or {}).get("files") or {}).get(key)
        if not path:
            return refused(UserError(f"export the run first{' with INT8' if key == 'onnx_int8' else ''}"))
        return submit("try", compare_photos, checkpoint=Path(path), out_dir=studio.scratch,
                      photos={name: f for name, f in zip(VIEW_NAMES, photos)}, accept_unsure=bool(unsure))

    def poll(state):
        out, res = poll_finished(studio.runner, state, progress, timer, job)
        if res is None:
            return out
        if state["what"] == "export":
            out.update(zip((parity, latency, summary, files), show_report(res)))
            out[web] = web_html(studio, res.get("run"), res)
        else:  # try
            stats = res["stats"]
            out[viewer] = res["student_glb"]
            out[try_notes] = photos_md(f"ONNX student on {', '.join(stats['views'])}: {stats['vertices']} vertices "
                                       f"in {stats['student_ms']} ms\n{res.get('photos') or ''}",
                                       views_note(stats["views"]))
        return out

    def show(rid):
        report = existing_report(studio, rid)
        return (*show_report(report), None, "", web_html(studio, rid, report))

    def show_export(rid):  # the run picked when the tab opens (its first run): its last export, if any
        report = existing_report(studio, rid)
        return (*show_report(report), web_html(studio, rid, report))

    run.change(show, inputs=[run], outputs=[parity, latency, summary, files, viewer, try_notes, web],
               api_name="export_show")
    tab = enclosing_tab()
    if tab is not None:
        tab.select(show_export, inputs=[run], outputs=[parity, latency, summary, files, web], show_progress="hidden")
    go.click(start_export, inputs=[run, ckpt, int8, threads], outputs=[job, progress, timer], api_name="export_run")
    stop.click(lambda s: studio.runner.cancel(s["id"]) if s else None, inputs=[job])
    try_go.click(start_try, inputs=[run, variant, *uploads, accept], outputs=[job, progress, timer], api_name="export_try")
    timer.tick(poll, inputs=[job],
               outputs=[progress, parity, latency, summary, files, viewer, try_notes, job, timer, web],
               api_name="export_poll", show_progress="hidden")
