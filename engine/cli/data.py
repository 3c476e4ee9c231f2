"""``python -m engine data check|sample|render``: validate a dataset, build the sample, render meshes."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def _data_check(args: argparse.Namespace) -> int:
    from engine.cli import CliProgress
    from engine.data.layout import check_dataset, summarise

    rows = check_dataset(CliProgress(quiet=args.json), Path(args.root), check_meshes=not args.no_meshes)
    summary = summarise(rows)
    if args.json:
        print(json.dumps({"rows": rows, "summary": summary}, indent=2))
    else:
        width = max([len("ID")] + [len(r["id"]) for r in rows])
        print(f"{'ID':<{width}}  {'STATUS':<10}  {'GT':<3}  {'VIEWS':<5}  PROBLEMS")
        for r in rows:
            problems = "; ".join(r["problems"]) or "-"
            print(f"{r['id']:<{width}}  {r['status']:<10}  {'yes' if r['has_gt'] else 'no':<3}  "
                  f"{len(r['views'])}/4    {problems}")
        print(f"{summary['total']} shoes: {summary['ok']} ok, {summary['photo-only']} photo-only, "
              f"{summary['problem']} with problems")
    return 0 if summary["problem"] == 0 else 1


def _data_sample(args: argparse.Namespace) -> int:
    from engine.cli import CliProgress
    from engine.config import sample_root
    from engine.data.sample_shoes import build_sample

    out = Path(args.out) if args.out else sample_root()
    result = build_sample(CliProgress(quiet=args.quiet), out, count=args.count, seed=args.seed, gt=args.gt)
    print(f"sample: {result['built']} built, {result['skipped']} already there, "
          f"{result['count']} shoes (seed {result['seed']}, GT for {result['gt']}, the rest photo-only) "
          f"in {result['out']} ({result['seconds']:.1f} s)")
    return 0


def _data_render(args: argparse.Namespace) -> int:
    from engine.cli import CliProgress
    from engine.data.render import render_meshes_into_layout

    rows = render_meshes_into_layout(CliProgress(quiet=args.quiet), Path(args.meshes), Path(args.out), up=args.up)
    width = max([len("ID")] + [len(r["id"]) for r in rows])
    print(f"{'ID':<{width}}  {'STATUS':<8}  SOURCE -> MESSAGE")
    for r in rows:
        print(f"{r['id']:<{width}}  {r['status']:<8}  {r['source']} -> {r['message']}")
    ok = sum(r["status"] == "ok" for r in rows)
    print(f"{ok} of {len(rows)} meshes rendered into {args.out}")
    return 0 if ok == len(rows) else 1


def register(sub) -> None:
    p_data = sub.add_parser("data", help="datasets: validate, build the sample, render meshes into views")
    data_sub = p_data.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    p = data_sub.add_parser("check", help="validate a dataset folder (exit 1 if any shoe has a problem)")
    p.add_argument("root", help="dataset folder holding input_images/ (and OBJs/)")
    p.add_argument("--no-meshes", action="store_true", help="skip loading the GT meshes (faster)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_data_check)

    p = data_sub.add_parser("sample", help="build the procedural sample dataset (resumes if interrupted)")
    p.add_argument("--count", type=int, default=101, help="number of shoes (default 101)")
    p.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    p.add_argument("--gt", type=int, default=None,
                   help="keep the GT mesh of the first N shoes only; the rest are photo-only (default: all)")
    p.add_argument("--out", default=None, help="output folder (default $DS_DATA/sample)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_data_sample)

    p = data_sub.add_parser("render", help="turn a folder of meshes (obj/ply/stl/off/glb) into a dataset")
    p.add_argument("--meshes", required=True, help="folder of mesh files")
    p.add_argument("--out", required=True, help="dataset folder to write OBJs/ and input_images/ into")
    p.add_argument("--up", default="y", choices=("y", "z", "x", "auto"),
                   help="which of the file's axes is up (default y); auto: principal axes, longest "
                        "horizontal (see engine/geometry/orientation.py); recorded in import.json")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_data_render)
