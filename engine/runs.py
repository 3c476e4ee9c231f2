"""Run folders: ``<runs root>/<run id>/`` holds everything one job leaves behind.

    config.json     the job's settings, written once when the run is created
    status.json     state, progress, message, error, timestamps, owning pid (rewritten atomically)
    history.jsonl   one JSON object per logged step / epoch (append-only; a torn last line is skipped)
    log.txt         the job's log lines
    ...             checkpoints and artefacts written by the job itself

A run whose status says queued/running but whose process is gone (the studio was killed or
restarted) is reported as ``interrupted``; nothing is rewritten until the run is resumed.

``RunRecorder`` is the one writer of a running job's status / history / log: the job runner
(``engine.jobs``) and the foreground CLI (``engine.cli.CliProgress`` with a run folder) both use it.

``RunLock`` keeps that one writer one process: whoever writes a run (a training or VAE job of the studio
from submit to its end, a CLI ``train`` / ``vae distill`` / ``teacher pretrain``) holds ``<run>/.lock``
(an ``fcntl.flock`` on a file holding the owner's pid). A second writer gets a ``UserError`` naming the
owner; the kernel drops the lock when its process dies, so a lock left by a killed process is stale and
simply taken over.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any

from engine import storage
from engine.config import UserError, runs_root, validate_id

ACTIVE_STATES = ("queued", "running")
FINAL_STATES = ("succeeded", "failed", "cancelled", "interrupted")


def new_run_id(kind: str) -> str:
    """``YYYYmmdd-HHMMSS-<kind>-<4 hex>``: sortable by start time, unique within a process."""
    safe_kind = re.sub(r"[^A-Za-z0-9_-]", "", kind)[:24] or "job"
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{safe_kind}-{secrets.token_hex(2)}"


def run_dir(run_id: str, root: Path | None = None) -> Path:
    """Folder of ``run_id`` under ``root`` (default: the runs root). The ID rule is the one of every ID
    (``engine.config.validate_id``), so IDs like ``../x`` are refused."""
    return Path(root or runs_root()) / validate_id(run_id, "run ID")


def create_run(kind: str, config: dict[str, Any], root: Path | None = None, run_id: str | None = None) -> Path:
    """Make a new run folder with ``config.json`` and a ``queued`` status; returns its path."""
    run_id = run_id or new_run_id(kind)
    path = run_dir(run_id, root)
    storage.make_dirs(path.parent)  # a read-only runs folder: one line naming it
    try:
        path.mkdir(exist_ok=False)
    except OSError as exc:
        if exc.errno in storage.NOT_WRITABLE_ERRNOS:
            raise storage.not_writable(path.parent, exc) from None
        raise
    storage.write_json(path / "config.json", {"kind": kind, **config} if "kind" not in config else config)
    write_status(path, run_id=run_id, kind=kind, state="queued", progress=0.0, message="queued",
                 created=time.time(), pid=os.getpid())
    return path


def write_status(path: Path, **fields: Any) -> dict[str, Any]:
    """Merge ``fields`` into ``status.json`` (atomic rewrite) and return the new status."""
    status = storage.read_json(Path(path) / "status.json", default={}) or {}
    status.update(fields)
    status["updated"] = time.time()
    storage.write_json(Path(path) / "status.json", status)
    return status


def append_history(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line to ``history.jsonl`` and flush it to disk."""
    with open(Path(path) / "history.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(record, default=float) + "\n")
        f.flush()
        os.fsync(f.fileno())


def append_log(path: Path, line: str) -> None:
    """Append one line to ``log.txt``."""
    with open(Path(path) / "log.txt", "a", encoding="utf-8") as f:
        f.write(line.rstrip("\n") + "\n")


def timestamped(text: str) -> str:
    """A log line as the run's log.txt holds it: ``[HH:MM:SS] text``."""
    return f"[{time.strftime('%H:%M:%S')}] {text}"


class RunRecorder:
    """What a running job writes into its run folder, and when: the status lifecycle (``start`` →
    ``progress``… → ``finish``), one ``history.jsonl`` line per ``metric`` (stamped with ``time``) and one
    ``log.txt`` line per ``log`` (stamped ``[HH:MM:SS]``). Progress rewrites ``status.json`` at most every
    ``STATUS_INTERVAL`` seconds (and always at 100 %)."""

    STATUS_INTERVAL = 0.5

    def __init__(self, path: Path):
        self.path = Path(path)
        self._last_status = 0.0

    def reopen(self, state: str, message: str) -> dict[str, Any]:
        """A finished run taken up again (resume): ``state`` with this process as its owner, no end, no error.
        Its first ``started`` and the seconds it already ran (``run_seconds``) are kept; a stretch its earlier
        process left open (killed) is closed at that process's last status write."""
        status = storage.read_json(self.path / "status.json", default={}) or {}
        return write_status(self.path, state=state, message=message, pid=os.getpid(), finished=None, error=None,
                            run_seconds=_closed_seconds(status), segment_started=None)

    def start(self, message: str = "running", started: float | None = None) -> dict[str, Any]:
        """The job begins (or, resumed, begins again): ``running``, owned by this process, this stretch of
        work timed from ``started`` (default now) as ``segment_started``. The run's ``started`` stays its
        first start; a stretch an earlier process left open (killed) counts up to its last status write."""
        now = started or time.time()
        status = storage.read_json(self.path / "status.json", default={}) or {}
        return write_status(self.path, state="running", started=status.get("started") or now, segment_started=now,
                            run_seconds=_closed_seconds(status), message=message, pid=os.getpid(), finished=None,
                            error=None)

    def progress(self, fraction: float, message: str = "") -> None:
        now = time.monotonic()
        if now - self._last_status > self.STATUS_INTERVAL or fraction >= 1.0:
            self._last_status = now
            fields: dict[str, Any] = {"progress": min(max(float(fraction), 0.0), 1.0)}
            if message:
                fields["message"] = message
            write_status(self.path, **fields)

    def log(self, text: str, stamped: bool = False) -> str:
        """Append ``text`` (stamped unless ``stamped`` says it already is) to log.txt; returns the line."""
        line = text if stamped else timestamped(text)
        append_log(self.path, line)
        return line

    def metric(self, record: dict[str, Any], stamped: bool = False) -> dict[str, Any]:
        """Append ``{"time": now, **record}`` (``record`` as it is when ``stamped``) to history.jsonl; returns it."""
        record = record if stamped else {"time": round(time.time(), 3), **record}
        append_history(self.path, record)
        return record

    def finish(self, state: str, message: str, **fields: Any) -> dict[str, Any]:
        """The job ended in ``state`` (a ``FINAL_STATES`` one); ``fields``: ``progress``, ``error``,
        ``finished`` (default now), …"""
        fields.setdefault("finished", time.time())
        status = storage.read_json(self.path / "status.json", default={}) or {}
        return write_status(self.path, state=state, message=message,
                            run_seconds=_closed_seconds({**status, "updated": fields["finished"]}),
                            segment_started=None, **fields)


def _closed_seconds(status: dict[str, Any]) -> float:
    """Seconds the run has worked, its open stretch (``segment_started`` → last ``updated``) included:
    ``run_seconds`` + (``updated`` − ``segment_started``)."""
    done = float(status.get("run_seconds") or 0.0)
    seg, last = status.get("segment_started"), status.get("updated")
    return done + max(float(last) - float(seg), 0.0) if seg and last else done


def active_seconds(status: dict[str, Any], now: float | None = None) -> float | None:
    """How long a run has actually worked, in seconds: every stretch from a start to its finish (or, for a
    run running now, to ``now``; for one whose process died, to its last status write), summed — a run
    resumed twice counts its three stretches, not the time since its first start nor since its resume.
    Runs written before stretches were recorded: ``finished`` (or last update) − ``started``."""
    if "run_seconds" not in status and "segment_started" not in status:  # a run from before stretches
        started = status.get("started") or status.get("created")
        end = status.get("finished") or (time.time() if status.get("state") == "running" else status.get("updated"))
        return (end - started) if (started and end) else None
    if status.get("state") == "running" and status.get("segment_started"):
        return float(status.get("run_seconds") or 0.0) + max((now or time.time()) - status["segment_started"], 0.0)
    return _closed_seconds(status)


LOCK_NAME = ".lock"
_HELD: set[str] = set()  # run folders this process holds the lock of (a job's own run and its sub-runs)


def held_here(path: Path) -> bool:
    """Whether this process is writing the run at ``path`` now (it holds its ``RunLock``)."""
    return str(Path(path).resolve()) in _HELD


class RunLock:
    """The write lock of one run folder (see the module docstring); a context manager.

    ``acquire`` raises ``UserError`` when another process — or another job of this one — holds it. The
    lock file is never removed (removing it would let two writers lock two different files); an unlocked
    file is free whatever pid it names."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        lock = self.path / LOCK_NAME
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UserError(f"cannot lock run {self.path.name}: {lock} ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            owner = _read_owner(fd)
            os.close(fd)
            since = time.strftime("%H:%M:%S", time.localtime(owner["since"])) if owner.get("since") else "?"
            who = "this studio" if owner.get("pid") == os.getpid() else "another process"
            raise UserError(f"run {self.path.name} is being written by {who} (pid {owner.get('pid', '?')}, since "
                            f"{since}); wait for it to finish or stop it first") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "since": round(time.time(), 3)}).encode(), 0)
        self._fd = fd
        _HELD.add(str(self.path.resolve()))
        return self

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            _HELD.discard(str(self.path.resolve()))
            try:
                os.ftruncate(fd, 0)  # a released lock names no owner
            except OSError:
                pass
            os.close(fd)  # closing drops the flock

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_owner(fd: int) -> dict[str, Any]:
    try:
        owner = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        owner = {}
    return owner if isinstance(owner, dict) else {}


def read_history(path: Path) -> list[dict[str, Any]]:
    """All records of ``history.jsonl``; lines that do not parse (a write cut by a kill) are skipped."""
    records = []
    try:
        with open(Path(path) / "history.jsonl", encoding="utf-8") as f:
            for line in f:
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    except FileNotFoundError:
        pass
    return records


TIMING_KEYS = ("time", "seconds", "seconds_per_step")  # wall-clock figures of a history record


def is_timing_key(key: str) -> bool:
    """True for a history key holding wall-clock time (``TIMING_KEYS`` or ``*_seconds``): it differs between
    two runs of the same config and seed, so it is never part of "the same numbers" (resume, determinism)."""
    return key in TIMING_KEYS or key.endswith("_seconds")


def without_timings(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``records`` with their timing keys (``is_timing_key``) left out: what a rerun must reproduce."""
    return [{k: v for k, v in r.items() if not is_timing_key(k)} for r in records]


def pid_alive(pid: Any) -> bool:
    """Whether a process with this pid exists (a positive int; anything else is not alive)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def effective_status(status: dict[str, Any], live_ids: set[str] | None = None,
                     path: Path | None = None) -> dict[str, Any]:
    """The status as a reader should see it: an active run whose owner is gone becomes ``interrupted``.

    ``live_ids``: run IDs the calling process is executing right now. A run owned by this very
    process but absent from ``live_ids`` was left over by an earlier incarnation (a restart) — unless
    this process holds its lock (``path``: its folder): a second run written inside a live job, such as
    the baseline of ``distill_with_baseline``, is running.
    """
    status = dict(status)
    if status.get("state") in ACTIVE_STATES:
        pid = status.get("pid")
        mine = pid == os.getpid()
        gone = live_ids is not None and status.get("run_id") not in live_ids and not (
            path is not None and held_here(path))  # a sub-run (a pair's baseline) of a live job is live too
        if (mine and gone) or (not mine and not pid_alive(pid)):
            status["state"] = "interrupted"
            status["message"] = "interrupted: the process running it stopped (resume where supported)"
    return status


def summarise(path: Path, live_ids: set[str] | None = None) -> dict[str, Any]:
    """One row for tables: id, kind, state, started (the first start), finished, duration (s of work, every
    resumed stretch added: ``active_seconds``), progress, message."""
    status = effective_status(storage.read_json(path / "status.json", default={}) or {}, live_ids, path)
    return {
        "id": path.name,
        "kind": status.get("kind", "?"),
        "state": status.get("state", "unknown"),
        "started": status.get("started") or status.get("created"),
        "finished": status.get("finished"),
        "duration": active_seconds(status),
        "progress": status.get("progress", 0.0),
        "message": status.get("message", ""),
    }


def list_runs(root: Path | None = None, live_ids: set[str] | None = None) -> list[dict[str, Any]]:
    """Summaries of every run folder under ``root``, newest first. Folders without a status are skipped."""
    root = Path(root or runs_root())
    if not root.is_dir():
        return []
    rows = [summarise(p, live_ids) for p in root.iterdir() if p.is_dir() and (p / "status.json").is_file()]
    return sorted(rows, key=lambda r: (r["started"] or 0, r["id"]), reverse=True)


def load_run(run_id: str, root: Path | None = None, live_ids: set[str] | None = None) -> dict[str, Any]:
    """``{id, path, config, status, history, log}`` of one run; ``UserError`` when it does not exist."""
    path = run_dir(run_id, root)
    if not (path / "status.json").is_file():
        raise UserError(f"no run {run_id!r} in {path.parent}")
    log_path = path / "log.txt"
    log = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-200:] if log_path.is_file() else []
    return {
        "id": run_id,
        "path": str(path),
        "config": storage.read_json(path / "config.json", default={}),
        "status": effective_status(storage.read_json(path / "status.json", default={}), live_ids, path),
        "history": read_history(path),
        "log": log,
    }


def format_duration(seconds: float | None) -> str:
    """``73.2`` -> ``'1m 13s'``; ``None`` -> ``''``."""
    if seconds is None:
        return ""
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h {m:02d}m" if h else (f"{m}m {s:02d}s" if m else f"{s}s")
