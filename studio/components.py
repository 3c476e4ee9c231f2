"""Small UI pieces shared by tabs."""
from __future__ import annotations

import html
import re

import gradio as gr

from engine import runs

TRAIN_KIND = "train3d"  # the run kind of 3D training runs (engine.cli.train.KIND)


def photo_upload(**kwargs) -> gr.Image:
    """A ``gr.Image(type="filepath")`` whose upload always reaches the handler.

    ``gr.Image`` opens every upload with PIL before the handler runs; a file PIL cannot read (a text file
    named .png, an empty or truncated file, a decompression bomb) then fails inside Gradio with a bare
    "Error". This one hands such a file's path (already checked by Gradio to be an upload) to the handler
    unchanged, so the engine's photo loader answers with its message naming the file. (The preprocess is
    wrapped on the instance: subclassing a Gradio component writes a ``.pyi`` stub next to this file.)"""
    image = gr.Image(type="filepath", **kwargs)
    strict = image.preprocess

    def preprocess(payload):
        try:
            return strict(payload)
        except Exception:  # noqa: BLE001 - anything PIL raises; the engine's loader says what is wrong
            if payload is None or getattr(payload, "path", None) is None:
                raise
            return str(payload.path)

    image.preprocess = preprocess
    return image


def error_text(exc: BaseException) -> str:
    """One line for the UI from an engine error (plain text: no emoji, which render as empty boxes where no
    emoji font is installed)."""
    return f"Error: {str(exc).strip() or type(exc).__name__}"


def availability_md() -> str:
    """The teachers and whether each can run here, as a Markdown list marked in words ("(available)" /
    "(not available)"), not ✅ / ⛔, which render as empty boxes without an emoji font."""
    from engine.teachers.base import teacher_availability

    return "\n".join(f"- `{r['name']}` ({'available' if r['available'] else 'not available'}): {r['reason']}"
                     for r in teacher_availability())


def settings_md(settings: dict | None) -> str:
    """A settings dict as a compact ``key = value`` line (``grid = 96 · alpha_threshold = 128``), not a raw
    Python dict; nested dicts are flattened with dots, unset (None) values left out."""
    def flat(d, prefix=""):
        for k, v in (d or {}).items():
            yield from flat(v, f"{prefix}{k}.") if isinstance(v, dict) else [(f"{prefix}{k}", v)] * (v is not None)

    return " · ".join(f"`{k} = {v}`" for k, v in flat(settings)) or "defaults"


MISSING_VIEW_COST = {  # what a missing view costs each model, said next to its result
    "student": "the student was trained on all four views and sees a missing one as empty, so the sides it "
               "cannot see come out as a rough, blob-like guess",
    "visual-hull": "the visual hull carves the shape out of the silhouettes it is given: from one view it is "
                   "that silhouette extruded straight through (a slab); it needs several views — all four to "
                   "carve toe, heel and both sides",
    "occupancy": "the learned teacher guesses the unseen sides from the shoes it was trained on: fewer views, "
                 "a less faithful shape",
}


def views_note(given, models=("student",)) -> str:
    """A line for a result made from uploaded photos: which views were given and, when some are missing,
    what that costs each of ``models`` (``"student"`` or a teacher name)."""
    from engine.geometry.camera import VIEW_NAMES

    given = [v for v in VIEW_NAMES if v in set(given)]
    if len(given) == len(VIEW_NAMES):
        return f"Views given: all four ({', '.join(VIEW_NAMES)})."
    missing = [v for v in VIEW_NAMES if v not in given]
    costs = [MISSING_VIEW_COST.get(m, f"{m} guesses the missing views from the ones it has") for m in models]
    return (f"**Views given: {len(given)} of 4** ({', '.join(given) or 'none'}); missing: {', '.join(missing)}. "
            + " ".join(c[0].upper() + c[1:] + "." for c in costs))


def photos_md(summary: str | None, note: str) -> str:
    """A result's photo lines (``PreparedViews.summary``: what each view became, or why it was left out)
    and its ``views_note``, as a Markdown list."""
    return "\n".join(f"- {line}" for line in [*(summary or "").splitlines(), note] if line)


ETA_IN_MESSAGE = re.compile(r"(\s*·\s*|^)ETA\s+\d[^·]*?(?=\s*·|\s*$)")  # an engine step's own "· ETA 4m 26s"


