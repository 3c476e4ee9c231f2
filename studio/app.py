"""Builds the Gradio app from the tab modules. No work happens here: tabs call ``engine``."""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from studio.context import Studio
from studio.tabs import cache, compare, data, export, runs, teacher, train3d, vae

TABS = (  # (label, module): the pipeline order
    ("Data", data),
    ("Teacher", teacher),
    ("Cache", cache),
    ("Train 3D", train3d),
    ("VAE", vae),
    ("Compare", compare),
    ("Export", export),
    ("Runs", runs),
)
CSS_PATH = Path(__file__).resolve().parent.parent / "assets" / "studio.css"


def build_app(studio: Studio | None = None) -> gr.Blocks:
    """The whole studio as a ``gr.Blocks`` (not launched)."""
    studio = studio or Studio()
    with gr.Blocks(title="Distillation Studio", analytics_enabled=False) as demo:
        gr.Markdown("# Distillation Studio\nDistil a slow teacher into a fast student — 3D shoes "
                    "(multiview photos → mesh) and VAEs. Work runs as background jobs; see **Runs**.")
        for label, module in TABS:
            with gr.Tab(label, id=label.lower().replace(" ", "-")):
                module.build(studio)
    return demo
