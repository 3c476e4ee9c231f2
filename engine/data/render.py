"""Render meshes into the four calibrated RGBA views, and turn any folder of meshes into a dataset.

Rendering is CPU ray casting with Embree (``trimesh.ray.ray_pyembree``): one orthographic ray per pixel
centre from ``engine.geometry.camera.pixel_rays``, so a pixel sees exactly what the camera convention
says it sees (the visual-hull teacher and the student's projection use the same module).

Shading: Lambert with a light fixed **relative to each camera** (from the viewer's side, above and to the
left: direction ``0.72·towards-camera + 0.6·up - 0.35·right``, normalised), ambient 0.3 + diffuse 0.7,
two-sided (a back face seen through an open mesh is lit like a front face). Normals are the mesh's
vertex normals interpolated at the hit; colour is the hit triangle's vertex colours interpolated the
same way, or neutral grey (180, 180, 180). Alpha is 255 where a ray hits the mesh, 0 elsewhere (RGB 0).
"""
from __future__ import annotations

import functools
import io
import re
from pathlib import Path

import numpy as np

from engine.geometry.camera import IMAGE_SIZE, VIEW_NAMES, camera_axes, ndc_to_pixel, pixel_rays, project_ndc
from engine.progress import NULL_CONTEXT

MESH_SUFFIXES = (".obj", ".ply", ".stl", ".off", ".glb")
MAX_FACES = 2_000_000
GREY = (180, 180, 180)
AMBIENT, DIFFUSE = 0.3, 0.7
_LIGHT_CAM = np.array([-0.35, 0.6, 0.72])  # (right, up, towards camera) components


def _colors01(vertex_colors, n: int) -> np.ndarray:
    """Vertex colours as (n, 3) float64 in [0, 1]: integer input is 0-255, float input 0-1."""
    if vertex_colors is None:
        return np.broadcast_to(np.asarray(GREY, np.float64) / 255.0, (n, 3))
    c = np.asarray(vertex_colors)
    if c.shape[0] != n or c.ndim != 2 or c.shape[1] not in (3, 4):
        raise ValueError(f"vertex_colors must be ({n}, 3|4), got {c.shape}")
    c = c[:, :3]
    return c.astype(np.float64) / 255.0 if np.issubdtype(c.dtype, np.integer) else np.clip(c.astype(np.float64), 0, 1)


