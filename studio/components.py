"""Small UI pieces shared by tabs."""
from __future__ import annotations

import gradio as gr


def planned(what: str, issue: str) -> gr.Markdown:
    """The honest placeholder for a tab whose capability has not landed yet: says what it will do."""
    return gr.Markdown(f"**Not available yet** ({issue}).\n\nThis tab will {what}", elem_classes=["planned"])


def error_text(exc: BaseException) -> str:
    """One line for the UI from an engine error."""
    return f"⚠️ {str(exc).strip() or type(exc).__name__}"
