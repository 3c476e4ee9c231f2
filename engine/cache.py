"""The teacher cache: each shoe's teacher mesh computed once, read many times by training.

Layout (``cache_dir``)::

    <shoe_id>.pt         tensors only: vertices (V, 3) float32, faces (F, 3) int64,
                         points (10000, 3) float32, normals (10000, 3) float32 (area-uniform surface
                         samples and their face normals, seeded from the shoe ID: deterministic),
                         optionally features float16 (the teacher's intermediate features read through
                         a forward hook: occupancy teacher (4, C, 8, 8) per-view maps; Hunyuan (T, C)
                         image tokens); and two strings that make the file verifiable on its own:
                         shoe_id and fingerprint (a file copied over another shoe's, or from another
                         build, is refused on load)
    metadata.json        {format 2, teacher, settings, teacher_settings, config, data_root, n_points, updated,
                         entries: {id: {status ok|failed, seconds, error, fingerprint, images, config, bytes,
                         vertices, faces, cd_l1, fscore@1%, updated}}}
    metadata.rank<R>.json  per-rank shards of a sharded build (merged into metadata.json by rank 0)

Meshes are normalised (bbox centre at the origin, longest side 1); ``cd_l1`` / ``fscore@1%`` compare
the teacher with the ground truth in those units (F-score threshold 1 % of the longest side) and are
``None`` for photo-only shoes. The fingerprint is the SHA-256 of the teacher name, its settings JSON
and the bytes of the input images; ``images`` is the SHA-256 of the image bytes alone (which dataset's
pictures the entry was made from). A mismatch (or a missing/resized entry file) makes the entry
stale and it is rebuilt. ``check_dataset`` refuses a cache none of whose entries was made from the
dataset's images (another dataset's cache). Entries of the first format (no ``images``, no ID inside the
file) are stale: the next build remakes them, and training with such a cache alone says to rebuild it.
``entry_problem`` / ``usable_entry`` are the one rule of a usable entry (status ok, fingerprint matches,
file present with its size, and — loaded — the shoe ID and fingerprint inside it match) that the build,
training and evaluation share; ``cache_summary`` (``cache show``) verifies every ok entry's file the same
way. The entry file's format is ``engine.cache_entry``'s. Failed entries with an unchanged fingerprint are
kept unless ``retry_failed``. Every file is written atomically and an entry file is written before its metadata,
so a build killed at any moment resumes where it stopped. Entries load with
``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import glob
import time
from pathlib import Path
from typing import Any

from engine import cache_shards as shards
from engine import storage
from engine.cache_entry import (ENTRY_KEYS, FEATURES, ID_KEYS, N_POINTS, entry_path,  # noqa: F401 - the cache API
                                file_problem, fingerprint, image_fingerprint, load_entry, make_entry, point_seed,
                                settings_key)
from engine.config import UserError, validate_id
from engine.progress import NULL_CONTEXT, JobCancelled

METADATA = "metadata.json"
SHARD_GLOB = "metadata.rank*.json"
FORMAT = 2


def _newer(a: dict | None, b: dict) -> bool:
    return a is None or float(b.get("updated") or 0) >= float(a.get("updated") or 0)


def read_metadata(cache_dir: Path) -> dict | None:
    """``metadata.json`` with any per-rank shards merged in (newest entry per ID); ``None`` if none.
    ``UserError`` when ``metadata.json`` is there but unreadable."""
    cache_dir = Path(cache_dir)
    if cache_dir.exists() and not cache_dir.is_dir():
        raise UserError(f"{cache_dir}: not a folder (a teacher cache is a folder holding {METADATA})")
    meta = storage.read_json(cache_dir / METADATA)
    if meta is None and (cache_dir / METADATA).is_file():  # there, but cut short or not JSON: say so
        raise UserError(f"{cache_dir / METADATA}: unreadable (truncated or not JSON); remove it and build the "
                        "cache again (its entries are rebuilt)")
    shards = [storage.read_json(Path(p)) for p in sorted(glob.glob(str(cache_dir / SHARD_GLOB)))]
    shards = [s for s in shards if isinstance(s, dict)]
    if not isinstance(meta, dict):
        if not shards:
            return None
        meta = {k: v for k, v in shards[0].items() if k != "entries"}
        meta["entries"] = {}
    meta.setdefault("entries", {})
    for shard in shards:
        for sid, entry in (shard.get("entries") or {}).items():
            if _newer(meta["entries"].get(sid), entry):
                meta["entries"][sid] = entry
    return meta


def _select(data_root: Path, ids, first) -> list:
    from engine.data.layout import list_shoes

    shoes = list_shoes(data_root)
    if ids:
        by_id = {s.id: s for s in shoes}
        unknown = [i for i in ids if validate_id(i, "shoe ID") not in by_id]
        if unknown:
            raise UserError(f"shoe(s) not found in {data_root}: {', '.join(unknown)}")
        shoes = [by_id[i] for i in dict.fromkeys(ids)]
    if first is not None:
        if int(first) < 1:
            raise UserError(f"--first must be at least 1 (got {first})")
        shoes = shoes[: int(first)]
    if not shoes:
        raise UserError(f"no shoes to cache in {data_root}")
    return shoes


def _gt_metrics(shoe, vertices, faces) -> dict:
    """cd_l1 / fscore@1% of the teacher mesh vs the shoe's GT OBJ (None for photo-only shoes)."""
    if not shoe.has_gt:
        return {"cd_l1": None, "fscore@1%": None}
    import torch

    from engine.data.layout import load_mesh
    from engine.geometry.metrics import mesh_metrics

    try:
        gv, gf = load_mesh(shoe.obj_path)
    except UserError as exc:
        return {"cd_l1": None, "fscore@1%": None, "gt_error": str(exc)}
    m = mesh_metrics(torch.as_tensor(vertices), torch.as_tensor(faces), torch.as_tensor(gv), torch.as_tensor(gf),
                     n_points=N_POINTS, seed=0, normalise=True)
    return {"cd_l1": round(float(m["cd_l1"]), 6), "fscore@1%": round(float(m["fscore@1%"]), 6)}


