"""The shoe dataset layout (seed 000) and its validator.

::

    <root>/OBJs/<id>.obj                                   ground truth, optional per shoe
    <root>/input_images/<id>/{front,left,back,right}.png   the four calibrated views

IDs match ``engine.config.ID_PATTERN`` (``[A-Za-z0-9_-]{1,64}``). A shoe with photos and no OBJ is
*photo-only*: usable through the teacher, never in ground-truth metrics. A folder or OBJ whose name is
not a valid ID is never listed as a shoe; ``check_dataset`` reports it as a problem row instead.
Views are named and ordered as ``engine.geometry.camera.VIEW_NAMES``.
"""
from __future__ import annotations

import re

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.config import ID_PATTERN, UserError, validate_id
from engine.geometry.camera import IMAGE_SIZE, VIEW_NAMES
from engine.progress import NULL_CONTEXT

OBJ_DIR = "OBJs"
IMAGES_DIR = "input_images"


@dataclass
class Shoe:
    """One shoe of a dataset. ``view_paths`` holds only the views whose PNG exists."""

    id: str
    root: Path
    obj_path: Path | None
    view_paths: dict[str, Path] = field(default_factory=dict)

    @property
    def has_gt(self) -> bool:
        return self.obj_path is not None

    @property
    def has_all_views(self) -> bool:
        return all(name in self.view_paths for name in VIEW_NAMES)

    @property
    def missing_views(self) -> list[str]:
        return [name for name in VIEW_NAMES if name not in self.view_paths]


def _images_dir(root: Path) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: dataset folder not found")
    images = root / IMAGES_DIR
    if not images.is_dir():
        raise UserError(f"{root}: no {IMAGES_DIR}/ folder (expected {IMAGES_DIR}/<id>/front.png ...)")
    return images


def _make_shoe(root: Path, sid: str) -> Shoe:
    obj = root / OBJ_DIR / f"{sid}.obj"
    folder = root / IMAGES_DIR / sid
    views = {n: folder / f"{n}.png" for n in VIEW_NAMES if (folder / f"{n}.png").is_file()}
    return Shoe(id=sid, root=root, obj_path=obj if obj.is_file() else None, view_paths=views)


def _candidate_names(root: Path) -> tuple[list[str], list[str]]:
    """(photo folder names, OBJ stems) as found on disk, valid or not."""
    folders = sorted(p.name for p in (root / IMAGES_DIR).iterdir() if p.is_dir())
    objs_dir = root / OBJ_DIR
    stems = sorted(p.stem for p in objs_dir.iterdir() if p.is_file() and p.suffix == ".obj") if objs_dir.is_dir() else []
    return folders, stems


def list_shoes(root: Path) -> list[Shoe]:
    """Every shoe with a valid ID (a photo folder and/or a GT OBJ), sorted by ID.

    Raises ``UserError`` if ``root`` or ``root/input_images`` is missing. Names that are not valid IDs
    are skipped here (``check_dataset`` reports them).
    """
    root = Path(root)
    _images_dir(root)
    folders, stems = _candidate_names(root)
    ids = sorted({n for n in folders + stems if ID_PATTERN.match(n)})
    return [_make_shoe(root, sid) for sid in ids]


def shoe_ids(root: Path) -> list[str]:
    """IDs of ``list_shoes(root)``."""
    return [s.id for s in list_shoes(root)]


def find_shoe(root: Path, shoe_id: str) -> Shoe:
    """The shoe ``shoe_id`` of the dataset at ``root``; ``UserError`` for a bad or unknown ID."""
    validate_id(shoe_id, "shoe ID")
    root = Path(root)
    _images_dir(root)
    shoe = _make_shoe(root, shoe_id)
    if not shoe.view_paths and not shoe.has_gt and not (root / IMAGES_DIR / shoe_id).is_dir():
        raise UserError(f"shoe {shoe_id!r} not found in {root}")
    return shoe


_WS = rb"[ \t\r\f\v]"  # whitespace inside a line
_END = rb"(?=\n|\Z)"
# Both patterns start with a literal newline (the file gets one prepended): Python's re then skips ahead
# to candidate lines, 2-3x faster than ``^`` with re.M. Possessive quantifiers: no backtracking.
_OBJ_INCOMPLETE = re.compile(rb"\n[vf] " + _WS + rb"*+(?:\S++(?:" + _WS + rb"++\S++)?+)?+" + _WS + rb"*+" + _END)
_ZERO = rb"[+-]?0(?=/|" + _WS + rb"|\n|\Z)"  # a face token whose vertex index is 0: "0", "-0", "0/1", "0//2" ...
_OBJ_INDEX_ZERO = re.compile(rb"\nf(?= )(?:" + _WS + rb"++(?!" + _ZERO + rb")\S++)*+" + _WS + rb"++" + _ZERO)


