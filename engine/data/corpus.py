"""The teacher corpus: procedural shoes of many families that no user sample can contain.

The learned teacher (``engine.teachers.occupancy``) is pre-trained here, never on the user's data — the
CPU-sized analogue of Hunyuan3D's "trained on millions". Shoes come from the same implicit field as the
built-in sample (``engine.data.sample_shoes``) with more families and wider ranges:

=========  ==========================================================================
family     what changes against the sample's sneakers
=========  ==========================================================================
sneaker    the sample's family with every range widened
high-top   collar 0.42-0.58 of the length above the sole, deeper opening
boot       a shaft 0.55-0.80 of the length, thick sole, low toe box
slip-on    low upper, long and wide opening, thin flat sole
chunky     28-48 mm soles with strong toe spring
heel       45-95 mm heels on a narrow, thin-soled last
sandal     2-4 windows cut through the vamp (open sides)
=========  ==========================================================================

**Disjoint by construction.** A sample shoe's parameters are drawn from
``numpy.random.default_rng([seed, index])`` (two words); a corpus shoe's from
``default_rng([CORPUS_STREAM, family, seed, index])`` (four words, the first a fixed tag). NumPy's
SeedSequence hashes the whole entropy list, so no ``data sample --seed S`` stream is ever a corpus stream,
whatever the seeds; ``tests/test_corpus.py`` checks that no parameters coincide.

Stored form (``out/``): ``corpus.json`` (families, seed, count, shoes per part, ``complete``) and
``part-NNNN.pt`` files of ``PART_SIZE`` shoes each, tensors only (``torch.load(weights_only=True)``):
``views`` (n, 4, 4, S, S) uint8 RGBA in ``camera.VIEW_NAMES`` order; ``query`` (n, Q, 3) float32 points in
the normalised frame and ``inside`` (n, Q) bool, the exact field's sign there (not the mesh's); ``surface``
(n, P, 3) float32 points on the GT mesh for validation. A build that is killed resumes at its first
missing part.
"""
from __future__ import annotations

import colorsys
import time
from pathlib import Path

import numpy as np

from engine.data.sample_shoes import SOLE_PALETTE, TOE_SHAPES, ShoeParams, field_value, make_shoe
from engine.progress import NULL_CONTEXT

CORPUS_STREAM = 0x7EAC4E  # first entropy word of every corpus shoe: never a sample stream
FAMILIES: tuple[str, ...] = ("sneaker", "high-top", "boot", "slip-on", "chunky", "heel", "sandal")
PART_SIZE = 32
PART_KEYS = ("views", "query", "inside", "surface")
N_SURFACE = 4000
GENERATOR = "engine.data.corpus/1"

# per family: (low, high) per parameter; lengths in mm, the rest fractions as in ShoeParams
_BASE = {"length": (220.0, 320.0), "width": (0.32, 0.43), "sole_thickness": (8.0, 30.0),
         "toe_spring": (3.0, 25.0), "heel": (5.0, 45.0), "heel_p": 0.5, "upper": (0.20, 0.42),
         "toe_box": (0.35, 0.58), "collar_position": (0.22, 0.35), "collar_length": (0.20, 0.34),
         "collar_width": (0.50, 0.75), "collar_depth": (0.40, 0.75), "openings": (0, 0)}
_FAMILY = {
    "sneaker": {},
    "high-top": {"upper": (0.42, 0.58), "collar_position": (0.20, 0.30), "collar_length": (0.20, 0.28),
                 "collar_depth": (0.55, 0.80)},
    "boot": {"upper": (0.55, 0.80), "sole_thickness": (15.0, 35.0), "toe_box": (0.25, 0.40),
             "collar_length": (0.22, 0.30), "collar_depth": (0.60, 0.85), "collar_position": (0.22, 0.30)},
    "slip-on": {"upper": (0.16, 0.26), "collar_length": (0.30, 0.42), "collar_width": (0.65, 0.80),
                "sole_thickness": (6.0, 15.0), "heel_p": 0.0, "toe_spring": (2.0, 12.0)},
    "chunky": {"sole_thickness": (28.0, 48.0), "toe_spring": (8.0, 25.0), "upper": (0.22, 0.36)},
    "heel": {"heel": (45.0, 95.0), "heel_p": 1.0, "sole_thickness": (5.0, 12.0), "width": (0.28, 0.35),
             "upper": (0.15, 0.28), "collar_length": (0.30, 0.40), "toe_box": (0.40, 0.60)},
    "sandal": {"openings": (2, 4), "upper": (0.18, 0.30), "collar_length": (0.25, 0.38)},
}


