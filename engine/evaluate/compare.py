"""Side-by-side comparison of one shoe: teacher, student and ground truth, coloured by distance to GT.

What the Compare tab shows, as plain data and viewer files:

* ``surface_distance(verts, gt_verts, gt_faces)`` — per vertex, the distance to the GT surface, both meshes
  normalised on their own (bbox centre 0, longest side 1; the metrics' convention). The GT surface is
  represented by ``DENSE_POINTS`` area-weighted samples, so a distance is exact up to about half the
  sample spacing (≈ 0.002 for a shoe — well below the colour scale).
* ``distance_colors(d, scale)`` — a blue → green → yellow → red ramp; ``d >= scale`` is red.
* ``compare_shoe(ctx, run_dir, shoe_id, out_dir)`` — the run (``trained_run.open_run``): its student on the
  shoe's photos, its cached teacher mesh (when ``engine.cache.usable_entry`` accepts it) and the GT mesh as three normalised GLBs (``engine.data.mesh_files.viewer_glb``)
  plus that shoe's metrics rows (``engine.geometry.metrics.mesh_metrics``, same settings as
  ``engine.evaluate.mesh_eval``, so the numbers equal the run's evaluation).
* ``compare_photos(ctx, checkpoint, photos, out_dir)`` — the student mesh for uploaded photos (no GT).
* ``worst_shoes(run_dir)`` — the run's per-shoe rows from ``evaluation.json``, worst student CD-L1 first.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from engine import storage
from engine.config import UserError
from engine.evaluate.mesh_eval import METRICS, N_POINTS, NORMALISATION, SEED
from engine.geometry.camera import VIEW_NAMES
from engine.progress import NULL_CONTEXT

DISTANCE_SCALE = 0.05  # colour saturates (red) at 5 % of the longest side
DENSE_POINTS = 200_000
# (position in [0, 1], RGB): blue -> cyan -> green -> yellow -> red
RAMP = ((0.0, (37, 99, 235)), (0.25, (6, 182, 212)), (0.5, (34, 197, 94)), (0.75, (250, 204, 21)),
        (1.0, (220, 38, 38)))


def surface_distance(verts, gt_verts, gt_faces, n_dense: int = DENSE_POINTS, seed: int = SEED) -> np.ndarray:
    """Distance from every vertex of a mesh to the GT surface, in normalised units (longest side 1).

    Both vertex sets are normalised on their own (``engine.geometry.normalise``), the GT surface is
    sampled with ``n_dense`` area-weighted points (seeded) and each vertex takes the Euclidean (L2)
    distance to its nearest sample (``scipy.spatial.cKDTree``). verts (V, 3), gt_verts (G, 3), gt_faces
    (F, 3); returns (V,) float64 >= 0, no reduction. An empty input raises ``ValueError``.
    """
    import torch
    from scipy.spatial import cKDTree

    from engine.geometry.mesh import sample_points
    from engine.geometry.normalise import normalise_vertices

    v = np.asarray(verts, np.float64)
    if v.ndim != 2 or v.shape[1] != 3 or len(v) == 0:
        raise ValueError(f"need (V, 3) vertices, got shape {v.shape}")
    gv, _, _ = normalise_vertices(torch.as_tensor(np.asarray(gt_verts, np.float64)))
    gf = torch.as_tensor(np.asarray(gt_faces, np.int64))
    if len(gf) == 0:
        raise ValueError("the GT mesh has no faces")
    with torch.no_grad():
        dense, _ = sample_points(gv, gf, int(n_dense), generator=torch.Generator().manual_seed(int(seed)))
    dist, _ = cKDTree(dense.numpy()).query(normalise_vertices(v)[0], k=1)
    return dist  # (V,)


def distance_colors(distances, scale: float = DISTANCE_SCALE) -> np.ndarray:
    """RGBA uint8 (V, 4) from distances (V,): ``t = clip(d / scale, 0, 1)`` through ``RAMP`` (0 blue,
    ``scale`` and beyond red). Empty input gives an empty (0, 4) array."""
    if not scale > 0:
        raise ValueError(f"colour scale must be positive, got {scale}")
    t = np.clip(np.asarray(distances, np.float64) / scale, 0.0, 1.0)
    stops = np.array([p for p, _ in RAMP])
    rgb = np.stack([np.interp(t, stops, [c[k] for _, c in RAMP]) for k in range(3)], -1)
    return np.concatenate([rgb, np.full((len(t), 1), 255.0)], -1).round().astype(np.uint8)


def legend(scale: float = DISTANCE_SCALE) -> dict:
    """What the colours mean, for the UI: the ramp stops in distance units and a sentence."""
    return {"scale": scale, "stops": [(round(p * scale, 4), "#%02x%02x%02x" % c) for p, c in RAMP],
            "text": f"colour = distance of each vertex to the GT surface, 0 (blue) to ≥ {scale:g} (red) of "
                    "the longest side; each mesh normalised on its own (bbox centre, longest side 1)"}


def _metrics_row(model: str, verts, faces, gt) -> dict:
    from engine.geometry.metrics import mesh_metrics

    row = {"model": model, "vertices": int(len(verts)), "faces": int(len(faces))}
    if gt is not None:
        m = mesh_metrics(verts, faces, gt[0], gt[1], n_points=N_POINTS, seed=SEED)
        row.update({k: m[k] for k in METRICS})
    return row


def _coloured_glb(out_dir: Path, name: str, verts, faces, gt, scale: float) -> tuple[str, dict]:
    """A viewer GLB (coloured by distance to GT when there is one) and its distance summary."""
    from engine.data.mesh_files import viewer_glb

    if gt is None:
        return str(viewer_glb(out_dir, verts, faces, name=name)), {}
    d = surface_distance(verts, gt[0], gt[1])
    glb = viewer_glb(out_dir, verts, faces, vertex_colors=distance_colors(d, scale), name=name)
    return str(glb), {"mean": float(d.mean()), "p95": float(np.percentile(d, 95)), "max": float(d.max())}


def compare_shoe(ctx, run_dir: Path, shoe_id: str, out_dir: Path, checkpoint: str = "best",
                 scale: float = DISTANCE_SCALE) -> dict:
    """Teacher, student and GT of one shoe of the run's dataset (see the module docstring).

    Returns ``{"shoe", "run", "checkpoint", "split", "student_glb", "teacher_glb", "gt_glb", "rows",
    "distances", "legend", "notes", "normalisation", "seconds"}``; a missing teacher entry or GT mesh
    gives ``None`` for that viewer and a note saying why. ``UserError`` for a bad ID, a missing shoe
    or checkpoint, or a checkpoint of another kind.
    """
    from engine.data.layout import load_mesh
    from engine.evaluate.mesh_eval import predict
    from engine.students.trained_run import open_run

    ctx = ctx or NULL_CONTEXT
    t0 = time.perf_counter()
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    ctx.progress(0.05, "loading the student")
    run = open_run(run_dir, checkpoint)
    student = run.student
    shoe = run.shoe(shoe_id)
    where = run.split_of(shoe_id)
    notes, gt = [], None
    if shoe.has_gt:
        gt = load_mesh(shoe.obj_path)
    else:
        notes.append(f"{shoe_id} is photo-only (no {shoe_id}.obj): no GT viewer, no metrics, no colours")
    ctx.progress(0.2, f"running the student on {shoe_id}")
    ctx.check_cancelled()
    s_verts = predict(student, run.views(shoe)).numpy()
    s_faces = student.faces.numpy()
    rows, distances = [], {}
    teacher_glb = None
    ctx.progress(0.4, "colouring the teacher mesh")
    data, why = run.teacher(shoe)
    if data is not None:
        t_verts, t_faces = data["vertices"].numpy(), data["faces"].numpy()
        teacher_glb, distances["teacher"] = _coloured_glb(out_dir, f"teacher-{shoe_id}", t_verts, t_faces, gt, scale)
        rows.append(_metrics_row("teacher", t_verts, t_faces, gt))
    else:
        notes.append(f"teacher: {why}" if run.cache_dir is None else
                     f"teacher: no usable teacher entry in {run.cache_dir.name} ({why})")
    ctx.check_cancelled()
    ctx.progress(0.7, "colouring the student mesh")
    student_glb, distances["student"] = _coloured_glb(out_dir, f"student-{shoe_id}", s_verts, s_faces, gt, scale)
    rows.append(_metrics_row("student", s_verts, s_faces, gt))
    gt_glb = None
    if gt is not None:
        from engine.data.mesh_files import viewer_glb

        gt_glb = str(viewer_glb(out_dir, gt[0], gt[1], name=f"gt-{shoe_id}"))
    ctx.progress(1.0, f"{shoe_id} compared")
    return {"shoe": shoe_id, "run": run_dir.name, "checkpoint": checkpoint, "epoch": run.ckpt["epoch"], "split": where,
            "student_glb": student_glb, "teacher_glb": teacher_glb, "gt_glb": gt_glb, "rows": rows,
            "distances": {k: v for k, v in distances.items() if v}, "legend": legend(scale), "notes": notes,
            "normalisation": NORMALISATION, "seconds": round(time.perf_counter() - t0, 3)}


def compare_photos(ctx, checkpoint: Path, photos: dict, out_dir: Path, accept_unsure: bool = False) -> dict:
    """The student mesh for 1-4 uploaded photos (``engine.infer``): ``{"student_glb", "photos", "stats"}``
    (``photos``: what each photo became, one line per view). There is no GT, so the mesh is not coloured;
    the teacher runs separately, on request. ``accept_unsure``: use masks under the confidence bar."""
    from engine.data.mesh_files import viewer_glb
    from engine.infer import load_predictor, views_from_photos

    ctx = ctx or NULL_CONTEXT
    t0 = time.perf_counter()
    ctx.progress(0.1, "loading the student")
    predictor = load_predictor(Path(checkpoint))
    views, prepared = views_from_photos(photos, predictor.image_size, accept_unsure=accept_unsure)
    ctx.progress(0.5, "running the student")
    t1 = time.perf_counter()
    verts = predictor.predict(views)
    ms = 1000 * (time.perf_counter() - t1)
    glb = viewer_glb(Path(out_dir), verts, predictor.faces, name="student-upload")
    used = [name for name in VIEW_NAMES if name in prepared.views]
    return {"student_glb": str(glb), "photos": prepared.summary(),
            "stats": {"views": used, "vertices": int(len(verts)), "faces": int(len(predictor.faces)),
                      "student_ms": round(ms, 1), "seconds": round(time.perf_counter() - t0, 3)}}


def worst_shoes(run_dir: Path, limit: int = 10) -> list[dict]:
    """Up to ``limit`` rows of the run's ``evaluation.json``, worst student CD-L1 first:
    ``{"shoe", "student_cd_l1", "teacher_cd_l1" (or None), "student_f1"}``. ``UserError`` when the run
    has not been evaluated yet."""
    path = Path(run_dir) / "evaluation.json"
    if not path.is_file():
        raise UserError(f"{Path(run_dir).name} has no evaluation yet (evaluate it first)")
    report = storage.read_json(path)
    out = []
    for r in (report.get("rows") or [])[:limit]:
        out.append({"shoe": r["id"], "student_cd_l1": r["student"]["cd_l1"],
                    "teacher_cd_l1": (r.get("teacher") or {}).get("cd_l1"),
                    "student_f1": r["student"]["fscore@1%"]})
    return out