def _check_obj_lines(path: Path) -> None:
    """Catch what trimesh would load silently: a ``v`` line with < 3 numbers or an ``f`` line with
    < 3 vertices (typically the cut-off last line — truncation), and a face index 0 (OBJ counts from 1).
    Two regular-expression passes over the file (the per-line Python loop they replace cost ~60 ms per
    sample shoe, now ~6 ms); the first offending line is named."""
    data = b"\n" + path.read_bytes()
    hits = [(m.start() + 1, kind) for kind, rx in (("incomplete", _OBJ_INCOMPLETE), ("zero", _OBJ_INDEX_ZERO))
            if (m := rx.search(data))]
    if not hits:
        return
    start, kind = min(hits)
    end = data.find(b"\n", start)
    line = data[start:end if end >= 0 else len(data)].strip()[:40].decode("ascii", "replace")
    number = data.count(b"\n", 0, start)  # the prepended newline makes this the 1-based line number
    if kind == "incomplete":
        raise UserError(f"{path.name}: line {number} is incomplete ({line!r}); the file looks truncated")
    raise UserError(f"{path.name}: line {number} has face index 0 ({line!r}); OBJ vertex indices start at 1")


def load_mesh(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a mesh file: ``(vertices (V, 3) float32, faces (F, 3) int64)``. Scenes are concatenated.

    ``UserError`` naming the file when it is missing, unreadable, truncated (OBJ), has no faces, face
    indices out of range, non-finite coordinates, zero extent or zero total area.
    """
    vertices, faces, _ = load_colored_mesh(path)
    return vertices, faces


def load_colored_mesh(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``load_mesh`` plus the per-vertex colours as trimesh reads them ((V, 4) uint8 RGBA: an OBJ's
    ``v x y z r g b`` lines, else trimesh's default colour), or None; one parse of the file."""
    import trimesh

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path.name}: no such mesh file")
    if path.stat().st_size == 0:
        raise UserError(f"{path.name}: empty file")
    if path.suffix.lower() == ".obj":
        _check_obj_lines(path)
    try:
        mesh = trimesh.load(str(path), force="mesh", process=False)
    except Exception as exc:  # trimesh raises IndexError, ValueError, KeyError ... for broken files
        raise UserError(f"{path.name}: not a readable mesh ({type(exc).__name__}: {str(exc)[:120]})") from None
    vertices = np.asarray(getattr(mesh, "vertices", np.empty((0, 3))), np.float64)
    faces = np.asarray(getattr(mesh, "faces", np.empty((0, 3))), np.int64)
    if len(faces) == 0 or len(vertices) == 0:
        raise UserError(f"{path.name}: no faces (empty or unreadable mesh)")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise UserError(f"{path.name}: face indices out of range (truncated or corrupt file)")
    if not np.isfinite(vertices).all():
        raise UserError(f"{path.name}: non-finite vertex coordinates (NaN or inf)")
    _check_float32(path, vertices)
    extent = vertices.max(axis=0) - vertices.min(axis=0)
    if not extent.max() > 0:
        raise UserError(f"{path.name}: degenerate mesh (zero extent: all vertices at one point)")
    tri = vertices[faces]  # (F, 3, 3)
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1).sum()
    if not area > 1e-12 * extent.max() ** 2:
        raise UserError(f"{path.name}: degenerate mesh (zero surface area)")
    colors = getattr(getattr(mesh, "visual", None), "vertex_colors", None)  # trimesh's default colour if none stored
    colors = np.asarray(colors) if colors is not None and len(colors) == len(vertices) else None
    return vertices.astype(np.float32), faces, colors


def _check_float32(path: Path, vertices: np.ndarray) -> None:
    """The pipeline reads meshes in float32: coordinates beyond its range, or so far from the origin that
    float32 cannot tell the mesh's own vertices apart (spacing there > 1e-4 of the mesh's size), are a
    ``UserError`` saying which — checked in float32, as they will be used."""
    largest = float(np.abs(vertices).max())
    with np.errstate(over="ignore"):
        as32 = vertices.astype(np.float32)
    if not np.isfinite(as32).all():
        raise UserError(f"{path.name}: vertex coordinates overflow float32 (largest {largest:.3g}; float32 ends at "
                        "3.4e38); rescale the mesh")
    extent = float((vertices.max(axis=0) - vertices.min(axis=0)).max())
    spacing = float(np.spacing(np.float32(largest)))
    if extent > 0 and spacing > 1e-4 * extent:  # (zero extent: said by load_mesh)
        raise UserError(f"{path.name}: the mesh sits too far from the origin for float32 (coordinates up to "
                        f"{largest:.3g}, size {extent:.3g}: float32 steps by {spacing:.3g} there); centre it near "
                        "the origin")