def check_families(families) -> tuple[str, ...]:
    """Validate family names (a list or a comma-separated string); ``UserError`` for unknown ones."""
    from engine.config import UserError

    names = [f.strip() for f in (families.split(",") if isinstance(families, str) else families) if f.strip()]
    unknown = sorted(set(names) - set(FAMILIES))
    if unknown or not names:
        raise UserError(f"unknown shoe famil{'ies' if len(unknown) > 1 else 'y'} {', '.join(unknown) or '(none)'}; "
                        f"choose from {', '.join(FAMILIES)}")
    return tuple(dict.fromkeys(names))


def corpus_params(family: str, seed: int, index: int) -> ShoeParams:
    """One corpus shoe's parameters: deterministic in (family, seed, index), disjoint from the sample."""
    r = {**_BASE, **_FAMILY[family]}
    rng = np.random.default_rng([CORPUS_STREAM, FAMILIES.index(family), int(seed), int(index)])

    def u(key):
        lo, hi = r[key]
        return float(rng.uniform(lo, hi))

    length = u("length")
    upper_height = length * u("upper")
    hue, sat, val = rng.uniform(0, 1), rng.uniform(0.2, 0.9), rng.uniform(0.3, 0.92)
    upper = tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(hue, sat, val))
    sole = tuple(int(c) for c in SOLE_PALETTE[int(rng.integers(len(SOLE_PALETTE)))])
    heel = u("heel") if rng.uniform() < r["heel_p"] else 0.0
    lo, hi = r["openings"]
    return ShoeParams(
        length=round(length, 3), width=round(length * u("width"), 3), sole_thickness=round(u("sole_thickness"), 3),
        toe_spring=round(u("toe_spring"), 3), toe_shape=TOE_SHAPES[int(rng.integers(len(TOE_SHAPES)))],
        heel_height=round(heel, 3), upper_height=round(upper_height, 3),
        toe_box_height=round(upper_height * u("toe_box"), 3), collar_position=round(u("collar_position"), 4),
        collar_length=round(u("collar_length"), 4), collar_width=round(u("collar_width"), 4),
        collar_depth=round(u("collar_depth"), 4), sole_color=sole, upper_color=upper,  # type: ignore[arg-type]
        openings=int(rng.integers(lo, hi + 1)))


