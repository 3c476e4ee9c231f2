"""Export tab (placeholder until its issue lands): says what it will do."""
from __future__ import annotations

from studio.components import planned
from studio.context import Studio


def build(studio: Studio) -> None:
    planned("export a trained student to ONNX (optionally INT8), check parity against torch, time it, and offer the files for download.", "issue 6")
