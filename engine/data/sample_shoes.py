"""Deterministic procedural sample shoes: the ground-truth meshes and rendered views of the built-in dataset.

A shoe is an implicit field ``f(x, y, z)`` (negative inside, roughly millimetres) on a regular grid,
turned into a triangle mesh by marching cubes:

    f = max(min(sole, upper), -collar_cavity)

* **sole**: the footprint outline (rounded heel, widening to the ball, a round / pointed / square toe)
  extruded between a bottom that rises at the toe (*toe spring*) and under the arch (for heeled
  shoes), and a top that is raised at the heel by the *heel height* (a wedge);
* **upper**: a slightly inset footprint whose cross-section is a superellipse, tall at the collar and
  sloping down along the vamp to a lower toe box;
* **collar cavity**: an elliptic column cut down from the top to a floor above the sole, inside a wider,
  shallower cut that lowers the collar line around it. It opens the top of the upper like a real shoe
  opening while the surface stays closed, so the mesh is watertight
  and one piece — and a silhouette-based (visual-hull) teacher cannot see the recess.

The field is positive on the grid border, so marching cubes closes the surface by construction.
Orientation of the result: toe towards **+Z**, up **+Y**, sole towards -Y, width along X, normalised by
``engine.geometry.normalise.normalise_vertices`` (bbox centre at 0, longest side — the length — 1),
exactly the frame of ``engine.geometry.camera``. Vertex colours: sole, upper and a darker lining inside
the collar. Same parameters → identical mesh; same ``(seed, index)`` → identical parameters.
"""
from __future__ import annotations

import colorsys
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.geometry.camera import VIEW_NAMES
from engine.progress import NULL_CONTEXT

GENERATOR = "engine.data.sample_shoes/1"
TOE_SHAPES = ("round", "pointed", "square")
GRID_CELLS_ALONG_LENGTH = 68  # 11.5-19k faces per shoe
SOLE_PALETTE = ((238, 236, 230), (200, 200, 196), (40, 40, 42), (176, 118, 66), (226, 214, 188))


@dataclass(frozen=True)
class ShoeParams:
    """One shoe's shape and colours (lengths in millimetres, fractions relative to the length)."""

    length: float  # heel to toe
    width: float  # at the ball
    sole_thickness: float
    toe_spring: float  # how far the sole's toe rises off the ground
    toe_shape: str  # round | pointed | square
    heel_height: float  # extra sole height under the heel (0 = flat)
    upper_height: float  # upper at the collar, above the sole
    toe_box_height: float  # upper at the toe box, above the sole
    collar_position: float  # centre of the opening, fraction of length from the heel
    collar_length: float  # opening length, fraction of length
    collar_width: float  # opening width, fraction of the upper's width there
    collar_depth: float  # recess depth, fraction of upper_height
    sole_color: tuple[int, int, int]
    upper_color: tuple[int, int, int]
    openings: int = 0  # side windows cut through the vamp (open shoes / sandals); the sample has none

    @classmethod
    def sample(cls, seed: int, index: int = 0) -> "ShoeParams":
        """Draw parameters from ``numpy.random.default_rng([seed, index])`` (deterministic)."""
        rng = np.random.default_rng([int(seed), int(index)])
        length = rng.uniform(235.0, 310.0)
        upper_height = length * rng.uniform(0.22, 0.40)
        hue, sat, val = rng.uniform(0, 1), rng.uniform(0.25, 0.85), rng.uniform(0.35, 0.9)
        upper = tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(hue, sat, val))
        sole = tuple(int(c) for c in SOLE_PALETTE[int(rng.integers(len(SOLE_PALETTE)))])
        return cls(
            length=round(float(length), 3),
            width=round(float(length * rng.uniform(0.34, 0.41)), 3),
            sole_thickness=round(float(rng.uniform(9.0, 28.0)), 3),
            toe_spring=round(float(rng.uniform(4.0, 22.0)), 3),
            toe_shape=TOE_SHAPES[int(rng.integers(len(TOE_SHAPES)))],
            heel_height=round(float(rng.choice([0.0, rng.uniform(5.0, 45.0)])), 3),
            upper_height=round(float(upper_height), 3),
            toe_box_height=round(float(upper_height * rng.uniform(0.38, 0.55)), 3),
            collar_position=round(float(rng.uniform(0.25, 0.33)), 4),
            collar_length=round(float(rng.uniform(0.22, 0.32)), 4),
            collar_width=round(float(rng.uniform(0.55, 0.72)), 4),
            collar_depth=round(float(rng.uniform(0.45, 0.7)), 4),
            sole_color=sole,  # type: ignore[arg-type]
            upper_color=upper,  # type: ignore[arg-type]
        )


