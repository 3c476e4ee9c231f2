"""Small UI pieces shared by tabs."""
from __future__ import annotations

import html
import time

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
    """One line for the UI from an engine error."""
    return f"⚠️ {str(exc).strip() or type(exc).__name__}"


def progress_html(snap: dict | None, idle: str = "") -> str:
    """A progress bar for a job snapshot (``JobRunner.get``): state, percent, message and ETA."""
    if not snap:
        return f"<div class='job-idle'>{html.escape(idle)}</div>" if idle else ""
    pct = 100.0 * float(snap.get("progress") or 0.0)
    state = snap.get("state", "?")
    eta = ""
    if state == "running" and snap.get("started") and 0.02 < pct < 100:
        elapsed = time.time() - snap["started"]
        remaining = elapsed * (100 - pct) / pct
        eta = f" · ETA {runs.format_duration(remaining)}"
    msg = snap.get("error") if state == "failed" else snap.get("message", "")
    color = {"failed": "#dc2626", "cancelled": "#9ca3af", "succeeded": "#16a34a"}.get(state, "#2563eb")
    return (f"<div class='job-progress' data-state='{state}'>"
            f"<div style='background:#e5e7eb;border-radius:4px;height:14px;overflow:hidden'>"
            f"<div style='width:{pct:.1f}%;background:{color};height:14px'></div></div>"
            f"<small><b>{html.escape(state)}</b> · {pct:.0f}%{eta} · {html.escape(str(msg or ''))}</small></div>")


def run_ids(studio, kind: str) -> list[str]:
    """IDs of the runs of ``kind`` under the studio's runs root, newest first."""
    return [r["id"] for r in runs.list_runs(studio.runs_root, studio.runner.live_ids()) if r["kind"] == kind]


def run_picker(studio, elem_id: str, kind: str = TRAIN_KIND) -> tuple[gr.Dropdown, gr.Radio]:
    """A row's start for tabs that work on a finished training run: the run (with a refresh button that
    re-lists the runs) and the checkpoint (best / last). The caller may add more to the same row."""
    run = gr.Dropdown(choices=run_ids(studio, kind), label="Run", allow_custom_value=True, elem_id=elem_id)
    refresh = gr.Button("↻ runs", scale=0)
    ckpt = gr.Radio(["best", "last"], value="best", label="Checkpoint")
    refresh.click(lambda: gr.update(choices=run_ids(studio, kind)), outputs=[run])
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
