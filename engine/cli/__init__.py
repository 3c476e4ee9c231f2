"""``python -m engine <command> ...``: the headless face of the studio.

Each area registers its own subcommands from a small module in this package (imported here; it must stay
light — heavy imports happen inside the handlers). A handler returns an exit code. A ``UserError``
(bad path, bad ID, bad config) prints as one ``error: ...`` line and exits 2; Ctrl-C exits 130.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
import time

from engine.config import UserError

# Areas that add subcommands: module path -> it defines ``register(subparsers)``.
COMMAND_MODULES: tuple[str, ...] = (
    "engine.cli.runs",
    "engine.cli.data",
    "engine.cli.teacher",
    "engine.cli.train",
    "engine.cli.vae",
    "engine.cli.infer",
    "engine.cli.export",
)


def read_config_json(path: str) -> dict:
    """A ``--config`` file: a JSON object, or a one-line ``UserError`` saying what is wrong with it."""
    import json
    from pathlib import Path

    p = Path(path).expanduser()
    try:
        cfg = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"--config {path}: no such file") from None
    except RecursionError:
        raise UserError(f"--config {p.name}: nested too deeply to read (keep it to a flat JSON object)") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError; an integer past Python's digit limit
        raise UserError(f"--config {p.name}: not valid JSON ({str(exc).splitlines()[0][:120]})") from None
    if not isinstance(cfg, dict):
        raise UserError(f"--config {p.name}: expected a JSON object")
    return cfg


_bar_open = False  # a progress bar is drawn on stderr without its newline yet


class CliProgress:
    """An ``engine.progress.Context`` for engine jobs run in the foreground of a terminal: a progress bar
    and log lines on stderr (none when ``quiet``). With ``run_dir`` (and ``write``) the run folder is
    kept too, by the same ``engine.runs.RunRecorder`` the job runner uses: ``status.json`` progress,
    ``history.jsonl``, ``log.txt``; ``recorder`` then drives the status lifecycle (start / finish)."""

    def __init__(self, quiet: bool = False, run_dir=None, write: bool = True):
        from pathlib import Path

        from engine.runs import RunRecorder

        self.quiet = quiet
        self._last = 0.0
        self.run_dir = Path(run_dir) if run_dir else None
        self.job_id = self.run_dir.name if self.run_dir else None
        self.recorder = RunRecorder(self.run_dir) if self.run_dir and write else None

    def progress(self, fraction: float, message: str = "") -> None:
        if self.recorder:
            self.recorder.progress(fraction, message)
        now = time.monotonic()
        if self.quiet or (now - self._last < 0.5 and fraction < 1.0):
            return
        self._last = now
        global _bar_open
        bar = "#" * int(30 * fraction)
        print(f"\r[{bar:<30}] {100 * fraction:5.1f}% {message[:60]:<60}", end="" if fraction < 1 else "\n",
              file=sys.stderr, flush=True)
        _bar_open = fraction < 1

    def log(self, text: str) -> None:
        global _bar_open
        if self.recorder:
            self.recorder.log(text)
        if not self.quiet:
            print(f"\n{text}", file=sys.stderr)
            _bar_open = False

    def metric(self, record: dict) -> None:
        if self.recorder:
            self.recorder.metric(record)

    def cancelled(self) -> bool:
        return False

    def check_cancelled(self) -> None:
        return None


def saved_run_config(run_id: str, root) -> tuple:
    """``(run folder, its config.json without "kind")`` of a run to resume; ``UserError`` when it has none."""
    from engine import runs, storage
    from engine.config import UserError

    run_dir = runs.run_dir(run_id, root)
    saved = storage.read_json(run_dir / "config.json")
    if not isinstance(saved, dict):
        raise UserError(f"no run {run_id!r} in {run_dir.parent} (config.json not found)")
    return run_dir, {k: v for k, v in saved.items() if k != "kind"}


def recorded_run(ctx: "CliProgress", fn, *args, resumed: bool = False, lock=None):
    """``fn(ctx, *args)`` inside the run folder's status lifecycle (``running`` → ``succeeded`` /
    ``failed`` / ``cancelled`` on Ctrl-C), as the job runner writes it, holding the run's write lock
    (``engine.runs.RunLock``; ``lock``: one the caller took already, released here too): a second writer
    of the same run gets a one-line error before it writes anything. Without a recorder just the call."""
    from engine.runs import RunLock

    recorder = ctx.recorder
    if recorder and lock is None:
        lock = RunLock(ctx.run_dir).acquire()
    try:
        if recorder:
            recorder.start("resuming" if resumed else "running")
        try:
            result = fn(ctx, *args)
        except KeyboardInterrupt:
            if recorder:
                recorder.finish("cancelled", "interrupted (Ctrl-C); resume with --resume")
            raise
        except BaseException as exc:
            if recorder:
                msg = str(exc).strip() or type(exc).__name__
                recorder.finish("failed", msg, error=msg)
            raise
        if recorder:
            recorder.finish("succeeded", "done", progress=1.0)
        return result
    finally:
        if lock is not None:
            lock.release()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description="Distillation Studio engine (headless).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(("\n" if _bar_open else "") + f"error: {exc}", file=sys.stderr)  # on a line of its own
        return 2
    except OSError as exc:  # a full disk or a read-only folder outside engine.storage (history / log appends)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            print(("\n" if _bar_open else "") + f"error: no space left on the device ({os.strerror(exc.errno)}); "
                  "free some space and run it again", file=sys.stderr)
            return 2
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS) and exc.filename:
            print(("\n" if _bar_open else "") + f"error: {exc.filename}: {os.strerror(exc.errno)}; check the "
                  "folder's permissions (or choose another one)", file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
