"""Small UI pieces shared by tabs."""
from __future__ import annotations

import html
import time

import gradio as gr


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


def planned(what: str, issue: str) -> gr.Markdown:
    """The honest placeholder for a tab whose capability has not landed yet: says what it will do."""
    return gr.Markdown(f"**Not available yet** ({issue}).\n\nThis tab will {what}", elem_classes=["planned"])


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
        eta = f" · ETA {format_seconds(remaining)}"
    msg = snap.get("error") if state == "failed" else snap.get("message", "")
    color = {"failed": "#dc2626", "cancelled": "#9ca3af", "succeeded": "#16a34a"}.get(state, "#2563eb")
    return (f"<div class='job-progress' data-state='{state}'>"
            f"<div style='background:#e5e7eb;border-radius:4px;height:14px;overflow:hidden'>"
            f"<div style='width:{pct:.1f}%;background:{color};height:14px'></div></div>"
            f"<small><b>{html.escape(state)}</b> · {pct:.0f}%{eta} · {html.escape(str(msg or ''))}</small></div>")


def format_seconds(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 60}m {seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def is_finished(snap: dict | None) -> bool:
    return bool(snap) and snap.get("state") in ("succeeded", "failed", "cancelled")


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
    return {"id": job_id, "what": what}, progress_html(runner.get(job_id)), gr.Timer(active=True)
