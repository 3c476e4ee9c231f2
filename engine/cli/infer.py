"""``python -m engine infer ...``: one mesh from a trained 3D student and 1-4 shoe photos.

    python -m engine infer --checkpoint PATH (--shoe-dir DIR | --front F [--left L --back B --right R])
                           --out mesh.glb|obj [--threads N] [--json]

``--checkpoint``: a ``.pt`` student checkpoint (``runs/<id>/checkpoints/best.pt``) or a ``student.onnx``
/ ``student.int8.onnx`` from ``engine export`` (its ``student.json`` and ``student.faces.json`` beside it).
``--shoe-dir``: a folder with ``front.png``, ``left.png``, ``back.png``, ``right.png`` (missing views are
zeros). Photos may be RGBA (alpha = mask) or RGB on a plain backdrop. See ``engine.infer``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def _infer(args: argparse.Namespace) -> int:
    from engine.cli import CliProgress
    from engine.config import UserError
    from engine.infer import infer

    others = {"left": args.left, "back": args.back, "right": args.right}
    if args.shoe_dir is not None and any(others.values()):
        raise UserError("--left/--back/--right go with --front, not with --shoe-dir")
    photos = None if args.shoe_dir is not None else {"front": args.front, **others}
    result = infer(CliProgress(quiet=True), Path(args.checkpoint), Path(args.out),  # a second or so: no bar
                   shoe_dir=Path(args.shoe_dir) if args.shoe_dir is not None else None, photos=photos,
                   threads=args.threads)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"wrote    {result['out']}\nmesh     {result['vertices']} vertices, {result['faces']} faces\n"
              f"views    {', '.join(result['views'])}\nmodel    {result['kind']} ({result['predict_seconds'] * 1000:.1f} ms "
              f"to predict, {result['seconds']:.2f} s in all)")
    return 0


def register(sub) -> None:
    p = sub.add_parser("infer", help="predict a shoe mesh from photos with a trained 3D student (.pt or .onnx)")
    p.add_argument("--checkpoint", required=True, help="student checkpoint (.pt) or exported student.onnx")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--shoe-dir", default=None, help="folder with front.png, left.png, back.png, right.png")
    src.add_argument("--front", default=None, help="front photo (with --left/--back/--right optional)")
    p.add_argument("--left", default=None, help="left photo (with --front)")
    p.add_argument("--back", default=None, help="back photo (with --front)")
    p.add_argument("--right", default=None, help="right photo (with --front)")
    p.add_argument("--out", required=True, help="mesh file to write: .glb or .obj (.ply, .stl also work)")
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads for an .onnx model (default 2)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_infer)
