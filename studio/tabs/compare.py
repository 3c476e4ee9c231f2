"""Compare tab: teacher, student and GT of one shoe side by side in 3D, coloured by distance to GT, with
that shoe's metrics and the run's worst shoes; or the student (and, on request, the teacher) on uploaded
photos."""
from __future__ import annotations

import html

import gradio as gr

from engine import runs
from engine.config import UserError
from engine.data import layout
from engine.evaluate.compare import compare_photos, compare_shoe, legend, worst_shoes
from engine.evaluate.mesh_eval import METRICS
from engine.geometry.camera import VIEW_NAMES
from engine.students.checkpoint import checkpoint_path
from engine.teachers.base import teacher_names
from engine.teachers.run import run_teacher
from studio import photo_preview
from studio.components import (error_text, photo_upload, photos_md, poll_finished, refused, run_picker, start_job,
                               views_note)
from studio.context import Studio

# (alpha °, beta °, radius): the same for the three viewers. The meshes are normalised (bbox centre at the
# origin, longest side 1, toe along z); a three-quarter view from 1.45 units lets the shoe fill most of a
# viewer's width (tests/test_browser_tabs.py measures it) instead of a quarter of it end-on.
CAMERA = (45, 70, 1.45)
VIEWERS = ("teacher", "student", "gt")
ROW_KEYS = ("model", *METRICS, "vertices", "faces")
EMPTY_TABLE = {"headers": list(ROW_KEYS), "data": []}  # a cleared metrics table (no shoe with GT shown)


def legend_html(info: dict | None = None) -> str:
    """A horizontal colour bar with the ramp's stops in normalised distance units."""
    info = info or legend()
    stops = info["stops"]
    gradient = ", ".join(f"{c} {100 * i / (len(stops) - 1):.0f}%" for i, (_, c) in enumerate(stops))
    ticks = "".join(f"<span>{d:g}{'+' if i == len(stops) - 1 else ''}</span>" for i, (d, _) in enumerate(stops))
    return (f"<div class='distance-legend'><div style='height:12px;border-radius:3px;background:linear-gradient("
            f"to right, {gradient})'></div><div style='display:flex;justify-content:space-between;font-size:12px'>"
            f"{ticks}</div><small>{html.escape(info['text'])}</small></div>")


def metrics_table(rows: list[dict]) -> list[list]:
    return [[r.get(k) if not isinstance(r.get(k), float) else round(r[k], 5) for k in ROW_KEYS] for r in rows]


def run_shoes(studio: Studio, run_id: str) -> list[str]:
    """The shoes of the run's dataset (from its config.json)."""
    run = runs.load_run(run_id, studio.runs_root, studio.runner.live_ids())
    return layout.shoe_ids(studio.dataset_path(run["config"]["data"]))


def worst_rows(studio: Studio, run_id: str) -> tuple[list[list], str]:
    try:
        rows = worst_shoes(runs.run_dir(run_id, studio.runs_root))
    except UserError as exc:
        return [], f"{error_text(exc)} — use **Evaluate run** below or the Train 3D tab."
    return ([[r["shoe"], round(r["student_cd_l1"], 5), None if r["teacher_cd_l1"] is None else round(r["teacher_cd_l1"], 5),
              round(r["student_f1"], 3)] for r in rows], "Worst shoes of the run (val split, student CD-L1); click one to open it.")


