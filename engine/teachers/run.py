"""Run one teacher on one set of photos: what the Teacher tab's Generate does, as a job."""
from __future__ import annotations

from pathlib import Path

from engine.config import UserError
from engine.geometry.camera import VIEW_NAMES
from engine.progress import NULL_CONTEXT


def run_teacher(ctx, teacher: str, settings: dict, view_paths: dict[str, str], out_dir: Path,
                accept_unsure: bool = False, calibrated: bool = False) -> dict:
    """Load the photos (any of front / left / back / right, at least one; masked and framed by
    ``engine.data.photos.prepare_views``), run ``teacher`` and write a viewer GLB into ``out_dir``.
    Returns ``{"stats", "glb", "vertices", "faces", "photos", "views"}`` (arrays for downloads; ``photos``:
    one line per given view saying what it became or why it was left out; ``views``: those used).
    ``accept_unsure``: use masks under the confidence bar (the user looked at the preview);
    ``calibrated``: the paths are a dataset shoe's views (``load_photo``: masked, never reframed).

    Bad photos, unknown views and unavailable teachers raise ``UserError`` with the reason.
    """
    from engine.data.mesh_files import viewer_glb
    from engine.data.photos import PreparedViews, load_photo, prepare_views
    from engine.teachers.base import TeacherSettings, get_teacher

    ctx = ctx or NULL_CONTEXT
    unknown = sorted(set(view_paths) - set(VIEW_NAMES))
    if unknown:
        raise UserError(f"unknown view(s) {', '.join(unknown)}; use {', '.join(VIEW_NAMES)}")
    paths = {k: v for k, v in view_paths.items() if v}
    if not paths:
        raise UserError("give at least one photo (front, left, back or right)")
    ctx.progress(0.05, "loading photos")
    if calibrated:  # a dataset shoe's views: calibrated by contract, never reframed
        views = {name: load_photo(Path(p)) for name, p in paths.items()}
        prepared = PreparedViews(views, {name: "dataset view" for name in views})
    else:
        prepared = prepare_views({name: Path(p) for name, p in paths.items()}, accept_unsure=accept_unsure)
    for why in prepared.errors.values():
        ctx.log(f"left out: {why}")
    views = prepared.views
    model = get_teacher(teacher)
    ctx.progress(0.15, f"running {teacher} on {', '.join(views)}")
    ctx.check_cancelled()
    result = model.predict(views, TeacherSettings.from_dict(settings))
    ctx.log(f"{teacher}: {result.stats.get('vertices')} vertices, {result.stats.get('faces')} faces in "
            f"{result.stats.get('seconds', 0):.2f} s")
    ctx.progress(0.95, "writing the mesh")
    glb = viewer_glb(out_dir, result.vertices, result.faces, name=f"teacher-{teacher}")
    return {"stats": result.stats, "glb": str(glb), "vertices": result.vertices, "faces": result.faces,
            "photos": prepared.summary(), "views": list(views)}
