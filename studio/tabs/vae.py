"""VAE tab (placeholder until its issue lands): says what it will do."""
from __future__ import annotations

from studio.components import planned
from studio.context import Studio


def build(studio: Studio) -> None:
    planned("distil a teacher VAE into a TinyVAE (five-part loss, temperature, phases) with live plots of every loss term, a reconstruction grid and the size / speed / quality report.", "issue 7")