def _smoothstep(a: float, b: float, x):
    u = np.clip((x - a) / (b - a), 0.0, 1.0)
    return u * u * (3 - 2 * u)


class _ShoeField:
    """The implicit field of one shoe in its build frame (mm: z heel→toe from 0 to length, y up from
    the ground, x across). All methods take arrays of equal shape and return that shape."""

    def __init__(self, p: ShoeParams):
        self.p = p
        self.toe_len = {"round": 0.22, "pointed": 0.30, "square": 0.13}[p.toe_shape]
        self.inset = 0.045 * p.width
        tc = p.collar_position
        self.collar_z = tc * p.length
        self.collar_a = 0.5 * p.collar_length * p.length
        self.collar_w = p.collar_width * float(self.upper_half_width(np.array(tc)))
        ts = np.linspace(tc - 0.5 * p.collar_length, tc + 0.5 * p.collar_length, 33)
        top = self.sole_top(ts) + self.upper_profile(ts)
        floor_min = float(self.sole_top(ts).max()) + 0.15 * p.upper_height
        self.collar_floor = max(float(top.min()) - p.collar_depth * p.upper_height, floor_min)
        # the collar line: the upper's top is cut flat around the opening, so the rim has real walls
        self.collar_rim = self.collar_floor + 0.6 * (float(top.min()) - self.collar_floor)

    def half_width(self, t):  # footprint half-width at fraction t of the length
        p = self.p
        w = 0.5 * p.width * (0.72 + 0.28 * _smoothstep(0.15, 0.68, t))
        th = 0.36 * p.width / p.length  # heel rounding radius, in t units
        v = np.clip((th - t) / th, 0.0, 1.0)
        w = w * np.sqrt(np.clip(1 - v * v, 0.0, 1.0))
        u = np.clip((t - (1 - self.toe_len)) / self.toe_len, 0.0, 1.0)
        if p.toe_shape == "round":
            taper = np.sqrt(np.clip(1 - u**2, 0, 1))
        elif p.toe_shape == "square":
            taper = np.clip(1 - u**6, 0, 1) ** (1 / 6)
        else:  # pointed
            taper = np.sqrt(np.clip(1 - u**2, 0, 1)) * np.sqrt(1 - u)
        return np.where((t < 0) | (t > 1), 0.0, w * taper)

    def upper_half_width(self, t):
        return self.half_width(t) - self.inset

    def sole_bottom(self, t):
        p = self.p
        arch = np.sin(np.pi * np.clip((t - 0.25) / 0.4, 0, 1)) ** 2
        heel = 1 - _smoothstep(0.2, 0.55, t)
        return p.toe_spring * _smoothstep(0.62, 1.0, t) ** 1.5 + 0.6 * p.heel_height * heel * arch

    def sole_top(self, t):
        p = self.p
        return (p.toe_spring * _smoothstep(0.62, 1.0, t) ** 1.5 + p.sole_thickness
                + p.heel_height * (1 - _smoothstep(0.2, 0.55, t)))

    def upper_profile(self, t):  # height of the upper above the sole top
        p = self.p
        vamp_start = p.collar_position + 0.5 * p.collar_length
        h = p.toe_box_height + (p.upper_height - p.toe_box_height) * (1 - _smoothstep(vamp_start, vamp_start + 0.3, t))
        v = np.clip((t - 0.8) / 0.2, 0, 1)
        heel_round = 0.85 + 0.15 * _smoothstep(0.0, 0.12, t)
        return h * heel_round * (0.35 + 0.65 * np.sqrt(np.clip(1 - v * v, 0, 1)))

    def parts(self, x, y, z):
        """(sole, upper, cavity) fields; each negative inside its own part."""
        p = self.p
        t = z / p.length
        ends = np.maximum(-z, z - p.length)
        s_top = self.sole_top(t)
        sole = np.maximum.reduce([np.abs(x) - self.half_width(t), ends, self.sole_bottom(t) - y, y - s_top])
        hu = self.upper_profile(t)
        yn = np.clip((y - s_top) / hu, 0.0, 1.0)
        wu = self.upper_half_width(t) * (1 - yn**3) ** (1 / 3)
        upper = np.maximum.reduce([np.abs(x) - wu, ends, y - (s_top + hu), s_top - 0.5 * p.sole_thickness - y])
        cavity = np.minimum(self._collar(x, z, 1.0, 1.0, self.collar_floor, y),  # the recess
                            self._collar(x, z, 1.7, 1.25, self.collar_rim, y))  # the lowered collar line
        if p.openings:
            cavity = np.minimum(cavity, self._windows(y, z))
        return sole, upper, cavity

    def _windows(self, y, z):
        """``openings`` elliptic tunnels across the vamp (along x), between its sole and its top."""
        p = self.p
        t0 = p.collar_position + 0.5 * p.collar_length + 0.04
        ts = np.linspace(t0, 0.86, p.openings + 2)[1:-1] if p.openings > 1 else np.array([0.5 * (t0 + 0.86)])
        step = (0.86 - t0) / (p.openings + 1)
        out = np.full(np.shape(y), np.inf)
        for t in ts:
            base, h = float(self.sole_top(np.array(t))), float(self.upper_profile(np.array(t)))
            a, b = 0.32 * step * p.length, 0.22 * h
            yc = base + 0.5 * h
            ell = (np.sqrt(((z - t * p.length) / a) ** 2 + ((y - yc) / b) ** 2) - 1) * min(a, b)
            out = np.minimum(out, ell)
        return out

    def _collar(self, x, z, widen: float, lengthen: float, floor: float, y):
        """An elliptic column (the opening's ellipse scaled by ``widen`` x ``lengthen``) above ``floor``."""
        w, a = widen * self.collar_w, lengthen * self.collar_a
        ell = (np.sqrt((x / w) ** 2 + ((z - self.collar_z) / a) ** 2) - 1) * min(w, a)
        return np.maximum(ell, floor - y)

    def height(self) -> float:
        t = np.linspace(0, 1, 201)
        return float((self.sole_top(t) + self.upper_profile(t)).max())


