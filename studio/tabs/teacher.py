"""Teacher tab: run a teacher on a dataset shoe or on 1-4 uploaded photos; view and download the mesh."""
from __future__ import annotations

import gradio as gr

from engine.config import UserError
from engine.data import layout
from engine.data.mesh_files import DOWNLOAD_FORMATS, prepare_download
from engine.geometry.camera import VIEW_NAMES
from engine.teachers.base import PRESETS, availability_markdown, teacher_names
from engine.teachers.run import run_teacher
from engine.progress import NULL_CONTEXT
from studio.components import error_text, is_finished, photo_upload, progress_html, refused, start_job
from studio.context import Studio


def build(studio: Studio) -> None:
    gr.Markdown("Run a teacher once and look at what it makes. Photos: RGBA PNGs whose alpha is the mask, or "
                "photos on a plain background; views follow the studio's camera convention (front looks at the toe).")
    gr.Markdown(availability_markdown())
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
    job = gr.State(None)  # {"id", "what": "generate"}: kept after the job ends (downloads start from it)
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
        except (UserError, ValueError, TypeError) as exc:
            return refused(exc)
        return start_job(studio.runner, run_teacher, "teacher", "generate", teacher=t, settings=settings,
                         view_paths=paths, out_dir=studio.scratch)

    def poll(state):
        snap = studio.runner.get(state["id"]) if state else None
        out = {progress: progress_html(snap)}
        if snap is not None and not is_finished(snap):
            return out
        out[timer] = gr.Timer(active=False)
        if snap and snap["state"] == "succeeded":
            res = studio.runner.result(state["id"])
            out.update({model3d: res["glb"], stats: res["stats"]})
        return out

    def prepare(state, fm, n):
        snap = studio.runner.get(state["id"]) if state else None
        if not snap or snap["state"] != "succeeded":
            return None
        res = studio.runner.result(state["id"])
        try:  # the engine decimates and writes; a few hundred ms for a teacher mesh
            return prepare_download(NULL_CONTEXT, res["vertices"], res["faces"], studio.scratch,
                                    f"teacher-{state['id']}", fm, int(n or 0))
        except (UserError, ValueError, TypeError) as exc:
            gr.Warning(error_text(exc))
            return None

    dataset.change(shoes_of, inputs=[dataset], outputs=[shoe])
    go.click(start, inputs=[source, dataset, shoe, teacher, preset, octree, seed, *uploads],
             outputs=[job, progress, timer], api_name="teacher_generate")
    stop.click(lambda s: studio.runner.cancel(s["id"]) if s else None, inputs=[job])
    timer.tick(poll, inputs=[job], outputs=[progress, model3d, stats, timer], show_progress="hidden")
    dl_btn.click(prepare, inputs=[job, fmt, faces], outputs=[download], api_name="teacher_download")
