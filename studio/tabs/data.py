"""Data tab: pick a dataset (or build the built-in sample shoes, or import meshes), validate it, look at one shoe."""
from __future__ import annotations

import gradio as gr

from engine.config import UserError, confine
from engine.data import layout
from engine.data.mesh_files import viewer_glb
from engine.data.render import MESH_SUFFIXES, render_mesh_files
from engine.data.sample_shoes import build_sample
from studio.components import error_text, is_finished, job_snapshot, job_state, poll_progress, progress_html
from studio.context import Studio

HEADERS = ["id", "status", "ground truth", "views", "problems"]


def report_rows(rows: list[dict]) -> list[list]:
    return [[r["id"], r["status"], "yes" if r["has_gt"] else "no", ", ".join(r["views"]),
             "; ".join(r["problems"])] for r in rows]


def summary_md(rows: list[dict], root) -> str:
    s = layout.summarise(rows)
    return (f"**{root}** — {s['total']} shoes: {s['ok']} ok, {s['photo-only']} photo-only (no ground truth; "
            f"teacher only, never in GT metrics), {s['problem']} with problems.")


def shoe_preview(studio: Studio, dataset: str, shoe_id: str):
    """(gallery items, GT GLB path or None, message) for one shoe. Light: 4 PNGs and one mesh."""
    if not dataset or not shoe_id:
        return [], None, ""
    try:
        shoe = layout.find_shoe(studio.dataset_path(dataset), shoe_id)
        for path in [*shoe.view_paths.values(), *([shoe.obj_path] if shoe.has_gt else [])]:
            confine(path, [studio.data_root], "file")  # a link out of the data root is refused, not followed
        views = layout.load_views(shoe)
        gallery = [(img, name) for name, img in views.items()]
        glb, note = None, "photo-only shoe: no ground-truth mesh"
        if shoe.has_gt:
            v, f, colors = layout.load_colored_mesh(shoe.obj_path)  # one parse: mesh and colours
            glb = str(viewer_glb(studio.scratch, v, f, colors, name=f"gt-{shoe.id}"))
            note = f"{shoe.id}: {len(v)} vertices, {len(f)} faces (normalised: bbox centre 0, longest side 1)"
        return gallery, glb, note
    except UserError as exc:
        return [], None, error_text(exc)