def make_shoe(params: ShoeParams, cells: int = GRID_CELLS_ALONG_LENGTH):
    """Build the shoe mesh: a watertight, single-component ``trimesh.Trimesh`` with per-vertex colours.

    ``cells``: grid cells along the length (the resolution). The result is normalised (bbox centre 0,
    longest side 1), toe +Z, up +Y (see the module docstring).
    """
    import trimesh
    from skimage.measure import marching_cubes

    from engine.geometry.normalise import normalise_vertices

    field = _ShoeField(params)
    h = params.length / cells
    pad = 2 * h
    xs = np.arange(-0.5 * params.width - pad, 0.5 * params.width + pad + h, h)
    ys = np.arange(-pad, field.height() + pad + h, h)
    zs = np.arange(-pad, params.length + pad + h, h)
    gx, gy, gz = np.meshgrid(xs, ys, zs, indexing="ij")  # (nx, ny, nz)
    sole, upper, cavity = field.parts(gx, gy, gz)
    volume = np.maximum(np.minimum(sole, upper), -cavity).astype(np.float32)
    verts, faces, _normals, _values = marching_cubes(volume, level=0.0, spacing=(h, h, h), allow_degenerate=False)
    verts = verts + np.array([xs[0], ys[0], zs[0]])  # (V, 3) mm, build frame
    # The field decreases into the solid, which is skimage's default ("descent"): faces wind outwards.

    s, u, c = field.parts(verts[:, 0], verts[:, 1], verts[:, 2])
    colors = np.empty((len(verts), 4), np.uint8)
    colors[:, 3] = 255
    colors[:, :3] = params.upper_color
    colors[s < u, :3] = params.sole_color
    lining = (np.asarray(params.upper_color, float) * 0.45).round().astype(np.uint8)
    colors[-c > np.minimum(s, u), :3] = lining

    normalised, centre, scale = normalise_vertices(verts)
    mesh = trimesh.Trimesh(normalised, faces, vertex_colors=colors, process=False)
    # the build frame -> normalised frame map (normalised = (mm - centre) / scale): the teacher corpus
    # evaluates the exact field at normalised query points through it (``engine.data.corpus``)
    mesh.metadata["frame"] = {"centre": np.asarray(centre, np.float64), "scale": float(scale)}
    return mesh


