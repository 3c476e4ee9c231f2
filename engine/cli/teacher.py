"""``python -m engine teacher test|list`` (``corpus|pretrain``: ``engine.cli.pretrain``) and
``python -m engine cache build|show``.

``teacher test`` runs one teacher on one shoe (``--shoe ID --data ROOT``) or on image files
(``--images front.png [left.png ...]`` in front, left, back, right order, or ``--front/--left/--back/
--right``) and writes the mesh (OBJ / GLB / PLY / STL by the extension of ``--out``).
``cache build`` runs under torchrun too: each rank takes every WORLD_SIZE-th shoe (RANK, WORLD_SIZE
from the environment) and rank 0 merges the metadata.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

VIEW_ORDER = ("front", "left", "back", "right")  # = engine.geometry.camera.VIEW_NAMES (kept import-light)


def _settings(args: argparse.Namespace):
    from engine.teachers.base import TeacherSettings

    return TeacherSettings(preset=args.preset, steps=args.steps, octree_resolution=args.octree_resolution,
                           seed=args.seed, device=args.device)


def _input_views(args: argparse.Namespace) -> tuple[str, dict]:
    from engine.config import UserError, sample_root
    from engine.data.layout import find_shoe, load_views
    from engine.data.photos import prepare_views

    named = {n: getattr(args, n) for n in VIEW_ORDER if getattr(args, n)}
    sources = sum(bool(x) for x in (args.shoe, args.images, named))
    if sources != 1:
        raise UserError("give exactly one input: --shoe ID [--data ROOT], --images FILE..., or --front/--left/--back/--right")
    if args.shoe:
        shoe = find_shoe(Path(args.data) if args.data else sample_root(), args.shoe)
        views = load_views(shoe)
        if not views:
            raise UserError(f"shoe {args.shoe!r} has no input images")
        return f"shoe {shoe.id} ({len(views)} views)", views
    if args.images:
        if len(args.images) > len(VIEW_ORDER):
            raise UserError(f"--images takes at most {len(VIEW_ORDER)} files ({', '.join(VIEW_ORDER)})")
        named = dict(zip(VIEW_ORDER, args.images))
    prepared = prepare_views({n: Path(p) for n, p in named.items()})
    for why in prepared.errors.values():
        print(f"warning: left out {why}", file=sys.stderr)
    return f"{len(prepared.views)} image(s)", prepared.views


def _teacher_test(args: argparse.Namespace) -> int:
    from engine.config import UserError
    from engine.data.mesh_files import DOWNLOAD_FORMATS, write_mesh
    from engine.teachers.base import get_teacher

    out = Path(args.out)
    if out.suffix.lower().lstrip(".") not in DOWNLOAD_FORMATS:
        raise UserError(f"--out {out.name}: unknown mesh format; use one of {', '.join(DOWNLOAD_FORMATS)}")
    settings = _settings(args)
    what, views = _input_views(args)
    teacher = get_teacher(args.teacher)
    print(f"teacher  {teacher.name}  preset {settings.preset}  input {what}")
    result = teacher.predict(views, settings)
    write_mesh(out, result.vertices, result.faces)
    s = result.stats
    print(f"mesh     {s['vertices']} vertices, {s['faces']} faces (normalised: bbox centre 0, longest side 1)")
    print(f"seconds  {s['seconds']:.2f}  on {s.get('device', 'cpu')}")
    print(f"settings {json.dumps(s['settings'], sort_keys=True)}")
    print(f"wrote    {out}")
    return 0


def _teacher_list(args: argparse.Namespace) -> int:
    from engine.teachers.base import teacher_availability

    rows = teacher_availability()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows)
    print(f"{'TEACHER':<{width}}  {'AVAILABLE':<9}  REASON")
    for r in rows:
        print(f"{r['name']:<{width}}  {'yes' if r['available'] else 'no':<9}  {r['reason']}")
    return 0


def _cache_build(args: argparse.Namespace) -> int:
    from engine.cache import build_cache, cache_summary
    from engine.cli import CliProgress
    from engine.config import cache_root, sample_root

    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    settings = _settings(args)
    out = Path(args.out) if args.out else cache_root() / f"{args.teacher}-{settings.preset}"
    data = Path(args.data) if args.data else sample_root()
    totals = build_cache(CliProgress(quiet=rank != 0), data, out, teacher=args.teacher, settings=settings,
                         first=args.first, ids=args.ids, rank=rank, world_size=world, retry_failed=args.retry_failed,
                         features=not args.no_features)
    if rank != 0:
        return 0
    summary = cache_summary(out)
    print(f"{'shoes':<10}{'built':>7}{'failed':>8}{'skipped':>9}{'seconds':>10}{'MB written':>12}")
    print(f"{totals['shoes']:<10}{totals['done']:>7}{totals['failed']:>8}{totals['skipped']:>9}"
          f"{totals['seconds']:>10.1f}{totals['bytes'] / 1e6:>12.1f}")
    _print_summary(summary)
    return 0 if totals["failed"] == 0 else 1


def _fmt(x, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _print_summary(s: dict) -> None:
    print(f"cache    {s['cache_dir']}  ({s['size_bytes'] / 1e6:.1f} MB on disk)")
    print(f"teacher  {s['teacher']}  {json.dumps(s['settings'], sort_keys=True)}")
    print(f"entries  {s['entries']}: {s['ok']} ok, {s['failed']} failed, {s['stale']} built with other settings")
    print(f"vs GT    mean CD-L1 {_fmt(s['mean_cd_l1'])}, mean F@1% {_fmt(s['mean_fscore@1%'], 3)} over "
          f"{s['with_gt']} shoes (normalised: longest side 1; F-score threshold 1 % of it)")
    for f in s["failures"]:
        print(f"failed   {f['id']}: {f['error']}")


def _print_rows(rows: list[dict]) -> None:
    """The per-shoe table of ``cache show``: teacher vs GT (normalised), seconds, status, error."""
    width = max([len("ID")] + [len(r["id"]) for r in rows])
    print(f"{'ID':<{width}}  {'STATUS':<8}  {'CD-L1':>7}  {'F@1%':>5}  {'SECONDS':>7}  ERROR")
    for r in rows:
        secs = "-" if r["seconds"] is None else f"{r['seconds']:.2f}"
        print(f"{r['id']:<{width}}  {r['status']:<8}  {_fmt(r['cd_l1']):>7}  {_fmt(r['fscore@1%'], 3):>5}  "
              f"{secs:>7}  {r['error'] or ''}")


def _cache_show(args: argparse.Namespace) -> int:
    from engine.cache import cache_rows, cache_summary

    summary, rows = cache_summary(Path(args.dir)), cache_rows(Path(args.dir))
    if args.json:
        print(json.dumps({**summary, "rows": rows}, indent=2))
    else:
        _print_rows(rows)
        print()
        _print_summary(summary)
    return 0


def _add_settings(p: argparse.ArgumentParser) -> None:
    p.add_argument("--teacher", default="visual-hull",
                   help="visual-hull (default), occupancy (the learned one) or hunyuan3d-2mv[-turbo|-fast]")
    p.add_argument("--preset", default="balanced", choices=("fast", "balanced", "high"))
    p.add_argument("--steps", type=int, default=None, help="diffusion steps (overrides the preset; Hunyuan)")
    p.add_argument("--octree-resolution", type=int, default=None,
                   help="Hunyuan octree resolution (256 default, 128 low memory) / visual-hull grid size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N")


def register(sub) -> None:
    p_teacher = sub.add_parser("teacher", help="run or list the multiview-to-mesh teachers")
    t_sub = p_teacher.add_subparsers(dest="teacher_command", metavar="ACTION", required=True)
    p = t_sub.add_parser("test", help="run a teacher on one shoe or on image files and write the mesh")
    _add_settings(p)
    p.add_argument("--shoe", default=None, help="shoe ID in --data")
    p.add_argument("--data", default=None, help="dataset root (default $DS_DATA/sample)")
    p.add_argument("--images", nargs="+", default=None, help="view images in front, left, back, right order")
    for name in VIEW_ORDER:
        p.add_argument(f"--{name}", default=None, help=f"the {name} view image")
    p.add_argument("--out", default="teacher_test_output.obj", help="mesh file: .obj .glb .ply .stl")
    p.set_defaults(func=_teacher_test)
    p = t_sub.add_parser("list", help="which teachers can run here, and why not")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_teacher_list)
    from engine.cli import pretrain

    pretrain.register(t_sub)

    p_cache = sub.add_parser("cache", help="build and inspect teacher caches")
    c_sub = p_cache.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    p = c_sub.add_parser("build", help="run the teacher over a dataset (resumable; torchrun shards it)")
    _add_settings(p)
    p.add_argument("--data", default=None, help="dataset root (default $DS_DATA/sample)")
    p.add_argument("--first", type=int, default=None, help="only the first N shoes")
    p.add_argument("--ids", nargs="+", default=None, help="only these shoe IDs")
    p.add_argument("--out", default=None, help="cache folder (default $DS_CACHE/<teacher>-<preset>)")
    p.add_argument("--retry-failed", action="store_true", help="re-run shoes that failed before")
    p.add_argument("--no-features", action="store_true",
                   help="do not store the teacher's features (feature-level distillation needs them)")
    p.set_defaults(func=_cache_build)
    p = c_sub.add_parser("show", help="summary of a cache folder")
    p.add_argument("dir")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cache_show)
