"""Compare tab (placeholder until its issue lands): says what it will do."""
from __future__ import annotations

from studio.components import planned
from studio.context import Studio


def build(studio: Studio) -> None:
    planned("show teacher, student and ground-truth meshes side by side in 3D, coloured by distance to ground truth, with per-shoe metrics and the worst shoes of a run.", "issue 6")