@functools.lru_cache(maxsize=16)
def _rays(name: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``pixel_rays`` as read-only (size, size, 3) arrays, computed once per view and size."""
    origins, dirs = pixel_rays(name, size)
    origins, dirs = origins.reshape(size, size, 3), dirs.reshape(size, size, 3)
    origins.flags.writeable = dirs.flags.writeable = False
    return origins, dirs


def render_views(vertices, faces, vertex_colors=None, size: int = IMAGE_SIZE,
                 names=VIEW_NAMES) -> dict[str, np.ndarray]:
    """Render a (normalised) mesh into ``{view name: (size, size, 4) uint8 RGBA}``.

    vertices: (V, 3) float; faces: (F, 3) int; vertex_colors: (V, 3|4) uint8 0-255 or float 0-1, or None.
    The mesh is assumed to be normalised already (inside [-0.5, 0.5]^3); nothing outside the camera's
    ``ORTHO_EXTENT`` square is visible. Deterministic: same input → same pixels.
    """
    import trimesh
    from trimesh.ray.ray_pyembree import RayMeshIntersector
    from trimesh.triangles import points_to_barycentric

    v = np.asarray(vertices, np.float64).reshape(-1, 3)
    f = np.asarray(faces, np.int64).reshape(-1, 3)
    if len(v) == 0 or len(f) == 0:  # nothing to see: fully transparent views
        return {name: np.zeros((size, size, 4), np.uint8) for name in names}
    colors = _colors01(vertex_colors, len(v))
    mesh = trimesh.Trimesh(v, f, process=False)
    normals = np.asarray(mesh.vertex_normals)  # (V, 3)
    caster = RayMeshIntersector(mesh)
    out: dict[str, np.ndarray] = {}
    for name in names:
        # Only pixels inside the mesh's projected bounding box (+1 px) can be hit: cast just those.
        cols, rows = ndc_to_pixel(project_ndc(v, name), size).T
        r0, r1 = max(int(np.floor(rows.min())) - 1, 0), min(int(np.ceil(rows.max())) + 1, size)
        c0, c1 = max(int(np.floor(cols.min())) - 1, 0), min(int(np.ceil(cols.max())) + 1, size)
        image = np.zeros((size, size, 4), np.uint8)
        if r0 >= r1 or c0 >= c1:
            out[name] = image
            continue
        origins, dirs = (a[r0:r1, c0:c1].reshape(-1, 3) for a in _rays(name, size))
        tri = caster.intersects_first(origins, dirs)  # (n,), -1 = miss
        hit = np.nonzero(tri >= 0)[0]
        window = np.zeros(((r1 - r0) * (c1 - c0), 4), np.uint8)
        if len(hit):
            fi = f[tri[hit]]  # (H, 3)
            corners = v[fi]  # (H, 3, 3)
            o, d = origins[hit], dirs[hit]
            n = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])  # (H, 3)
            denom = np.einsum("ij,ij->i", n, d)
            ok = np.abs(denom) > 1e-15
            t = np.where(ok, np.einsum("ij,ij->i", n, corners[:, 0] - o) / np.where(ok, denom, 1.0), 0.0)
            points = o + t[:, None] * d
            bary = np.full((len(hit), 3), 1.0 / 3.0)
            if ok.any():
                bary[ok] = points_to_barycentric(corners[ok], points[ok])
            bary = np.clip(np.nan_to_num(bary, nan=1.0 / 3.0), 0.0, 1.0)
            bary /= np.maximum(bary.sum(axis=1, keepdims=True), 1e-12)
            nrm = np.einsum("ij,ijk->ik", bary, normals[fi])  # (H, 3)
            nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-12)
            right, up, forward = camera_axes(name)
            towards = -forward
            nrm *= np.where(nrm @ towards < 0, -1.0, 1.0)[:, None]  # two-sided
            light = _LIGHT_CAM[0] * right + _LIGHT_CAM[1] * up + _LIGHT_CAM[2] * towards
            light /= np.linalg.norm(light)
            shade = AMBIENT + DIFFUSE * np.clip(nrm @ light, 0.0, 1.0)  # (H,)
            rgb = np.einsum("ij,ijk->ik", bary, colors[fi]) * shade[:, None]
            window[hit, :3] = np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)
            window[hit, 3] = 255
        image[r0:r1, c0:c1] = window.reshape(r1 - r0, c1 - c0, 4)
        out[name] = image
    return out


def mesh_to_obj_bytes(vertices: np.ndarray, faces: np.ndarray, vertex_colors: np.ndarray | None = None,
                      header: str = "engine.data") -> bytes:
    """Wavefront OBJ text: ``v x y z [r g b]`` (colours as 0-1 floats, 4 decimals) and 1-based ``f`` lines.

    Fixed formatting (6 decimals for positions), so the same arrays always give the same bytes.
    """
    v = np.asarray(vertices, np.float64)
    if vertex_colors is not None:
        rgb = np.asarray(vertex_colors)[:, :3].astype(np.float64) / 255.0
        v = np.concatenate([v, rgb], axis=1)  # (V, 6)
        text_v = ("v %.6f %.6f %.6f %.4f %.4f %.4f\n" * len(v)) % tuple(v.ravel().tolist())
    else:
        text_v = ("v %.6f %.6f %.6f\n" * len(v)) % tuple(v.ravel().tolist())
    f = np.asarray(faces, np.int64) + 1
    text_f = ("f %d %d %d\n" * len(f)) % tuple(f.ravel().tolist())
    return (f"# {header}\n" + text_v + text_f).encode("ascii")


def png_bytes(rgba: np.ndarray) -> bytes:
    """Encode an (H, W, 4) uint8 image as PNG in memory (deterministic: no timestamps)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgba), "RGBA").save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def sanitise_id(stem: str) -> str:
    """A file stem turned into a valid dataset ID: other characters → ``_``, at most 64 characters."""
    s = re.sub(r"[^A-Za-z0-9_-]", "_", stem)[:64].strip("_")
    return s or "mesh"


def _unique_id(base: str, used: set[str]) -> str:
    sid, k = base, 2
    while sid in used:
        suffix = f"_{k}"
        sid, k = base[: 64 - len(suffix)] + suffix, k + 1
    used.add(sid)
    return sid


def _load_any(path: Path):
    """(vertices (V,3) float64, faces (F,3) int64, vertex colours (V,4) uint8 or None, note) from a mesh file.

    ``note`` says why a mesh renders grey (no colours in the file, or a texture that could not be read)."""
    import trimesh

    from engine.config import UserError

    try:
        mesh = trimesh.load(str(path), force="mesh", process=False)
    except Exception as exc:  # trimesh raises many types for bad files
        raise UserError(f"{path.name}: not a readable mesh ({type(exc).__name__}: {str(exc)[:160]})") from None
    faces = np.asarray(getattr(mesh, "faces", np.empty((0, 3))), np.int64)
    if len(faces) > MAX_FACES:
        raise UserError(f"{path.name}: {len(faces):,} faces is over the limit of {MAX_FACES:,}")
    if len(faces) == 0:
        raise UserError(f"{path.name}: no triangles in the file")
    colors, note = None, "no colours (grey)"
    visual = getattr(mesh, "visual", None)
    kind = getattr(visual, "kind", None)
    try:
        if kind in ("vertex", "face"):
            colors, note = np.asarray(visual.vertex_colors, np.uint8), ""
        elif kind == "texture":
            colors, note = np.asarray(visual.to_color().vertex_colors, np.uint8), "texture sampled at vertices"
    except Exception as exc:  # colours are decoration: a broken texture renders grey, and the row says so
        colors, note = None, f"colours unreadable ({type(exc).__name__}), rendered grey"
    return np.asarray(mesh.vertices, np.float64), faces, colors, note


