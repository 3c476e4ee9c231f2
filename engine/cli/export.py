"""``python -m engine export ...``: a 3D training run's student to ONNX, with parity, INT8 and latency tables.

    python -m engine export --run ID [--runs DIR] [--int8] [--checkpoint best|last] [--threads N]
                            [--out DIR] [--json] [--quiet]

Writes ``student.onnx``, ``student.faces.json``, ``student.json`` (and ``student.int8.onnx`` with
``--int8``) plus ``export.json`` / ``export.md`` into ``--out`` (default ``runs/<id>/export/``) and prints
the tables. With onnxruntime-web installed (``make install``) it also writes the web bundle, ``web/`` and
``student-web.zip``: a static page that runs the student in a browser (``engine.export.web_bundle``). The
export itself is a run (kind ``export``, its own folder in the runs root), as in the studio, so the Runs
tab lists it. Latency uses ``--threads`` threads for torch and ONNX Runtime alike. See
``engine.export.mesh_student``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _export(args: argparse.Namespace) -> int:
    from engine import runs
    from engine.cli import CliProgress, recorded_run
    from engine.config import UserError
    from engine.export.mesh_student import EXPORT_KIND, TOLERANCE, export_student

    root = Path(args.runs).resolve() if args.runs else None
    run_dir = runs.run_dir(args.run, root)
    opts = {"out_dir": Path(args.out) if args.out else None, "int8": args.int8, "checkpoint": args.checkpoint,
            "threads": args.threads}
    if not run_dir.is_dir():  # checked before an export run is recorded for it
        raise UserError(f"{run_dir}: no such run folder")
    job = runs.create_run(EXPORT_KIND, {"run": args.run, **opts, "out_dir": args.out}, root=root)  # the Runs tab
    report = recorded_run(CliProgress(quiet=args.quiet, run_dir=job), lambda ctx: export_student(ctx, run_dir, **opts))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(report["markdown"])
        print(f"wrote    {Path(report['files']['meta']).parent}/export.json")
        web = report["files"].get("web")
        print(f"web page {web}/index.html (try it: python -m http.server --directory {web}, then open "
              "http://127.0.0.1:8000/)" if web else "web page not written: onnxruntime-web is not installed "
              "(run 'make install')")
    if not report["parity_ok"]:
        print(f"parity FAILED: ONNX Runtime differs from torch by more than {TOLERANCE:g} (see the table)",
              file=sys.stderr)
        return 1
    return 0


def register(sub) -> None:
    p = sub.add_parser("export", help="export a 3D training run's student to ONNX (parity, INT8, latency) and "
                                      "as a web page")
    p.add_argument("--run", required=True, help="training run ID")
    p.add_argument("--runs", default=None, help="runs folder (default $DS_RUNS or ./runs)")
    p.add_argument("--int8", action="store_true", help="also write an INT8 (dynamic quantisation) model")
    p.add_argument("--checkpoint", default="best", choices=("best", "last"), help="which checkpoint (default best)")
    p.add_argument("--threads", type=int, default=2, help="threads for torch and ONNX Runtime (default 2)")
    p.add_argument("--out", default=None, help="output folder (default runs/<id>/export/)")
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_export)