def progress_html(snap: dict | None, idle: str = "") -> str:
    """A progress bar for a job snapshot (``JobRunner.get``): state, percent, one ETA and the message.

    The ETA is the job's (``Job.eta``: the whole job, from its first progress report); an ETA inside the
    engine's message (a training loop's, for its own step of the job) is dropped, so one line never shows two."""
    if not snap:
        return f"<div class='job-idle'>{html.escape(idle)}</div>" if idle else ""
    pct = 100.0 * float(snap.get("progress") or 0.0)
    state = snap.get("state", "?")
    eta = f" · ETA {runs.format_duration(snap['eta'])}" if state == "running" and snap.get("eta") is not None else ""
    msg = snap.get("error") if state == "failed" else ETA_IN_MESSAGE.sub("", str(snap.get("message") or "")).strip(" ·")
    color = {"failed": "#dc2626", "cancelled": "#9ca3af", "succeeded": "#16a34a"}.get(state, "#2563eb")
    return (f"<div class='job-progress' data-state='{state}'>"
            f"<div style='background:#e5e7eb;border-radius:4px;height:14px;overflow:hidden'>"
            f"<div style='width:{pct:.1f}%;background:{color};height:14px'></div></div>"
            f"<small><b>{html.escape(state)}</b> · {pct:.0f}%{eta} · {html.escape(str(msg or ''))}</small></div>")


def run_ids(studio, kind: str) -> list[str]:
    """IDs of the runs of ``kind`` under the studio's runs root, newest first."""
    return [r["id"] for r in runs.list_runs(studio.runs_root, studio.runner.live_ids()) if r["kind"] == kind]


_labels: dict[tuple[str, float], str] = {}  # (run folder, status.json mtime) -> choice text: history read once


def run_label(row: dict, path) -> str:
    """A run's choice text: ``ID · student|baseline · N ep · val CD-L1 x`` (the best epoch's, normalised
    units) and its state when it is not ``succeeded`` — so a student and its GT-only baseline (same
    settings) tell apart in a list."""
    from pathlib import Path

    path = Path(path)
    key = (str(path), (path / "status.json").stat().st_mtime if (path / "status.json").is_file() else 0.0)
    if key not in _labels:
        from engine import storage

        cfg = storage.read_json(path / "config.json", default={}) or {}
        epochs = [r for r in runs.read_history(path) if r.get("scope") == "epoch"]
        vals = [r["val_cd_l1"] for r in epochs if isinstance(r.get("val_cd_l1"), (int, float))]
        role = "baseline (GT only)" if cfg.get("baseline") else (
            "student + λ feat" if cfg.get("lambda_feat") else "student")
        parts = [row["id"], role]
        if epochs:
            parts.append(f"{max(int(r.get('epoch', 0)) for r in epochs)}/{cfg.get('epochs', '?')} ep")
        if vals:
            parts.append(f"val CD-L1 {min(vals):.4f}")
        if row["state"] != "succeeded":
            parts.append(row["state"])
        _labels[key] = " · ".join(parts)
    return _labels[key]


def run_choices(studio, kind: str = TRAIN_KIND, finished: bool = True) -> list[tuple[str, str]]:
    """``(choice text, run ID)`` of the runs of ``kind``, newest first; ``finished``: only runs that are over
    and have a best checkpoint (what Compare and Export can open)."""
    from engine.students.checkpoint import CKPT_DIR

    out = []
    for row in runs.list_runs(studio.runs_root, studio.runner.live_ids()):
        path = studio.runs_root / row["id"]
        if row["kind"] != kind or (finished and (row["state"] in runs.ACTIVE_STATES
                                                 or not (path / CKPT_DIR / "best.pt").is_file())):
            continue
        out.append((run_label(row, path), row["id"]))
    return out


def enclosing_tab():
    """The outermost ``gr.Tab`` around the block being built (a tab's own sub-tabs are not where the user
    lands); None outside one."""
    tab, block = None, gr.context.Context.block
    while block is not None:
        if isinstance(block, gr.Tab):
            tab = block
        block = getattr(block, "parent", None)
    return tab


