"""One teacher-cache entry file (``<cache>/<shoe_id>.pt``; layout in ``engine.cache``): its tensors, the
shoe ID and fingerprint stored inside it, how it is made, loaded and verified, and the fingerprints that
say which teacher, settings and images it was made from."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from engine import storage
from engine.config import UserError, validate_id
from engine.geometry.camera import VIEW_NAMES

N_POINTS = 10_000
ENTRY_KEYS = ("vertices", "faces", "points", "normals")
ID_KEYS = ("shoe_id", "fingerprint")  # strings inside each entry file (cache format 2)
FEATURES = "features"  # optional: the teacher's intermediate features, float16 (feature-level distillation)


def entry_path(cache_dir: Path, shoe_id: str) -> Path:
    return Path(cache_dir) / f"{validate_id(shoe_id, 'shoe ID')}.pt"


def point_seed(shoe_id: str) -> int:
    """Seed of a shoe's surface samples: the first 8 bytes of SHA-256(shoe id), below 2**63."""
    return int(hashlib.sha256(shoe_id.encode()).hexdigest()[:16], 16) % 2**63


def settings_key(teacher: str, teacher_settings: dict) -> str:
    """Short hash of teacher name + settings: entries built with other settings show as stale."""
    blob = json.dumps({"teacher": teacher, "settings": teacher_settings}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def fingerprint(teacher: str, teacher_settings: dict, view_paths: dict[str, Path]) -> str:
    """SHA-256 of the teacher name, its settings JSON and each view's name and file bytes."""
    h = hashlib.sha256()
    h.update(json.dumps({"teacher": teacher, "settings": teacher_settings}, sort_keys=True).encode())
    return _views_into(h, view_paths).hexdigest()


def image_fingerprint(view_paths: dict[str, Path]) -> str:
    """SHA-256 of each view's name and file bytes alone: which pictures an entry was made from."""
    return _views_into(hashlib.sha256(), view_paths).hexdigest()


def _views_into(h, view_paths: dict[str, Path]):
    for name in VIEW_NAMES:
        if name in view_paths:
            data = Path(view_paths[name]).read_bytes()
            h.update(f"\0{name}\0{len(data)}\0".encode())
            h.update(data)
    return h


def make_entry(vertices, faces, shoe_id: str, features=None, fp: str = "") -> dict:
    """The tensors stored for one shoe (see the module docstring for keys and shapes) with its ID and
    fingerprint ``fp``; ``features`` (the teacher's intermediate features, any shape) are stored as
    float16 when given. ``UserError`` when they are not finite (the entry is then recorded failed)."""
    import numpy as np
    import torch

    from engine.geometry.mesh import sample_points

    v = torch.as_tensor(vertices, dtype=torch.float32).contiguous()  # (V, 3)
    f = torch.as_tensor(faces, dtype=torch.int64).contiguous()  # (F, 3)
    gen = torch.Generator().manual_seed(point_seed(shoe_id))
    points, normals = sample_points(v, f, N_POINTS, generator=gen)  # (N, 3) each
    entry = {"vertices": v, "faces": f, "points": points.float().contiguous(), "normals": normals.float().contiguous(),
             "shoe_id": shoe_id, "fingerprint": fp}
    if features is not None:
        feats = torch.as_tensor(np.asarray(features, np.float32))
        if not bool(torch.isfinite(feats).all()) or not bool(torch.isfinite(feats.half()).all()):
            raise UserError("the teacher's features contain NaN or inf (or overflow float16)")
        entry[FEATURES] = feats.half().contiguous()
    return entry


def load_entry(cache_dir: Path, shoe_id: str, fp: str | None = None) -> dict:
    """One shoe's tensors (``weights_only`` load), checked to be this shoe's entry (its ``shoe_id``) and,
    given ``fp``, the one the metadata records (its ``fingerprint``). ``UserError`` when missing, corrupt,
    malformed, of the first format, or another shoe's / build's file."""
    import torch

    path = entry_path(cache_dir, shoe_id)
    data = storage.torch_load(path)
    if isinstance(data, dict) and sorted(k for k in data if k != FEATURES) == sorted(ENTRY_KEYS):
        raise UserError(f"{path.name}: a cache entry of the first format (no shoe ID inside); rebuild the cache")
    if not isinstance(data, dict) or sorted(k for k in data if k != FEATURES) != sorted(ENTRY_KEYS + ID_KEYS):
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise UserError(f"{path.name}: corrupt cache entry (keys {keys}, expected {', '.join(ENTRY_KEYS + ID_KEYS)})")
    if data["shoe_id"] != shoe_id:
        raise UserError(f"{path.name}: holds the teacher entry of {str(data['shoe_id'])[:64]!r}, not {shoe_id!r} "
                        "(a file copied over another); rebuild the cache")
    if fp is not None and data["fingerprint"] != fp:
        raise UserError(f"{path.name}: not the entry its metadata records (built from other images or teacher "
                        "settings: a replaced file); rebuild the cache")
    want = {"vertices": (torch.float32, None), "faces": (torch.int64, None),
            "points": (torch.float32, N_POINTS), "normals": (torch.float32, N_POINTS)}
    for key, (dtype, rows) in want.items():
        t = data[key]
        if not isinstance(t, torch.Tensor) or t.dtype != dtype or t.dim() != 2 or t.shape[1] != 3 \
                or (rows is not None and t.shape[0] != rows) or len(t) == 0:
            desc = f"{t.dtype} {tuple(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__
            raise UserError(f"{path.name}: corrupt cache entry ({key} is {desc})")
    if not all(torch.isfinite(data[k]).all() for k in ("vertices", "points", "normals")):
        raise UserError(f"{path.name}: corrupt cache entry (non-finite values)")
    f = data["faces"]
    if int(f.min()) < 0 or int(f.max()) >= len(data["vertices"]):
        raise UserError(f"{path.name}: corrupt cache entry (face indices out of range)")
    feats = data.get(FEATURES)
    if feats is not None and (not isinstance(feats, torch.Tensor) or feats.dtype != torch.float16
                              or not bool(torch.isfinite(feats).all())):
        raise UserError(f"{path.name}: corrupt cache entry (features are not finite float16)")
    return data


_VERIFIED: dict[tuple, str | None] = {}  # (file, mtime, size, recorded fingerprint) -> its problem


def file_problem(cache_dir: Path, shoe_id: str, record: dict) -> str | None:
    """Why the entry file of an ``ok`` record is not that entry: missing, resized, unreadable, another
    shoe's or build's file, the first format (``load_entry``); None when it is. Remembered per file version."""
    path = entry_path(cache_dir, shoe_id)
    try:
        st = path.stat()
    except OSError:
        return f"entry file {path.name} is missing"
    if st.st_size != record.get("bytes"):
        return f"entry file {path.name} changed size since the cache was built"
    key = (str(path), st.st_mtime_ns, st.st_size, record.get("fingerprint"))
    if key not in _VERIFIED:
        try:
            load_entry(cache_dir, shoe_id, record.get("fingerprint"))
            _VERIFIED[key] = None
        except UserError as exc:
            _VERIFIED[key] = str(exc)
    return _VERIFIED[key]
