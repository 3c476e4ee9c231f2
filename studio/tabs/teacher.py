"""Teacher tab: run a teacher on a dataset shoe or on 1-4 uploaded photos; view and download the mesh."""
from __future__ import annotations

import gradio as gr

from engine.config import UserError
from engine.data import layout
from engine.data.mesh_files import DOWNLOAD_FORMATS, simplify, write_mesh
from engine.geometry.camera import VIEW_NAMES
from engine.teachers.base import PRESETS, teacher_availability, teacher_names
from engine.teachers.run import run_teacher
from studio.components import error_text, is_finished, photo_upload, progress_html
from studio.context import Studio


def _availability() -> str:
    return "\n".join(f"- `{r['name']}`: {'✅' if r['available'] else '⛔'} {r['reason']}" for r in teacher_availability())


def build(studio: Studio) -> None:
    gr.Markdown("Run a teacher once and look at what it makes. Photos: RGBA PNGs whose alpha is the mask, or "
                "photos on a plain background; views follow the studio's camera convention (front looks at the toe).")
    gr.Markdown(_availability())
    with gr.Row():
        with gr.Column(scale=2):
            with gr.Tab("Dataset shoe"):
                dataset = gr.Dropdown(choices=layout.list_datasets(studio.data_root), label="Dataset",
                                      allow_custom_value=True, elem_id="teacher-dataset")
                shoe = gr.Dropdown(choices=[], label="Shoe", allow_custom_value=True, elem_id="teacher-shoe")
            with gr.Tab("Upload photos"):
                with gr.Row():
                    uploads = [photo_upload(label=name, image_mode="RGBA", height=140,
                                        sources=["upload"], elem_id=f"teacher-upload-{name}") for name in VIEW_NAMES]
            source = gr.Radio(["dataset shoe", "uploaded photos"], value="dataset shoe", label="Use")
            with gr.Row():
                teacher = gr.Dropdown(choices=teacher_names(), value=teacher_names()[0], label="Teacher")
                preset = gr.Radio(list(PRESETS), value="balanced", label="Preset")
            with gr.Row():
                octree = gr.Number(value=None, precision=0, label="octree resolution (Hunyuan; 128 = low memory)")
                seed = gr.Number(value=0, precision=0, label="seed")
            with gr.Row():
                go = gr.Button("Generate", variant="primary", elem_id="teacher-generate")
                stop = gr.Button("Cancel", variant="stop")
            progress = gr.HTML(elem_id="teacher-progress")
        with gr.Column(scale=3):
            model3d = gr.Model3D(label="Teacher mesh", height=380, elem_id="teacher-model")
            stats = gr.JSON(label="Stats")
            with gr.Row():
                fmt = gr.Radio(list(DOWNLOAD_FORMATS), value="glb", label="Format")
                faces = gr.Number(value=0, precision=0, minimum=0, label="simplify to N faces (0 = keep)")
                dl_btn = gr.Button("Prepare download")
            download = gr.File(label="Download", elem_id="teacher-download")
    job = gr.State(None)
    timer = gr.Timer(1.0, active=False)

    def shoes_of(ds):
        try:
            return gr.update(choices=layout.shoe_ids(studio.dataset_path(ds)))
        except UserError:
            return gr.update(choices=[])

    def start(src, ds, sid, t, p, octr, sd, *files):
        try:
            if src == "dataset shoe":
                found = layout.find_shoe(studio.dataset_path(ds), sid or "")
                paths = {k: str(v) for k, v in found.view_paths.items()}
            else:
                paths = {name: f for name, f in zip(VIEW_NAMES, files) if f}
            settings = {"preset": p, "seed": int(sd or 0),
                        "octree_resolution": int(octr) if octr else None}
            job_id = studio.runner.submit(run_teacher, kind="teacher", with_run=False, teacher=t,
                                          settings=settings, view_paths=paths, out_dir=studio.scratch)
        except (UserError, ValueError, TypeError) as exc:
            return None, error_text(exc), gr.Timer(active=False)
        return job_id, progress_html(studio.runner.get(job_id)), gr.Timer(active=True)

    def poll(job_id):
        keep = gr.update()
        snap = studio.runner.get(job_id) if job_id else None
        if not is_finished(snap):
            return progress_html(snap), keep, keep, keep
        if snap["state"] != "succeeded":
            return progress_html(snap), keep, keep, gr.Timer(active=False)
        res = studio.runner.result(job_id)
        return progress_html(snap), res["glb"], res["stats"], gr.Timer(active=False)

    def prepare(job_id, fm, n):
        snap = studio.runner.get(job_id) if job_id else None
        if not snap or snap["state"] != "succeeded":
            return None
        res = studio.runner.result(job_id)
        try:
            v, f = (simplify(res["vertices"], res["faces"], int(n)) if n else (res["vertices"], res["faces"]))
            return str(write_mesh(studio.scratch / f"teacher-{job_id}-{len(f)}.{fm}", v, f))
        except UserError as exc:
            gr.Warning(error_text(exc))
            return None

    dataset.change(shoes_of, inputs=[dataset], outputs=[shoe])
    go.click(start, inputs=[source, dataset, shoe, teacher, preset, octree, seed, *uploads],
             outputs=[job, progress, timer], api_name="teacher_generate")
    stop.click(lambda j: studio.runner.cancel(j) if j else None, inputs=[job])
    timer.tick(poll, inputs=[job], outputs=[progress, model3d, stats, timer], show_progress="hidden")
    dl_btn.click(prepare, inputs=[job, fmt, faces], outputs=[download], api_name="teacher_download")
