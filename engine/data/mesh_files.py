"""Mesh files for people: GLB for the 3D viewers, OBJ / PLY / STL / GLB for download.

Viewers get GLB (``gr.Model3D`` renders a GLB with vertex colours shaded and in colour; the same mesh
as OBJ renders as a black silhouette). Viewer meshes are normalised (``engine.geometry.normalise``)
so the default camera frames them and teacher / student / GT line up.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from engine import storage
from engine.config import UserError
from engine.geometry.normalise import normalise_vertices

DOWNLOAD_FORMATS = ("glb", "obj", "ply", "stl")
DEFAULT_COLOR = (176, 184, 196, 255)  # neutral blue-grey


def _trimesh(vertices, faces, vertex_colors=None):
    import trimesh

    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    if len(v) == 0 or len(f) == 0:
        raise UserError("cannot write an empty mesh (no vertices or no faces)")
    colors = np.asarray(vertex_colors if vertex_colors is not None else np.tile(DEFAULT_COLOR, (len(v), 1)))
    if colors.shape[1] == 3:
        colors = np.concatenate([colors, np.full((len(colors), 1), 255)], axis=1)
    return trimesh.Trimesh(vertices=v, faces=f, vertex_colors=colors.astype(np.uint8), process=False)


def mesh_bytes(vertices, faces, fmt: str, vertex_colors=None) -> bytes:
    """Encode a mesh as ``fmt`` (one of ``DOWNLOAD_FORMATS``); vertex colours are kept where the format can."""
    fmt = fmt.lower().lstrip(".")
    if fmt not in DOWNLOAD_FORMATS:
        raise UserError(f"unsupported mesh format {fmt!r}; use one of {', '.join(DOWNLOAD_FORMATS)}")
    data = _trimesh(vertices, faces, vertex_colors).export(file_type=fmt)
    return data.encode("utf-8") if isinstance(data, str) else data


def write_mesh(path: Path, vertices, faces, vertex_colors=None) -> Path:
    """Write a mesh atomically; the format comes from the file extension."""
    path = Path(path)
    return storage.write_bytes(path, mesh_bytes(vertices, faces, path.suffix, vertex_colors))


def viewer_glb(out_dir: Path, vertices, faces, vertex_colors=None, name: str = "mesh") -> Path:
    """A normalised GLB for ``gr.Model3D`` in ``out_dir``; the file name is keyed on the content, so
    the viewer reloads when the mesh changes and identical meshes are written once."""
    v, _, _ = normalise_vertices(np.asarray(vertices, dtype=np.float64))
    data = mesh_bytes(v, faces, "glb", vertex_colors)
    path = Path(out_dir) / f"{name}-{hashlib.sha256(data).hexdigest()[:12]}.glb"
    if not path.exists():
        storage.write_bytes(path, data)
    return path


def simplify(vertices, faces, target_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """Quadric decimation to about ``target_faces`` faces (``fast_simplification`` through trimesh);
    returns the input if already smaller. (pymeshlab was dropped here: inside the studio's threads it
    corrupted the heap and aborted the process at exit.)"""
    v, f = np.asarray(vertices, np.float64), np.asarray(faces, np.int64)
    if target_faces < 4:
        raise UserError(f"target face count must be at least 4 (got {target_faces})")
    if len(f) <= target_faces:
        return v.astype(np.float32), f
    import trimesh

    m = trimesh.Trimesh(v, f, process=False).simplify_quadric_decimation(face_count=int(target_faces))
    return np.asarray(m.vertices, np.float32), np.asarray(m.faces, np.int64)


def prepare_download(ctx, vertices, faces, out_dir: Path, stem: str, fmt: str = "glb", target_faces: int = 0) -> str:
    """A job: the mesh, decimated to about ``target_faces`` faces when that is > 0 (``simplify``), written
    as ``<out_dir>/<stem>-<faces>.<fmt>``; returns the file's path."""
    if fmt not in DOWNLOAD_FORMATS:
        raise UserError(f"unknown mesh format {fmt!r}; choose one of {', '.join(DOWNLOAD_FORMATS)}")
    ctx.progress(0.1, f"simplifying to {target_faces} faces" if target_faces else f"writing {fmt}")
    v, f = simplify(vertices, faces, int(target_faces)) if target_faces else (vertices, faces)
    return str(write_mesh(Path(out_dir) / f"{stem}-{len(f)}.{fmt}", v, f))