def run_dropdown(studio, elem_id: str, label: str = "Run", kind: str = TRAIN_KIND, finished: bool = True,
                 every: float = 3.0, **kwargs) -> gr.Dropdown:
    """A dropdown of runs (``run_choices``: the ID first, then what tells the runs apart) that fills itself:
    when its tab is selected and, every ``every`` s, when the list changed (a run finished) — never
    rewriting it when nothing changed, so an open list stays open."""
    initial = run_choices(studio, kind, finished)
    run = gr.Dropdown(choices=initial, label=label, allow_custom_value=True, elem_id=elem_id, **kwargs)
    shown = gr.State(initial)
    timer = gr.Timer(every)

    def refill(current):
        new = run_choices(studio, kind, finished)
        if [list(c) for c in new] == [list(c) for c in current or []]:
            return gr.skip(), gr.skip()
        return gr.update(choices=new), new

    timer.tick(refill, inputs=[shown], outputs=[run, shown], show_progress="hidden", queue=False)
    tab = enclosing_tab()
    if tab is not None:
        tab.select(refill, inputs=[shown], outputs=[run, shown], show_progress="hidden", queue=False)
    run.refill = (refill, shown)  # for a tab that refills it itself (after its own job)
    return run


def run_picker(studio, elem_id: str, kind: str = TRAIN_KIND) -> tuple[gr.Dropdown, gr.Radio]:
    """A row's start for tabs that work on a finished training run: the run (``run_dropdown``, with a
    button that re-lists the runs at once) and the checkpoint (best / last). The caller may add more to the
    same row."""
    run = run_dropdown(studio, elem_id, kind=kind, scale=5, min_width=420)
    refresh = gr.Button("↻ runs", scale=0)
    ckpt = gr.Radio(["best", "last"], value="best", label="Checkpoint", scale=1)
    refill, shown = run.refill
    refresh.click(lambda: refill(None), outputs=[run, shown])
    return run, ckpt


def is_finished(snap: dict | None) -> bool:
    return bool(snap) and snap.get("state") in ("succeeded", "failed", "cancelled")


def job_state(job_id: str, what: str, **extra) -> dict:
    """A tab's job state (its ``gr.State``), one shape in every tab: ``{"id": the job, "what": what it does}``
    plus the few keys that tab needs to read its result (a dataset, a cache, a run)."""
    return {"id": job_id, "what": what, **extra}


def job_snapshot(runner, state: dict | None) -> dict | None:
    """The runner's snapshot of a tab's job (``job_state``), None when the tab has none."""
    return runner.get(state["id"]) if state else None


def poll_progress(snap: dict | None, progress: gr.HTML, timer: gr.Timer) -> dict:
    """The start of a timer poll's ``{component: value}`` outputs: the job's progress bar and, once the job is
    over (or there is none), its timer stopped. A poll adds the outputs its result changes."""
    out = {progress: progress_html(snap)}
    if not snap or is_finished(snap):
        out[timer] = gr.Timer(active=False)
    return out


def poll_finished(runner, state: dict | None, progress: gr.HTML, timer: gr.Timer, job: gr.State):
    """``(outputs, result)`` of a timer poll for a job whose state the tab clears when it ends: while it
    runs, just its progress (result None); once over, the timer stopped and ``job`` cleared, with the
    job's result when it succeeded (else None)."""
    snap = job_snapshot(runner, state)
    out = poll_progress(snap, progress, timer)
    if snap and not is_finished(snap):
        return out, None
    out[job] = None
    return out, (runner.result(state["id"]) if snap and snap["state"] == "succeeded" else None)


def refused(exc: BaseException) -> tuple:
    """A tab's (job state, progress, timer) outputs when a job could not start: no job, the message."""
    return None, error_text(exc), gr.Timer(active=False)


def start_job(runner, fn, kind: str, what: str, **kwargs) -> tuple:
    """Submit ``fn(ctx, **kwargs)`` as a job without a run folder; returns a tab's (job state, progress,
    timer) outputs: ``({"id", "what"}, its progress bar, a running timer)``, or ``refused(...)`` when the
    engine rejects the request (``UserError`` and friends)."""
    from engine.config import UserError

    try:
        job_id = runner.submit(fn, kind=kind, with_run=False, **kwargs)
    except (UserError, ValueError, TypeError) as exc:
        return refused(exc)
    return job_state(job_id, what), progress_html(runner.get(job_id)), gr.Timer(active=True)
