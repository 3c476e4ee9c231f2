"""Small UI pieces shared by tabs."""
from __future__ import annotations

import html
import time

import gradio as gr


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