def corpus_shoes(families, count: int, seed: int) -> list[tuple[str, ShoeParams]]:
    """``count`` (family, params) pairs, the families taken in turn (shoe i is family i mod len)."""
    fams = check_families(families)
    return [(fams[i % len(fams)], corpus_params(fams[i % len(fams)], seed, i // len(fams))) for i in range(count)]


def query_points(mesh, rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 3) float32 training queries in the normalised frame: half on the surface + N(0, 0.005),
    a quarter + N(0, 0.03), a quarter uniform in the padded unit cube [-0.55, 0.55]^3."""
    n_near, n_mid = n // 2, n // 4
    surf, _ = _surface(mesh, rng, n_near + n_mid)
    near = surf[:n_near] + rng.normal(0, 0.005, (n_near, 3))
    mid = surf[n_near:] + rng.normal(0, 0.03, (n_mid, 3))
    uni = rng.uniform(-0.55, 0.55, (n - n_near - n_mid, 3))
    return np.concatenate([near, mid, uni]).astype(np.float32)


def _surface(mesh, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, 3) area-uniform points on a trimesh and their face indices, drawn from ``rng``."""
    areas = mesh.area_faces
    faces = rng.choice(len(areas), size=n, p=areas / areas.sum())
    a, b = rng.uniform(size=(2, n, 1))
    flip = (a + b) > 1
    a, b = np.where(flip, 1 - a, a), np.where(flip, 1 - b, b)
    tri = mesh.triangles[faces]  # (n, 3, 3)
    return tri[:, 0] + a * (tri[:, 1] - tri[:, 0]) + b * (tri[:, 2] - tri[:, 0]), faces


def inside(params: ShoeParams, frame: dict, points: np.ndarray) -> np.ndarray:
    """(N,) bool: the exact field is negative at normalised ``points`` (N, 3) (mapped back to mm)."""
    mm = np.asarray(points, np.float64) * frame["scale"] + frame["centre"]
    return field_value(params, mm) < 0


def render_shoe(params: ShoeParams, image_size: int):
    """(mesh, views (4, 4, S, S) uint8) of one procedural shoe."""
    import torch

    from engine.data.render import render_views
    from engine.geometry.camera import VIEW_NAMES

    mesh = make_shoe(params)
    images = render_views(mesh.vertices, mesh.faces, mesh.visual.vertex_colors, size=image_size)
    return mesh, torch.from_numpy(np.stack([images[n] for n in VIEW_NAMES])).permute(0, 3, 1, 2).contiguous()


def corpus_shoe(params: ShoeParams, seed: int, index: int, image_size: int, n_query: int) -> dict:
    """One stored corpus shoe ``{views, query, inside, surface}`` (see the module docstring); the same
    arguments give the same tensors, so a held-out shoe can be rebuilt to check a recorded figure."""
    import torch

    mesh, views = render_shoe(params, image_size)
    rng = np.random.default_rng([CORPUS_STREAM, int(seed), int(index)])
    q = query_points(mesh, rng, n_query)
    return {"views": views, "query": torch.from_numpy(q),
            "inside": torch.from_numpy(inside(params, mesh.metadata["frame"], q)),
            "surface": torch.from_numpy(_surface(mesh, rng, N_SURFACE)[0].astype(np.float32))}


def build_corpus(ctx, out: Path, families=FAMILIES, count: int = 1024, seed: int = 0, image_size: int = 256,
                 n_query: int = 12288) -> dict:
    """Write the teacher corpus (see the module docstring) and return ``{out, count, parts, seconds}``.

    Resumable: parts already on disk with the same settings are kept; other settings in ``out`` are refused.
    """
    import torch

    from engine import storage
    from engine.config import UserError

    ctx = ctx or NULL_CONTEXT
    out = Path(out)
    fams = check_families(families)
    if not 1 <= int(count) <= 200_000:
        raise UserError(f"corpus count must be between 1 and 200000 (got {count})")
    settings = {"generator": GENERATOR, "families": list(fams), "count": int(count), "seed": int(seed),
                "image_size": int(image_size), "n_query": int(n_query), "part_size": PART_SIZE}
    meta_path = out / "corpus.json"
    old = storage.read_json(meta_path)
    if old is not None and old.get("settings") != settings:
        raise UserError(f"{meta_path} was built with other settings ({old.get('settings')}); use another folder")
    shoes = corpus_shoes(fams, count, seed)
    parts = [shoes[k:k + PART_SIZE] for k in range(0, count, PART_SIZE)]
    storage.write_json(meta_path, {"settings": settings, "parts": len(parts), "complete": False})
    t0, built = time.perf_counter(), 0
    for k, part in enumerate(parts):
        path = out / f"part-{k:04d}.pt"
        if path.is_file():
            continue
        items = []
        for j, (_family, p) in enumerate(part):
            ctx.check_cancelled()
            items.append(corpus_shoe(p, seed, k * PART_SIZE + j, image_size, n_query))
            done = k * PART_SIZE + j + 1
            rate = (time.perf_counter() - t0) / max(built * PART_SIZE + j + 1, 1)
            ctx.progress(done / count, f"corpus shoe {done}/{count} · ETA {rate * (count - done):.0f} s")
        storage.torch_save(path, {key: torch.stack([it[key] for it in items]) for key in PART_KEYS})
        built += 1
    storage.write_json(meta_path, {"settings": settings, "parts": len(parts), "complete": True})
    seconds = round(time.perf_counter() - t0, 1)
    ctx.log(f"corpus: {count} shoes of {', '.join(fams)} in {len(parts)} parts ({built} built), {seconds} s -> {out}")
    return {"out": str(out), "count": count, "parts": len(parts), "built": built, "seconds": seconds}


def corpus_frames(out: Path, settings: dict, log=None) -> list[dict]:
    """Per corpus shoe the build-frame -> normalised map ``{centre (3,), scale}`` of its GT mesh (what
    the exact field needs to be evaluated at normalised points), computed once into ``frames.json``."""
    from engine import storage

    path = Path(out) / "frames.json"
    cached = storage.read_json(path)
    if isinstance(cached, dict) and cached.get("settings") == settings:
        return [{"centre": np.asarray(f["centre"]), "scale": float(f["scale"])} for f in cached["frames"]]
    if log:
        log(f"corpus: computing the {settings['count']} shoes' frames once (marching cubes of each field)")
    shoes = corpus_shoes(settings["families"], settings["count"], settings["seed"])
    frames = [make_shoe(p).metadata["frame"] for _f, p in shoes]
    storage.write_json(path, {"settings": settings, "frames": [{"centre": [float(c) for c in f["centre"]],
                                                                "scale": f["scale"]} for f in frames]})
    return frames


def load_corpus(out: Path) -> tuple[dict, list[Path]]:
    """(settings, part paths) of a complete corpus; ``UserError`` naming what to run when it is not."""
    from engine import storage
    from engine.config import UserError

    out = Path(out)
    meta = storage.read_json(out / "corpus.json")
    if not isinstance(meta, dict) or not meta.get("complete"):
        raise UserError(f"{out}: no complete teacher corpus here; run `python -m engine teacher corpus --out {out}`")
    paths = [out / f"part-{k:04d}.pt" for k in range(int(meta["parts"]))]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise UserError(f"{out}: corpus parts missing ({', '.join(missing[:3])}); rerun `teacher corpus` to rebuild them")
    return meta["settings"], paths
