"""Cache tab (placeholder until its issue lands): says what it will do."""
from __future__ import annotations

from studio.components import planned
from studio.context import Studio


def build(studio: Studio) -> None:
    planned("build the teacher cache for every shoe once (resumable, with progress, failures and the teacher-vs-ground-truth summary).", "issue 4")