def _build_one(teacher, settings, shoe, cache_dir: Path, fp: str | None, key: str, features: bool = False,
               images: str | None = None) -> dict:
    """Run the teacher on one shoe and write its entry file; returns its metadata record."""
    from engine.data.layout import load_views
    from engine.teachers.base import TeacherUnavailable

    t0 = time.perf_counter()
    record: dict[str, Any] = {"status": "failed", "fingerprint": fp, "images": images, "config": key, "error": None,
                              "bytes": 0,
                              "vertices": None, "faces": None, "features": None, "cd_l1": None, "fscore@1%": None}
    try:
        if fp is None:
            raise UserError("input images could not be read")
        if not shoe.view_paths:
            raise UserError(f"no input images in input_images/{shoe.id}/")
        result = teacher.predict(load_views(shoe), settings)
        feats = result.features if features else None
        if features and feats is None:
            raise UserError(f"{teacher.name} returned no features although the cache stores them")
        entry = make_entry(result.vertices, result.faces, shoe.id, feats, fp)
        path = storage.torch_save(entry_path(cache_dir, shoe.id), entry)
        record.update(features=list(entry[FEATURES].shape) if FEATURES in entry else None)
        record.update(status="ok", bytes=path.stat().st_size, vertices=int(len(result.vertices)),
                      faces=int(len(result.faces)), **_gt_metrics(shoe, result.vertices, result.faces))
    except (TeacherUnavailable, storage.DiskFull, JobCancelled):
        raise  # nothing would work for the other shoes either / the user asked to stop
    except UserError as exc:
        record["error"] = str(exc)
    except Exception as exc:  # a teacher crash is recorded for this shoe; the build carries on
        record["error"] = f"{type(exc).__name__}: {str(exc).strip()[:300]}"
    if record["status"] == "failed":
        entry_path(cache_dir, shoe.id).unlink(missing_ok=True)
    record.update(seconds=round(time.perf_counter() - t0, 4), updated=round(time.time(), 3))
    return record


