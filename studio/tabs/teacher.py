"""Teacher tab: run a teacher on a dataset shoe or on 1-4 uploaded photos; view and download the mesh."""
from __future__ import annotations

import gradio as gr

from engine.config import UserError
from engine.data import layout
from engine.data.mesh_files import DOWNLOAD_FORMATS, prepare_download
from engine.geometry.camera import VIEW_NAMES
from engine.teachers.base import PRESETS, teacher_names
from engine.teachers.run import run_teacher
from engine.train.teacher_pretrain import corpus_and_pretrain
from engine.progress import NULL_CONTEXT
from studio.components import (availability_md, error_text, job_snapshot, job_state, photo_upload, photos_md,
                               poll_progress, progress_html, refused, run_ids, start_job, views_note)
from studio import photo_preview
from studio.context import Studio

PRETRAIN_KIND = "teacher-pretrain"


def build(studio: Studio) -> None:
    gr.Markdown("Run a teacher once and look at what it makes. Photos: RGBA PNGs whose alpha is the mask, or "
                "photos on a plain background; views follow the studio's camera convention (front looks at the toe).")
    gr.Markdown(availability_md())
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
                accept = photo_preview.build(studio, uploads, "teacher", models=("visual-hull", "occupancy"))
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
            views_md = gr.Markdown(elem_id="teacher-views")  # which views made this mesh, what a missing one costs
            stats = gr.JSON(label="Stats")
            with gr.Row():
                fmt = gr.Radio(list(DOWNLOAD_FORMATS), value="glb", label="Format")
                faces = gr.Number(value=0, precision=0, minimum=0, label="simplify to N faces (0 = keep)")
                dl_btn = gr.Button("Prepare download")
            download = gr.File(label="Download", elem_id="teacher-download")
    with gr.Accordion("Pre-train the learned teacher (occupancy)", open=False):
        gr.Markdown("The `occupancy` teacher is an image-conditioned implicit network pre-trained on a procedural "
                    "corpus of seven shoe families that no `sample` seed can produce. Its shipped weights are in "
                    "`assets/teachers/`; this trains new ones (CPU: about half a second per step). The run's loss "
                    "and held-out IoU per epoch are in the Runs tab; a stopped run resumes from its last epoch.")
        with gr.Row():
            pt_count = gr.Number(value=1024, precision=0, minimum=16, label="corpus shoes", elem_id="pretrain-count")
            pt_epochs = gr.Number(value=8, precision=0, minimum=1, label="epochs", elem_id="pretrain-epochs")
            pt_go = gr.Button("Pre-train", elem_id="pretrain-start")
            pt_run = gr.Dropdown(choices=run_ids(studio, PRETRAIN_KIND), label="run to resume",
                                 allow_custom_value=True, elem_id="pretrain-run")
            pt_resume = gr.Button("Resume")
            pt_stop = gr.Button("Cancel", variant="stop")
        pt_progress = gr.HTML(elem_id="pretrain-progress")
    pt_job = gr.State(None)  # {"id", "what": "pretrain"}
    pt_timer = gr.Timer(2.0, active=False)
    job = gr.State(None)  # {"id", "what": "generate", "teacher", "views"}: kept after it ends (downloads start from it)
    timer = gr.Timer(1.0, active=False)

    def shoes_of(ds):
        try:
            return gr.update(choices=layout.shoe_ids(studio.dataset_path(ds)))
        except UserError:
            return gr.update(choices=[])

    def start(src, ds, sid, t, p, octr, sd, front, left, back, right, unsure=False):
        files = (front, left, back, right)
        try:
            if src == "dataset shoe":
                found = layout.find_shoe(studio.dataset_path(ds), sid or "")
                paths = {k: str(v) for k, v in found.view_paths.items()}
            else:
                paths = {name: f for name, f in zip(VIEW_NAMES, files) if f}
            settings = {"preset": p, "seed": int(sd or 0),
                        "octree_resolution": int(octr) if octr else None}
        except (UserError, ValueError, TypeError) as exc:
            return (*refused(exc), gr.update())
        state, bar, tick = start_job(studio.runner, run_teacher, "teacher", "generate", teacher=t, settings=settings,
                                     view_paths=paths, out_dir=studio.scratch, accept_unsure=bool(unsure),
                                     calibrated=src == "dataset shoe")
        # the previous mesh's download no longer matches what will be shown: cleared
        return (dict(state, teacher=t, views=list(paths)) if state else state), bar, tick, None

    def poll(state):
        snap = job_snapshot(studio.runner, state)
        out = poll_progress(snap, progress, timer)
        if snap and snap["state"] == "succeeded":
            res = studio.runner.result(state["id"])
            out.update({model3d: res["glb"], stats: res["stats"], download: None,
                        views_md: photos_md(res.get("photos"), views_note(res["views"], (state["teacher"],)))})
        return out

    def prepare(state, fm, n):
        snap = job_snapshot(studio.runner, state)
        if not snap or snap["state"] != "succeeded":
            return None
        res = studio.runner.result(state["id"])
        try:  # the engine decimates and writes; a few hundred ms for a teacher mesh
            return prepare_download(NULL_CONTEXT, res["vertices"], res["faces"], studio.scratch,
                                    f"teacher-{state['id']}", fm, int(n or 0))
        except (UserError, ValueError, TypeError) as exc:
            gr.Warning(error_text(exc))
            return None

    def start_pretrain(n, ep, run_id=None):
        from engine import runs
        from engine.teachers.occupancy import weights_path

        try:
            if run_id:  # resume that run from its checkpoints/last.pt with its own config
                run = runs.load_run(run_id, studio.runs_root, studio.runner.live_ids())
                if run["status"].get("state") in runs.ACTIVE_STATES:
                    raise UserError(f"{run_id} is still {run['status']['state']}")
                cfg = {k: v for k, v in run["config"].items() if k != "kind"}
                job_id = studio.runner.submit(corpus_and_pretrain, kind=PRETRAIN_KIND, config={**cfg, "resume": True},
                                              existing_run=runs.run_dir(run_id, studio.runs_root))
            else:
                cfg = {"corpus": str(studio.cache_root / f"teacher-corpus-{int(n)}"), "corpus_count": int(n),
                       "epochs": int(ep), "out": str(weights_path())}
                job_id = studio.runner.submit(corpus_and_pretrain, kind=PRETRAIN_KIND, config=cfg)
        except (UserError, ValueError, TypeError) as exc:
            return None, error_text(exc), gr.Timer(active=False), gr.update()
        return job_state(job_id, "pretrain"), progress_html(studio.runner.get(job_id)), gr.Timer(active=True), \
            gr.update(choices=run_ids(studio, PRETRAIN_KIND))

    def poll_pretrain(state):
        return poll_progress(job_snapshot(studio.runner, state), pt_progress, pt_timer)

    pt_go.click(start_pretrain, inputs=[pt_count, pt_epochs], outputs=[pt_job, pt_progress, pt_timer, pt_run],
                api_name="pretrain_start")
    pt_resume.click(lambda rid: start_pretrain(0, 0, rid or None), inputs=[pt_run],
                    outputs=[pt_job, pt_progress, pt_timer, pt_run], api_name="pretrain_resume")
    pt_stop.click(lambda s: studio.runner.cancel(s["id"]) if s else None, inputs=[pt_job])
    pt_timer.tick(poll_pretrain, inputs=[pt_job], outputs=[pt_progress, pt_timer], show_progress="hidden")
    dataset.change(shoes_of, inputs=[dataset], outputs=[shoe])
    go.click(start, inputs=[source, dataset, shoe, teacher, preset, octree, seed, *uploads, accept],
             outputs=[job, progress, timer, download], api_name="teacher_generate")
    stop.click(lambda s: studio.runner.cancel(s["id"]) if s else None, inputs=[job])
    timer.tick(poll, inputs=[job], outputs=[progress, model3d, views_md, stats, download, timer],
               show_progress="hidden", api_name="teacher_poll")
    dl_btn.click(prepare, inputs=[job, fmt, faces], outputs=[download], api_name="teacher_download")
