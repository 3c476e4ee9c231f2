"""``python -m engine runs list|show``: read run folders."""
from __future__ import annotations

import argparse
import json
import time

from engine import runs


def _runs_list(args: argparse.Namespace) -> int:
    rows = runs.list_runs(args.root)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no runs in {args.root or runs.runs_root()}")
        return 0
    print(f"{'ID':<40} {'KIND':<12} {'STATE':<12} {'STARTED':<20} {'DURATION':>9}")
    for r in rows:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["started"])) if r["started"] else ""
        print(f"{r['id']:<40} {r['kind']:<12} {r['state']:<12} {started:<20} {runs.format_duration(r['duration']):>9}")
    return 0


def _runs_show(args: argparse.Namespace) -> int:
    run = runs.load_run(args.id, args.root)
    if args.json:
        print(json.dumps(run, indent=2, default=str))
        return 0
    st = run["status"]
    print(f"run      {run['id']}\nfolder   {run['path']}\nkind     {st.get('kind')}\nstate    {st.get('state')}"
          f"\nprogress {100 * float(st.get('progress') or 0):.0f}%  {st.get('message', '')}")
    if st.get("error"):
        print(f"error    {st['error']}")
    print("config   " + json.dumps(run["config"], sort_keys=True))
    hist = run["history"]
    print(f"history  {len(hist)} records")
    if hist:
        print("last     " + json.dumps(hist[-1], sort_keys=True))
    return 0


def register(sub) -> None:
    p_runs = sub.add_parser("runs", help="list and inspect run folders")
    runs_sub = p_runs.add_subparsers(dest="runs_command", metavar="ACTION", required=True)
    p = runs_sub.add_parser("list", help="all runs, newest first")
    p.add_argument("--root", default=None, help="runs folder (default $DS_RUNS or ./runs)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_runs_list)
    p = runs_sub.add_parser("show", help="one run: status, config, last history record")
    p.add_argument("id", help="run ID (see 'runs list')")
    p.add_argument("--root", default=None, help="runs folder (default $DS_RUNS or ./runs)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_runs_show)