def entry_problem(cache_dir: Path, meta: dict | None, shoe, fp: str | None = None) -> str | None:
    """Why the shoe's cache entry cannot be used, or ``None`` when it can: the one rule of a usable entry.

    Usable = the entry is in ``meta`` (``read_metadata``), its status is ``ok``, its fingerprint equals
    ``fp`` (default: ``fingerprint`` of the cache's teacher and settings and the shoe's current views —
    so changed images or settings make it stale) and its file is present with the recorded size. The
    build's up-to-date check, training and evaluation all ask here; ``usable_entry`` also loads it.
    """
    entry = ((meta or {}).get("entries") or {}).get(shoe.id)
    if entry is None:
        return "not in the teacher cache"
    if "images" not in entry:
        return "teacher entry of the first cache format (no image fingerprint); rebuild the cache"
    try:
        if entry["images"] != image_fingerprint(shoe.view_paths):
            return "teacher entry is stale (the shoe's images changed since the cache was built from them)"
        fp = fp or fingerprint(meta.get("teacher"), meta.get("teacher_settings"), shoe.view_paths)
    except OSError as exc:
        return f"views unreadable for the cache fingerprint ({exc})"
    if entry.get("status") != "ok":
        return f"teacher entry failed ({entry.get('error') or 'no error text'})"
    if entry.get("fingerprint") != fp:
        return "teacher entry is stale (teacher settings changed since the cache was built)"
    path = entry_path(cache_dir, shoe.id)
    if not path.is_file():
        return f"teacher entry file {path.name} is missing"
    if path.stat().st_size != entry.get("bytes"):
        return f"teacher entry file {path.name} changed size since the cache was built"
    return None


def usable_entry(cache_dir: Path, meta: dict | None, shoe, fp: str | None = None) -> tuple[dict | None, str | None]:
    """``(tensors, None)`` of the shoe's usable entry (``entry_problem`` says none, ``load_entry``
    loads it), else ``(None, why)``."""
    why = entry_problem(cache_dir, meta, shoe, fp)
    if why is not None:
        return None, why
    try:
        return load_entry(cache_dir, shoe.id, meta["entries"][shoe.id]["fingerprint"]), None
    except UserError as exc:
        return None, f"teacher entry unusable ({exc})"


def check_dataset(cache_dir: Path, meta: dict, shoes: list, data_root: Path) -> None:
    """``UserError`` when the cache was not built from this dataset: it has entries, yet none of them was
    made from the images of the shoe of its ID (another dataset's cache), or all are of the first format."""
    entries = meta.get("entries") or {}
    if not entries:
        return
    if not any("images" in e for e in entries.values()):
        raise UserError(f"{cache_dir}: a teacher cache of the first format (no image fingerprints); rebuild it: "
                        f"python -m engine cache build --data {data_root} --out {cache_dir}")
    for shoe in shoes:
        want = (entries.get(shoe.id) or {}).get("images")
        try:
            if want and shoe.view_paths and want == image_fingerprint(shoe.view_paths):
                return
        except OSError:
            continue
    raise UserError(f"{cache_dir}: this teacher cache was built from another dataset ({meta.get('data_root')}): "
                    f"none of its {len(entries)} entries matches the images of {data_root}; build a cache for it "
                    f"(python -m engine cache build --data {data_root} --out DIR) or choose its own cache")


