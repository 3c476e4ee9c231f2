"""``python -m engine <command> ...``: the headless face of the studio.

Each area registers its own subcommands from a small ``cli`` module (imported here; it must stay
light — heavy imports happen inside the handlers). A handler returns an exit code. A ``UserError``
(bad path, bad ID, bad config) prints as one ``error: ...`` line and exits 2; Ctrl-C exits 130.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
import time

from engine import runs
from engine.config import UserError

# Areas that add subcommands: module path -> it defines ``register(subparsers)``.
COMMAND_MODULES: tuple[str, ...] = ()


class CliProgress:
    """A ``JobContext``-compatible reporter for running engine jobs in the foreground of a terminal."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self._last = 0.0
        self.run_dir = None
        self.job_id = None

    def progress(self, fraction: float, message: str = "") -> None:
        now = time.monotonic()
        if self.quiet or (now - self._last < 0.5 and fraction < 1.0):
            return
        self._last = now
        bar = "#" * int(30 * fraction)
        print(f"\r[{bar:<30}] {100 * fraction:5.1f}% {message[:60]:<60}", end="" if fraction < 1 else "\n",
              file=sys.stderr, flush=True)

    def log(self, text: str) -> None:
        if not self.quiet:
            print(f"\n{text}", file=sys.stderr)

    def metric(self, record: dict) -> None:
        pass

    def cancelled(self) -> bool:
        return False

    def check_cancelled(self) -> None:
        return None


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description="Distillation Studio engine (headless).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

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

    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
