"""Teacher tab (placeholder until its issue lands): says what it will do."""
from __future__ import annotations

from studio.components import planned
from studio.context import Studio


def build(studio: Studio) -> None:
    planned("run a teacher (embedded visual hull, or Hunyuan3D-2mv where a GPU and its weights exist) on a dataset shoe or on 1-4 uploaded photos, show the mesh in 3D with its stats, and offer it as GLB / OBJ / PLY / STL.", "issue 4")