def _up_to_date(meta: dict, fp: str | None, cache_dir: Path, shoe, retry_failed: bool) -> bool:
    """Skip the shoe in a build: a usable entry (``entry_problem``), or a failure with the same
    fingerprint (unless ``retry_failed``)."""
    old = (meta.get("entries") or {}).get(shoe.id)
    if not old or fp is None or old.get("fingerprint") != fp or "images" not in old:
        return False
    if old.get("status") == "failed":
        return not retry_failed
    return usable_entry(cache_dir, meta, shoe, fp)[0] is not None  # the file is verified too (ID, fingerprint)


def build_cache(ctx, data_root: Path, cache_dir: Path, teacher: str = "visual-hull", settings=None,
                first: int | None = None, ids: list[str] | None = None, rank: int = 0, world_size: int = 1,
                retry_failed: bool = False, features: bool = True) -> dict:
    """Build or update the teacher cache of the dataset at ``data_root`` in ``cache_dir``.

    ``features``: also store the teacher's intermediate features (float16) for feature-level distillation
    when the teacher has them (``teacher.has_features``); part of the fingerprint, so switching it
    rebuilds the entries.

    Up-to-date entries are skipped; failures are recorded with their error and the build carries on.
    With ``world_size > 1`` (torchrun: one call per rank) rank ``r`` takes ``shoes[r::world_size]``,
    writes ``metadata.rank<r>.json``, and after a gloo barrier rank 0 merges the shards into
    ``metadata.json``. Returns totals over all ranks: ``{done, failed, skipped, seconds, bytes, shoes,
    cache_dir}`` (``bytes`` = entry bytes written by this build).
    """
    from engine.teachers.base import TeacherSettings, get_teacher

    ctx = ctx or NULL_CONTEXT
    settings = settings or TeacherSettings()
    if not (0 <= rank < world_size):
        raise UserError(f"rank {rank} is outside 0..{world_size - 1}")
    cache_dir = Path(cache_dir)
    shoes = _select(Path(data_root), ids, first)
    model = get_teacher(teacher)
    store = bool(features and getattr(model, "has_features", False))
    tset = {**model.fingerprint_settings(settings), **({"features": True} if store else {})}
    key = settings_key(teacher, tset)
    storage.make_dirs(cache_dir)
    group = shards.dist_group(world_size)
    meta = read_metadata(cache_dir) or {"entries": {}}
    meta.update(format=FORMAT, teacher=teacher, settings=settings.to_dict(), teacher_settings=tset, config=key,
                data_root=str(Path(data_root).resolve()), n_points=N_POINTS)
    mine = shoes[rank::world_size]
    meta_path = cache_dir / (METADATA if world_size == 1 else f"metadata.rank{rank}.json")
    shard = meta if world_size == 1 else {k: v for k, v in meta.items() if k != "entries"} | {"entries": {}}
    storage.write_json(meta_path, shard)  # run-level fields now; entries follow shoe by shoe
    t0 = time.perf_counter()
    totals = {"done": 0, "failed": 0, "skipped": 0, "bytes": 0}
    for i, shoe in enumerate(mine):
        ctx.check_cancelled()
        try:
            fp, images = fingerprint(teacher, tset, shoe.view_paths), image_fingerprint(shoe.view_paths)
        except OSError:
            fp = images = None
        if _up_to_date(meta, fp, cache_dir, shoe, retry_failed):
            totals["skipped"] += 1
            ctx.progress((i + 1) / len(mine), f"{shoe.id}: up to date")
            continue
        record = _build_one(model, settings, shoe, cache_dir, fp, key, store, images)
        shard["entries"][shoe.id] = record
        shard["updated"] = record["updated"]
        storage.write_json(meta_path, shard)  # after the entry file: a kill in between only redoes this shoe
        ok = record["status"] == "ok"
        totals["done" if ok else "failed"] += 1
        totals["bytes"] += record["bytes"]
        if not ok:
            ctx.log(f"{shoe.id}: failed: {record['error']}")
        ctx.metric({"shoe": shoe.id, "status": record["status"], "seconds": record["seconds"],
                    "cd_l1": record["cd_l1"], "fscore@1%": record["fscore@1%"]})
        ctx.progress((i + 1) / len(mine), f"{shoe.id}: {record['status']} ({record['seconds']:.2f} s)")
    totals["seconds"] = round(time.perf_counter() - t0, 3)
    totals = shards.finish(cache_dir, group, rank, world_size, totals)
    return {**totals, "shoes": len(shoes), "cache_dir": str(cache_dir)}


