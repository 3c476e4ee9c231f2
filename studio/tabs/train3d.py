"""Train 3D tab (placeholder until its issue lands): says what it will do."""
from __future__ import annotations

from studio.components import planned
from studio.context import Studio


def build(studio: Studio) -> None:
    planned("train the mesh student on α·Chamfer(teacher) + (1−α)·Chamfer(GT) + edge + Laplacian with α annealed, with live loss plots, Start / Stop / Resume, and the distilled-vs-baseline comparison table.", "issue 5")