def build(studio: Studio) -> None:
    gr.Markdown("Teacher, student and ground truth side by side. Student and teacher are coloured by each vertex's "
                "distance to the GT surface; metrics use the evaluation's normalisation (each mesh: bbox centre, "
                "longest side 1; F-score at 1 % / 2 % of it).")
    with gr.Row():
        run, ckpt = run_picker(studio, "compare-run")
    with gr.Tab("Dataset shoe"):
        with gr.Row():
            shoe = gr.Dropdown(choices=[], label="Shoe", allow_custom_value=True, elem_id="compare-shoe")
            go = gr.Button("Compare", variant="primary", elem_id="compare-go")
    with gr.Tab("Upload photos"):
        with gr.Row():
            uploads = [photo_upload(label=name, image_mode="RGBA", height=140, sources=["upload"],
                                    elem_id=f"compare-upload-{name}") for name in VIEW_NAMES]
        with gr.Row():
            go_photos = gr.Button("Run the student", variant="primary", elem_id="compare-photos-go")
            teacher = gr.Dropdown(choices=teacher_names(), value=teacher_names()[0], label="Teacher")
            go_teacher = gr.Button("Run the teacher too (may be slow)", elem_id="compare-teacher-go")
        accept = photo_preview.build(studio, uploads, "compare")
    progress = gr.HTML(elem_id="compare-progress")
    with gr.Row():
        viewers = {name: gr.Model3D(label=label, height=320, camera_position=CAMERA, elem_id=f"compare-{name}")
                   for name, label in zip(VIEWERS, ("Teacher", "Student", "Ground truth"))}
    gr.HTML(legend_html(), elem_id="compare-legend")
    table = gr.Dataframe(headers=list(ROW_KEYS), label="This shoe's metrics", interactive=False,
                         elem_id="compare-metrics")
    notes = gr.Markdown(elem_id="compare-notes")
    worst_note = gr.Markdown()
    worst = gr.Dataframe(headers=["shoe", "student CD-L1", "teacher CD-L1", "student F@1%"], interactive=False,
                         label="Worst shoes", elem_id="compare-worst")
    evaluate = gr.Button("Evaluate run")
    job = gr.State(None)  # {"id", "what"}: what = "shoe" | "photos" | "teacher" | "evaluate"
    timer = gr.Timer(1.0, active=False)

    def pick_run(run_id):
        if not run_id:
            return gr.update(choices=[]), [], ""
        try:
            choices = run_shoes(studio, run_id)
        except UserError as exc:
            return gr.update(choices=[]), [], error_text(exc)
        rows, note = worst_rows(studio, run_id)
        return gr.update(choices=choices, value=rows[0][0] if rows else (choices[0] if choices else None)), rows, note

    def submit(what, fn, **kwargs):
        return start_job(studio.runner, fn, f"compare-{what}", what, **kwargs)

    def start_shoe(run_id, which, sid):
        try:
            run_dir = runs.run_dir(run_id or "", studio.runs_root)
        except UserError as exc:
            return refused(exc)
        return submit("shoe", compare_shoe, run_dir=run_dir, shoe_id=sid or "", out_dir=studio.scratch,
                      checkpoint=which)

    def open_worst(run_id, which, evt: gr.SelectData):
        sid = evt.row_value[0] if evt.row_value else None
        return (gr.update(value=sid), *start_shoe(run_id, which, sid))

    def start_photos(run_id, which, front, left, back, right, unsure=False):
        files = (front, left, back, right)
        try:
            path = checkpoint_path(runs.run_dir(run_id or "", studio.runs_root), which)
        except UserError as exc:
            return refused(exc)
        return submit("photos", compare_photos, checkpoint=path, out_dir=studio.scratch,
                      photos={name: f for name, f in zip(VIEW_NAMES, files)}, accept_unsure=bool(unsure))

    def start_teacher(name, front, left, back, right, unsure=False):
        files = (front, left, back, right)
        paths = {n: f for n, f in zip(VIEW_NAMES, files) if f}
        state, bar, tick = submit("teacher", run_teacher, teacher=name, settings={"preset": "balanced"},
                                  out_dir=studio.scratch, view_paths=paths, accept_unsure=bool(unsure))
        return (dict(state, teacher=name, views=list(paths)) if state else state), bar, tick

    def start_eval(run_id):
        from engine.evaluate.mesh_eval import evaluate_run

        try:
            run_dir = runs.run_dir(run_id or "", studio.runs_root)
        except UserError as exc:
            return refused(exc)
        return submit("evaluate", evaluate_run, run_dir=run_dir)

    def poll(state, run_id):
        out, res = poll_finished(studio.runner, state, progress, timer, job)
        if res is None:
            return out
        what = state["what"]
        if what == "shoe":
            out.update({viewers[name]: res[f"{name}_glb"] for name in VIEWERS})
            out[table] = metrics_table(res["rows"])
            head = f"{res['shoe']} ({res['split']} split), {res['run']} {res['checkpoint']} (epoch {res['epoch']}) " \
                   f"— {res['seconds']} s"
            out[notes] = "\n".join(f"- {n}" for n in [head, *res["notes"]])
        elif what == "photos":  # uploads: no GT, so the shoe's metrics table no longer applies
            out.update({viewers["teacher"]: None, viewers["student"]: res["student_glb"], viewers["gt"]: None,
                        table: EMPTY_TABLE})
            out[notes] = photos_md(f"student on the uploaded photos: {res['stats']['student_ms']} ms; no GT, so no "
                                   f"colours or metrics\n{res.get('photos') or ''}", views_note(res["stats"]["views"]))
        elif what == "teacher":
            out.update({viewers["teacher"]: res["glb"], viewers["gt"]: None, table: EMPTY_TABLE})
            out[notes] = photos_md(f"teacher `{state['teacher']}` on the uploaded photos: "
                                   f"{res['stats'].get('seconds', 0):.1f} s\n{res.get('photos') or ''}",
                                   views_note(res["views"], (state["teacher"],)))
        else:  # evaluate
            out[worst], out[worst_note] = worst_rows(studio, run_id)
        return out

    started = [job, progress, timer]
    run.change(pick_run, inputs=[run], outputs=[shoe, worst, worst_note])
    go.click(start_shoe, inputs=[run, ckpt, shoe], outputs=started, api_name="compare_shoe")
    worst.select(open_worst, inputs=[run, ckpt], outputs=[shoe, *started])
    go_photos.click(start_photos, inputs=[run, ckpt, *uploads, accept], outputs=started, api_name="compare_photos")
    go_teacher.click(start_teacher, inputs=[teacher, *uploads, accept], outputs=started, api_name="compare_teacher")
    evaluate.click(start_eval, inputs=[run], outputs=started, api_name="compare_evaluate")
    timer.tick(poll, inputs=[job, run],
               outputs=[progress, *(viewers[n] for n in VIEWERS), table, notes, worst, worst_note, job, timer],
               api_name="compare_poll", show_progress="hidden")