def cache_summary(cache_dir: Path) -> dict:
    """Counts, size on disk, mean teacher CD-L1 / F@1% vs GT (normalised units), failures.

    ``stale`` counts entries built with other teacher settings than the cache's latest build.
    ``UserError`` when ``cache_dir`` holds no cache.
    """
    cache_dir = Path(cache_dir)
    meta = read_metadata(cache_dir)
    if meta is None:
        raise UserError(f"{cache_dir}: no teacher cache here ({METADATA} not found)")
    entries = meta.get("entries") or {}
    bad = {k: why for k, e in entries.items() if e.get("status") == "ok" and (why := file_problem(cache_dir, k, e))}
    ok = {k: e for k, e in entries.items() if e.get("status") == "ok" and k not in bad}
    cds = [e["cd_l1"] for e in ok.values() if e.get("cd_l1") is not None]
    fs = [e["fscore@1%"] for e in ok.values() if e.get("fscore@1%") is not None]
    size = sum(p.stat().st_size for p in cache_dir.iterdir() if p.is_file())
    return {
        "cache_dir": str(cache_dir), "teacher": meta.get("teacher"), "settings": meta.get("settings"),
        "entries": len(entries), "ok": len(ok), "failed": len(entries) - len(ok),
        "stale": sum(1 for e in entries.values() if e.get("config") != meta.get("config")),
        "missing_files": sorted(k for k in ok if not entry_path(cache_dir, k).is_file()),
        "size_bytes": size, "with_gt": len(cds),
        "mean_cd_l1": round(sum(cds) / len(cds), 6) if cds else None,
        "mean_fscore@1%": round(sum(fs) / len(fs), 6) if fs else None,
        "mean_seconds": round(sum(e.get("seconds") or 0 for e in ok.values()) / len(ok), 4) if ok else None,
        "failures": [{"id": k, "error": bad.get(k) or e.get("error")} for k, e in sorted(entries.items()) if k not in ok],
        "updated": meta.get("updated"),
    }


def list_caches(root: Path) -> list[str]:
    """Names of the teacher caches under ``root`` (folders holding a ``metadata.json``), sorted."""
    root = Path(root)
    return sorted(p.name for p in root.iterdir() if (p / METADATA).is_file()) if root.is_dir() else []


def cache_rows(cache_dir: Path) -> list[dict]:
    """One row per entry of the cache, sorted by shoe ID: ``{"id", "status", "cd_l1", "fscore@1%",
    "seconds", "error"}`` — ``status`` "ok", "failed", or "bad file" when an ok entry's file does not
    check out (``file_problem``; its reason in ``error``). Teacher vs GT in normalised units (longest
    side 1), None without GT. ``UserError`` when ``cache_dir`` holds no cache."""
    cache_dir = Path(cache_dir)
    meta = read_metadata(cache_dir)
    if meta is None:
        raise UserError(f"{cache_dir}: no teacher cache here ({METADATA} not found)")
    rows = []
    for sid, e in sorted((meta.get("entries") or {}).items()):
        status, error = e.get("status") or "?", e.get("error")
        if status == "ok":
            problem = file_problem(cache_dir, sid, e)
            status, error = ("bad file", problem) if problem else ("ok", None)
        rows.append({"id": sid, "status": status, "cd_l1": e.get("cd_l1"), "fscore@1%": e.get("fscore@1%"),
                     "seconds": e.get("seconds"), "error": error})
    return rows