def load_views(shoe_or_dir, names=VIEW_NAMES, size: int = IMAGE_SIZE) -> dict[str, np.ndarray]:
    """The shoe's views as ``{name: (size, size, 4) uint8 RGBA}`` via ``photos.load_photo``.

    ``shoe_or_dir``: a ``Shoe`` or a folder holding ``<name>.png``. Missing views are absent from the
    dict (the caller decides); an unreadable one raises ``UserError`` naming it.
    """
    from engine.data.photos import load_photo

    if isinstance(shoe_or_dir, Shoe):
        paths = {n: shoe_or_dir.view_paths[n] for n in names if n in shoe_or_dir.view_paths}
    else:
        folder = Path(shoe_or_dir)
        paths = {n: folder / f"{n}.png" for n in names if (folder / f"{n}.png").is_file()}
    return {n: load_photo(p, size) for n, p in paths.items()}


def _bad_id_rows(root: Path) -> list[dict]:
    """One problem row per invalid name (a photo folder and an OBJ of the same name share a row)."""
    folders, stems = _candidate_names(root)
    rule = "(use 1-64 characters from A-Z a-z 0-9 _ -)"
    problems: dict[str, list[str]] = {}
    for name in folders:
        if not ID_PATTERN.match(name):
            problems.setdefault(name, []).append(f"bad ID: folder {IMAGES_DIR}/{name!r} {rule}")
    for stem in stems:
        if not ID_PATTERN.match(stem):
            problems.setdefault(stem, []).append(f"bad ID: mesh {OBJ_DIR}/{stem + '.obj'!r} {rule}")
    return [{"id": name, "status": "problem", "problems": msgs, "has_gt": False, "views": []}
            for name, msgs in sorted(problems.items())]


def check_shoe(shoe: Shoe, check_meshes: bool = True) -> dict:
    """Validate one shoe: ``{"id", "status": "ok"|"photo-only"|"problem", "problems": [...], "has_gt", "views"}``.
    Each view must load (``photos.load_photo``) and look right to the cameras (``photos.view_problems``:
    no sliver, not cut off, one height in every view)."""
    from engine.data.photos import load_photo, view_problems

    problems: list[str] = []
    if shoe.missing_views:
        if not shoe.view_paths:
            problems.append(f"no photos (expected {IMAGES_DIR}/{shoe.id}/{{{','.join(VIEW_NAMES)}}}.png)")
        else:
            problems.append("missing views: " + ", ".join(f"{n}.png" for n in shoe.missing_views))
    views = {}
    for name, path in shoe.view_paths.items():
        try:
            views[name] = load_photo(path)
        except UserError as exc:
            problems.append(str(exc))
    problems += [f"{IMAGES_DIR}/{shoe.id}/{p}" if p.split(":")[0].endswith(".png") else p
                 for p in view_problems(views)]
    if shoe.has_gt and check_meshes:
        try:
            load_mesh(shoe.obj_path)
        except UserError as exc:
            problems.append(str(exc))
    status = "problem" if problems else ("ok" if shoe.has_gt else "photo-only")
    return {"id": shoe.id, "status": status, "problems": problems, "has_gt": shoe.has_gt,
            "views": sorted(shoe.view_paths, key=VIEW_NAMES.index)}


def check_dataset(ctx, root: Path, check_meshes: bool = True) -> list[dict]:
    """One row per shoe (valid IDs sorted, then bad names) — see ``check_shoe`` for the row.

    ``ctx`` first, like every job function (``NULL_CONTEXT`` or ``None`` when called directly), so the
    job runner can run it as ``submit(check_dataset, root=...)``. A broken shoe never stops the others.
    Checks every view with ``load_photo`` (readable, 32-4096 px, usable mask) and, with
    ``check_meshes``, every GT mesh with ``load_mesh``. Cancellable between shoes.
    """
    if isinstance(ctx, (str, Path)):
        raise TypeError("check_dataset(ctx, root, ...): pass a job context first (engine.jobs.NULL_CONTEXT)")
    ctx = ctx or NULL_CONTEXT
    root = Path(root)
    shoes = list_shoes(root)
    rows = []
    for i, shoe in enumerate(shoes):
        ctx.check_cancelled()
        rows.append(check_shoe(shoe, check_meshes))
        ctx.progress((i + 1) / max(len(shoes), 1), f"checked {shoe.id}")
    return rows + _bad_id_rows(root)


def summarise(rows: list[dict]) -> dict[str, int]:
    """Counts per status plus ``total``."""
    out = {"total": len(rows), "ok": 0, "photo-only": 0, "problem": 0}
    for r in rows:
        out[r["status"]] = out.get(r["status"], 0) + 1
    return out


def list_datasets(data_root: Path) -> list[str]:
    """Names (valid IDs) of the folders directly under ``data_root`` that hold an ``input_images/`` folder,
    sorted; ``[]`` when ``data_root`` does not exist."""
    root = Path(data_root)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir()
                  if p.is_dir() and (p / IMAGES_DIR).is_dir() and ID_PATTERN.match(p.name))