def field_value(params: ShoeParams, points_mm: np.ndarray) -> np.ndarray:
    """The shoe's implicit field at (N, 3) build-frame points (mm): negative inside; (N,) float64."""
    field = _ShoeField(params)
    x, y, z = (np.asarray(points_mm, np.float64)[:, k] for k in range(3))
    sole, upper, cavity = field.parts(x, y, z)
    return np.maximum(np.minimum(sole, upper), -cavity)


def shoe_id(index: int, count: int) -> str:
    return f"shoe_{index:0{max(3, len(str(count - 1)))}d}"


def build_sample(ctx, out: Path, count: int = 101, seed: int = 0, gt: int | None = None) -> dict:
    """Write ``count`` procedural shoes into the dataset layout under ``out``.

    ``out/OBJs/shoe_000.obj`` … (normalised GT with vertex colours) and
    ``out/input_images/shoe_000/{front,left,back,right}.png`` (rendered by ``engine.data.render``),
    plus ``out/sample.json`` (generator, count, seed, gt, parameters per shoe, ``complete``). Shoes whose
    files already exist are skipped, so a killed build resumes; a folder built with another seed or GT
    count is refused.

    ``gt``: keep the ground-truth OBJ of the first ``gt`` shoes only (None = all): the "few scans, many
    photos" case — the others are photo-only shoes that a student can learn from through a teacher alone.

    Returns ``{"out", "count", "seed", "gt", "built", "skipped", "seconds", "seconds_generate",
    "seconds_render"}`` (generate = field + marching cubes; render = four views + PNG/OBJ writes).
    """
    from engine import storage
    from engine.config import UserError
    from engine.data.render import mesh_to_obj_bytes, png_bytes, render_views

    ctx = ctx or NULL_CONTEXT
    out = Path(out)
    if not 1 <= int(count) <= 100_000:
        raise UserError(f"sample count must be between 1 and 100000 (got {count})")
    meta_path = out / "sample.json"
    old = storage.read_json(meta_path)
    if gt is not None and not 0 <= int(gt) <= int(count):
        raise UserError(f"--gt must be between 0 and the count {count} (got {gt})")
    n_gt = int(count) if gt is None else int(gt)
    if old is not None and (old.get("seed") != seed or old.get("generator") != GENERATOR
                            or old.get("gt", old.get("count")) != n_gt):
        raise UserError(f"{meta_path} was built with seed {old.get('seed')} and GT for {old.get('gt', old.get('count'))} "
                        f"shoes by {old.get('generator')}; use another --out folder or delete it first")
    params = [ShoeParams.sample(seed, i) for i in range(count)]
    meta = {"generator": GENERATOR, "count": count, "seed": seed, "gt": n_gt, "complete": False,
            "shoes": {shoe_id(i, count): dataclasses.asdict(p) for i, p in enumerate(params)}}
    storage.write_json(meta_path, meta)
    t0, built, skipped = time.perf_counter(), 0, 0
    t_generate = t_render = 0.0
    for i, p in enumerate(params):
        ctx.check_cancelled()
        sid = shoe_id(i, count)
        obj = out / "OBJs" / f"{sid}.obj"
        views = {n: out / "input_images" / sid / f"{n}.png" for n in VIEW_NAMES}
        keep_gt = i < n_gt
        if (obj.is_file() or not keep_gt) and all(v.is_file() for v in views.values()):
            skipped += 1
        else:
            t1 = time.perf_counter()
            mesh = make_shoe(p)
            t2 = time.perf_counter()
            images = render_views(mesh.vertices, mesh.faces, mesh.visual.vertex_colors)
            for name, path in views.items():
                storage.write_bytes(path, png_bytes(images[name]))
            if keep_gt:
                storage.write_bytes(obj, mesh_to_obj_bytes(mesh.vertices, mesh.faces, mesh.visual.vertex_colors,
                                                           GENERATOR))
            t_generate, t_render = t_generate + t2 - t1, t_render + time.perf_counter() - t2
            built += 1
        ctx.progress((i + 1) / count, f"{sid} ({built} built, {skipped} already there)")
    meta["complete"] = True
    storage.write_json(meta_path, meta)
    seconds = round(time.perf_counter() - t0, 3)
    ctx.log(f"sample: {built} shoes built, {skipped} already there, GT for {n_gt}, {seconds:.1f} s -> {out}")
    return {"out": str(out), "count": count, "seed": seed, "gt": n_gt, "built": built, "skipped": skipped,
            "seconds": seconds,
            "seconds_generate": round(t_generate, 3), "seconds_render": round(t_render, 3)}
