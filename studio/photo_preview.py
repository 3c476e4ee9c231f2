"""The upload boxes' preview: what each photo became (mask and framing) before anything runs.

``build(studio, uploads, prefix)`` adds under a row of four ``photo_upload`` boxes a gallery of the
framed views (``engine.data.photo_preview``, run as a job on the ``light`` lane so it does not wait for
a training), a note saying which views are given and what a missing one costs, and an "use unsure
masks" checkbox. Returns the checkbox: the tab passes its value as ``accept_unsure`` to the engine.
"""
from __future__ import annotations

import gradio as gr

from engine.data.photo_preview import preview_photos
from engine.geometry.camera import VIEW_NAMES
from studio.components import error_text, views_note


def build(studio, uploads: list, prefix: str, models=("student",)) -> gr.Checkbox:
    gallery = gr.Gallery(label="What each photo became (framed as the cameras see it; grey = not the shoe)",
                         columns=4, height=190, allow_preview=False, elem_id=f"{prefix}-preview")
    note = gr.Markdown(elem_id=f"{prefix}-preview-note")
    accept = gr.Checkbox(False, label="use unsure masks (I looked at them above)", elem_id=f"{prefix}-accept")
    job = gr.State(None)
    timer = gr.Timer(0.5, active=False)

    def start(*files):
        photos = {name: f for name, f in zip(VIEW_NAMES, files) if f}
        if not photos:
            return None, gr.Timer(active=False), [], ""
        try:
            job_id = studio.runner.submit(preview_photos, kind="photo-preview", lane="light", with_run=False,
                                          photos=photos, out_dir=studio.scratch)
        except Exception as exc:  # noqa: BLE001 - a refused preview is a message, never a crash
            return None, gr.Timer(active=False), [], error_text(exc)
        return {"id": job_id, "given": list(photos)}, gr.Timer(active=True), [], "masking and framing ..."

    def poll(state):
        snap = studio.runner.get(state["id"]) if state else None
        if not snap or snap["state"] in ("queued", "running"):
            return gr.update(), gr.update(), gr.update()
        if snap["state"] != "succeeded":
            return [], f"**No usable photo.** {snap.get('error') or snap['state']}", gr.Timer(active=False)
        res = studio.runner.result(state["id"])
        lines = [f"- {line}" for line in res["summary"].splitlines()]
        if res["unsure"]:
            lines.append(f"- **Unsure mask: {', '.join(res['unsure'])}** (orange frame). Tick *use unsure masks* "
                         "if it looks right, or upload a cut-out with transparency.")
        lines.append(f"- {views_note(res['views'], models)}")
        return [tuple(x) for x in res["images"]], "\n".join(lines), gr.Timer(active=False)

    for k, box in enumerate(uploads):  # any box changing re-previews all four; one API name for the client
        box.change(start, inputs=uploads, outputs=[job, timer, gallery, note], show_progress="hidden",
                   api_name=f"{prefix}_preview" if k == 0 else False)
    timer.tick(poll, inputs=[job], outputs=[gallery, note, timer], show_progress="hidden",
               api_name=f"{prefix}_preview_poll")
    return accept