def render_meshes_into_layout(ctx, meshes_dir: Path, out: Path, up: str = "y") -> list[dict]:
    """Turn every mesh file (obj, ply, stl, off, glb) in ``meshes_dir`` into a shoe of the dataset at ``out``.

    Each mesh is loaded (a scene is concatenated), rotated so ``up`` is up
    (``engine.geometry.orientation.rotation_for``: ``y`` as stored, ``z`` / ``x`` that axis up,
    ``auto`` principal axes), normalised, written as ``out/OBJs/<id>.obj`` and rendered into
    ``out/input_images/<id>/{front,left,back,right}.png``; ``out/import.json`` records per ID the source
    file, ``up`` and the rotation matrix (rows: the new X, Y, Z in the file's coordinates). The ID is the file stem made
    valid (``sanitise_id``); stems that collide get ``_2``, ``_3`` … in file-name order. Open or
    multi-part meshes are fine; unreadable files and meshes over 2M faces are skipped and reported.
    Files of an ID that already exists in ``out`` are replaced (re-running is idempotent).
    Returns one row per file: ``{"id", "source", "status": "ok"|"skipped", "message"}``.
    """
    from engine import storage
    from engine.config import UserError
    from engine.geometry.normalise import normalise_vertices
    from engine.geometry.orientation import UP_CHOICES, rotation_for

    if up not in UP_CHOICES:
        raise UserError(f"--up {up!r}: use one of {', '.join(UP_CHOICES)}")

    ctx = ctx or NULL_CONTEXT
    meshes_dir, out = Path(meshes_dir), Path(out)
    if not meshes_dir.is_dir():
        raise UserError(f"{meshes_dir}: no such folder")
    files = sorted(p for p in meshes_dir.iterdir() if p.is_file() and p.suffix.lower() in MESH_SUFFIXES)
    if not files:
        raise UserError(f"{meshes_dir}: no mesh files ({', '.join(MESH_SUFFIXES)})")
    used: set[str] = set()
    rows: list[dict] = []
    record = storage.read_json(out / "import.json", {})
    record = record if isinstance(record, dict) else {}
    for i, path in enumerate(files):
        ctx.check_cancelled()
        sid = _unique_id(sanitise_id(path.stem), used)
        row = {"id": sid, "source": path.name, "status": "ok", "message": ""}
        try:
            v, f, colors, note = _load_any(path)
            rotation = rotation_for(v, f, up)
            v = v @ rotation.T
            try:
                v, _c, _s = normalise_vertices(v)
            except ValueError as exc:
                raise UserError(f"{path.name}: {exc}") from None
            images = render_views(v, f, colors)
            for name, image in images.items():
                storage.write_bytes(out / "input_images" / sid / f"{name}.png", png_bytes(image))
            storage.write_bytes(out / "OBJs" / f"{sid}.obj", mesh_to_obj_bytes(v, f, colors))
            row["message"] = f"{len(v)} vertices, {len(f)} faces" + (f", {note}" if note else "")
            record[sid] = {"source": path.name, "up": up, "rotation": np.round(rotation, 6).tolist()}
            storage.write_json(out / "import.json", record)
        except UserError as exc:
            row.update(status="skipped", message=str(exc))
            ctx.log(f"skipped {path.name}: {exc}")
        rows.append(row)
        ctx.progress((i + 1) / len(files), f"{path.name} -> {sid}")
    return rows


def render_mesh_files(ctx, files: list, out: Path, up: str = "y") -> list[dict]:
    """``render_meshes_into_layout`` for a list of mesh files (the Data tab's uploads): each is staged by
    its own file name in a temporary folder (a hard link, or a copy across file systems) and the folder
    is rendered into ``out``. ``UserError`` when no file is given or a name repeats."""
    import os
    import shutil
    import tempfile

    from engine.config import UserError

    files = [Path(f) for f in (files or []) if f]
    if not files:
        raise UserError(f"upload at least one mesh file ({', '.join(MESH_SUFFIXES)})")
    names = [f.name for f in files]
    if len(set(names)) != len(names):
        raise UserError("two uploads have the same file name; rename one")
    with tempfile.TemporaryDirectory(prefix="ds-meshes-") as tmp:
        for f in files:
            if not f.is_file():
                raise UserError(f"{f.name}: no such file")
            try:
                os.link(f, Path(tmp) / f.name)
            except OSError:
                shutil.copyfile(f, Path(tmp) / f.name)
        return render_meshes_into_layout(ctx, Path(tmp), out, up=up)