def build(studio: Studio) -> None:
    gr.Markdown("A dataset is `<root>/input_images/<id>/{front,left,back,right}.png` plus optional ground truth "
                "`<root>/OBJs/<id>.obj`. Folders live under the data root "
                f"(`{studio.data_root}`); the built-in sample is `sample`.")
    with gr.Row():
        dataset = gr.Dropdown(choices=layout.list_datasets(studio.data_root), value=None, label="Dataset",
                              allow_custom_value=True, scale=3, elem_id="data-dataset")
        check = gr.Button("Validate", variant="primary", scale=1, elem_id="data-validate")
    with gr.Accordion("Built-in sample shoes (procedural, deterministic by seed)", open=False):
        with gr.Row():
            count = gr.Number(value=101, precision=0, minimum=1, maximum=1000, label="shoes")
            seed = gr.Number(value=0, precision=0, label="seed")
            gt = gr.Number(value=0, precision=0, minimum=0, label="keep GT for the first N only (0 = all)",
                           elem_id="data-sample-gt")
            build_btn = gr.Button("Build sample", elem_id="data-build")
            cancel = gr.Button("Cancel", variant="stop")
        gr.Markdown("**Few scans, many photos**: with N > 0 only the first N shoes keep their ground-truth mesh "
                    "(dataset `sample-gtN`); the others are photo-only shoes, which a student learns from through "
                    "the teacher alone (its term has weight 1 for them) and which never enter the GT metrics.")
    with gr.Accordion("Import meshes (scans, CAD): render them into a dataset", open=False):
        gr.Markdown("Each mesh is rotated so its up axis is +Y, normalised and rendered into the four views; "
                    "the rotation is kept in the dataset's `import.json`. A scan lying along another axis renders "
                    "as slivers (Validate says so): pick its up axis, or **auto** (principal axes: the longest "
                    "horizontal, as a shoe's length; the shortest across, so a flat object shows its face).")
        with gr.Row():
            meshes = gr.File(file_count="multiple", file_types=list(MESH_SUFFIXES), label="mesh files",
                             elem_id="data-meshes")
            import_name = gr.Textbox(label="dataset name", placeholder="e.g. scans", elem_id="data-import-name")
            up = gr.Radio(["y", "z", "x", "auto"], value="y", label="up axis", elem_id="data-import-up")
            import_btn = gr.Button("Import", elem_id="data-import")
    progress = gr.HTML(elem_id="data-progress")
    summary = gr.Markdown()
    table = gr.Dataframe(headers=HEADERS, interactive=False, wrap=True, label="Validation", elem_id="data-table")
    with gr.Row():
        shoe = gr.Dropdown(choices=[], label="Shoe", allow_custom_value=True, elem_id="data-shoe")
        note = gr.Markdown()
    with gr.Row():
        gallery = gr.Gallery(label="Views (front, left, back, right)", columns=4, height=260, format="png",
                             elem_id="data-views")
        model = gr.Model3D(label="Ground truth", height=320, elem_id="data-gt")
    job = gr.State(None)  # {"id": job id, "what": "sample" | "import" | "check", "dataset": name}
    timer = gr.Timer(1.0, active=False)

    def start_check(name):
        try:
            root = studio.dataset_path(name)
        except UserError as exc:
            return None, error_text(exc), gr.Timer(active=False)
        job_id = studio.runner.submit(layout.check_dataset, kind="data-check", with_run=False, root=root)
        return job_state(job_id, "check", dataset=name), progress_html(studio.runner.get(job_id)), \
            gr.Timer(active=True)

    def start_sample(n, s, n_gt=0):
        try:
            n, s, n_gt = int(n), int(s), int(n_gt or 0)
            name = f"sample-gt{n_gt}" if n_gt else "sample"
            job_id = studio.runner.submit(build_sample, kind="sample", out=studio.data_root / name,
                                          count=n, seed=s, gt=n_gt or None)
        except (UserError, ValueError, TypeError) as exc:
            return None, error_text(exc), gr.Timer(active=False)
        return job_state(job_id, "sample", dataset=name), progress_html(studio.runner.get(job_id)), \
            gr.Timer(active=True)

    def start_import(files, name, axis):
        try:
            out = studio.dataset_path(name)
            paths = [getattr(f, "name", f) for f in (files or [])]
            job_id = studio.runner.submit(render_mesh_files, kind="data-import", with_run=False, files=paths,
                                          out=out, up=axis or "y")
        except (UserError, ValueError, TypeError) as exc:
            return None, error_text(exc), gr.Timer(active=False)
        return job_state(job_id, "import", dataset=name), progress_html(studio.runner.get(job_id)), \
            gr.Timer(active=True)

    def poll(state):
        if not state:
            return {timer: gr.Timer(active=False)}
        snap = studio.runner.get(state["id"])
        if not is_finished(snap):
            return {progress: progress_html(snap)}
        if state["what"] in ("sample", "import") and snap["state"] == "succeeded":
            nxt, bar, _ = start_check(state["dataset"])  # validate what was just built
            return {job: nxt, progress: bar, timer: gr.Timer(active=True),
                    dataset: gr.update(choices=layout.list_datasets(studio.data_root), value=state["dataset"])}
        out = {**poll_progress(snap, progress, timer), job: None}
        if state["what"] == "check" and snap["state"] == "succeeded":
            rows = studio.runner.result(state["id"])
            ids = [r["id"] for r in rows if r["status"] != "problem"]
            out.update({summary: summary_md(rows, state["dataset"]), table: report_rows(rows),
                        shoe: gr.update(choices=ids, value=ids[0] if ids else None)})
        return out

    def do_cancel(state):
        if state:
            studio.runner.cancel(state["id"])
        return progress_html(job_snapshot(studio.runner, state), idle="nothing running")

    check.click(start_check, inputs=[dataset], outputs=[job, progress, timer], api_name="validate_dataset")
    build_btn.click(start_sample, inputs=[count, seed, gt], outputs=[job, progress, timer], api_name="build_sample")
    import_btn.click(start_import, inputs=[meshes, import_name, up], outputs=[job, progress, timer],
                     api_name="import_meshes")
    cancel.click(do_cancel, inputs=[job], outputs=[progress])
    timer.tick(poll, inputs=[job], outputs=[job, progress, summary, table, dataset, shoe, timer],
               show_progress="hidden")
    shoe.change(lambda d, s: shoe_preview(studio, d, s), inputs=[dataset, shoe], outputs=[gallery, model, note],
                api_name="shoe_preview")
