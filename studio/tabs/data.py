"""Data tab (placeholder until its issue lands): says what it will do."""
from __future__ import annotations

from studio.components import planned
from studio.context import Studio


def build(studio: Studio) -> None:
    planned("choose a dataset folder or the built-in sample, build the sample with a progress bar, show the validation table, and show a selected shoe's four photos and its ground-truth mesh in 3D.", "issue 3")
