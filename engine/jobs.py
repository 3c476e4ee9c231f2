"""Background job runner: every long task (cache build, training, export, sample build) runs here.

A job is a plain function ``fn(ctx, **kwargs)``. It reports through its ``JobContext``, this runner's
implementation of ``engine.progress.Context``: progress and message for the bar, log lines into the
log tail, metric records into the snapshot's ``metrics``, and — for a job with a run folder — the same
into ``runs/<id>/`` through one ``engine.runs.RunRecorder`` (which also writes the status lifecycle:
queued → running → succeeded / failed / cancelled). ``ctx.run_dir`` is ``None`` for jobs submitted
without a run.

Lanes: each device lane (``cpu``, ``cuda``) has one worker thread, so one heavy job runs per lane at
a time and the others wait in submission order. The ``light`` lane is for jobs of a second or two
that a user waits on while a heavy one runs (the photo previews of the upload boxes). A job that
raises is marked ``failed`` with its message and traceback; the worker carries on with the next
job. Engine functions that can run as a job take ``ctx`` as their first argument and accept
``NULL_CONTEXT`` (``engine.progress``) when called directly.
"""
from __future__ import annotations

import collections
import itertools
import queue
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from engine import runs
from engine.progress import NULL_CONTEXT, Context, JobCancelled  # noqa: F401 - re-exported: the job API

LANES = ("cpu", "cuda", "light")
LOG_TAIL = 500
STOPPING = "stopping: cancel requested, it ends at its next step"


class JobContext:
    """What a running job sees (an ``engine.progress.Context``). Thread-safe; cheap to call every step."""

    def __init__(self, job: "Job | None" = None):
        self._job = job

    @property
    def run_dir(self) -> Path | None:
        return self._job.run_dir if self._job else None

    @property
    def job_id(self) -> str | None:
        return self._job.id if self._job else None

    def progress(self, fraction: float, message: str = "") -> None:
        if self._job:
            self._job._set_progress(fraction, message)

    def log(self, text: str) -> None:
        if self._job:
            self._job._log(text)

    def metric(self, record: dict[str, Any]) -> None:
        if self._job:
            self._job._metric(record)

    def cancelled(self) -> bool:
        return bool(self._job and self._job._cancel.is_set())

    def check_cancelled(self) -> None:
        if self.cancelled():
            raise JobCancelled("cancelled by the user")


@dataclass
class Job:
    id: str
    name: str
    kind: str
    lane: str
    fn: Callable[..., Any]
    kwargs: dict[str, Any]
    run_dir: Path | None
    recorder: runs.RunRecorder | None = None  # the run folder's writer; None without a run
    lock: runs.RunLock | None = None  # the run folder's write lock, held from submit to the end
    state: str = "queued"
    progress: float = 0.0
    message: str = "queued"
    error: str | None = None
    traceback: str | None = None
    result: Any = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    metrics: list[dict[str, Any]] = field(default_factory=list)
    eta_from: tuple[float, float] | None = None  # (time, fraction) of the job's first progress report
    logs: collections.deque = field(default_factory=lambda: collections.deque(maxlen=LOG_TAIL))
    _cancel: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _done: threading.Event = field(default_factory=threading.Event)

    # -- called from the job's thread through JobContext -------------------------------------
    def _set_progress(self, fraction: float, message: str) -> None:
        with self._lock:
            self.progress = min(max(float(fraction), 0.0), 1.0)
            if self.eta_from is None:
                self.eta_from = (time.time(), self.progress)
            if message and not self._cancel.is_set():  # stopping: the message says so until the end
                self.message = message
            fraction, message = self.progress, self.message
        if self.recorder:
            self.recorder.progress(fraction, message)  # throttled there

    def _log(self, text: str) -> None:
        line = runs.timestamped(text)
        with self._lock:
            self.logs.append(line)
        if self.recorder:
            self.recorder.log(line, stamped=True)

    def _metric(self, record: dict[str, Any]) -> None:
        record = {"time": round(time.time(), 3), **record}
        with self._lock:
            self.metrics.append(record)
        if self.recorder:
            self.recorder.metric(record, stamped=True)

    # -- readers -----------------------------------------------------------------------------
    @property
    def stopping(self) -> bool:
        """Cancel was requested and the job has not reached its next check yet (still queued / running)."""
        return self._cancel.is_set() and self.state in runs.ACTIVE_STATES

    def eta(self, now: float | None = None) -> float | None:
        """Seconds left for the whole job, from one estimator: the rate since its first progress report
        (t0, f0) — ``(now − t0) · (1 − f) / (f − f0)`` — so a resumed job that starts at 40 % is timed from
        there. None until it has moved 1 % and run 2 s, and once it is not running."""
        if self.state != "running" or self.eta_from is None:
            return None
        (t0, f0), now = self.eta_from, now or time.time()
        moved = self.progress - f0
        if moved < 0.01 or now - t0 < 2.0:
            return None
        return max((now - t0) * (1.0 - self.progress) / moved, 0.0)

    def snapshot(self, metrics_since: int = 0) -> dict[str, Any]:
        """A consistent copy for the UI: state, progress, ETA (s, ``eta``), message, error, metrics[since:],
        log tail."""
        with self._lock:
            return {
                "id": self.id, "name": self.name, "kind": self.kind, "lane": self.lane,
                "state": self.state, "progress": self.progress, "eta": self.eta(), "message": self.message,
                "stopping": self.stopping,
                "error": self.error, "traceback": self.traceback,
                "created": self.created, "started": self.started, "finished": self.finished,
                "metrics": list(self.metrics[metrics_since:]), "n_metrics": len(self.metrics),
                "log": list(self.logs),
                "run_dir": str(self.run_dir) if self.run_dir else None,
            }


class JobRunner:
    """One worker thread per lane; jobs run one at a time per lane in submission order."""

    def __init__(self, runs_root: Path | None = None):
        self._runs_root = runs_root
        self._jobs: dict[str, Job] = {}
        self._queues: dict[str, queue.Queue] = {lane: queue.Queue() for lane in LANES}
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()
        self._counter = itertools.count(1)

    # -- submitting --------------------------------------------------------------------------
    def submit(self, fn: Callable[..., Any], *, kind: str, name: str | None = None, lane: str = "cpu",
               run_config: dict[str, Any] | None = None, with_run: bool = True, existing_run: Path | None = None,
               **kwargs: Any) -> str:
        """Queue ``fn(ctx, **kwargs)`` on ``lane``; returns the job ID (= the run ID when a run is made).

        ``with_run``: create ``runs/<id>/`` with ``config.json`` = ``run_config``; by default the
        ``config`` keyword when the job takes one dict (``fn(ctx, config={...})``), else the JSON-able
        ``kwargs``.
        ``existing_run``: continue that run folder instead (resume); its name becomes the job ID.
        """
        if lane not in LANES:
            raise ValueError(f"unknown lane {lane!r}; expected one of {LANES}")
        run_dir = lock = None
        if existing_run is not None:
            run_dir = Path(existing_run)
            job_id = run_dir.name
            lock = runs.RunLock(run_dir).acquire()  # UserError while another writer has it
            try:
                runs.RunRecorder(run_dir).reopen("queued", "queued (resume)")
            except BaseException:
                lock.release()
                raise
        elif with_run:
            if run_config is None:
                only_config = set(kwargs) == {"config"} and isinstance(kwargs["config"], dict)
                run_config = kwargs["config"] if only_config else _jsonable(kwargs)
            cfg = dict(run_config)
            run_dir = runs.create_run(kind, cfg, root=self._runs_root)
            job_id = run_dir.name
            lock = runs.RunLock(run_dir).acquire()
        else:
            job_id = f"{kind}-{next(self._counter)}-{int(time.time())}"
        job = Job(id=job_id, name=name or kind, kind=kind, lane=lane, fn=fn, kwargs=kwargs, run_dir=run_dir,
                  recorder=runs.RunRecorder(run_dir) if run_dir else None, lock=lock)
        with self._lock:
            self._jobs[job_id] = job
            self._ensure_worker(lane)
        self._queues[lane].put(job)
        return job_id

    def _ensure_worker(self, lane: str) -> None:
        thread = self._threads.get(lane)
        if thread is None or not thread.is_alive():
            thread = threading.Thread(target=self._work, args=(lane,), name=f"jobs-{lane}", daemon=True)
            self._threads[lane] = thread
            thread.start()

    # -- executing ---------------------------------------------------------------------------
    def _work(self, lane: str) -> None:
        while True:
            job = self._queues[lane].get()
            try:
                self._execute(job)
            finally:
                self._queues[lane].task_done()

    def _execute(self, job: Job) -> None:
        if job._cancel.is_set():  # cancelled while queued
            self._finish(job, "cancelled", "cancelled before it started")
            return
        with job._lock:
            job.state, job.started, job.message = "running", time.time(), "running"
        if job.recorder:
            job.recorder.start(started=job.started)
        try:
            job.result = job.fn(JobContext(job), **job.kwargs)
        except JobCancelled:
            self._finish(job, "cancelled", "cancelled by the user")
        except BaseException as exc:  # a job must never kill the worker
            msg = str(exc).strip() or type(exc).__name__
            with job._lock:
                job.error, job.traceback = msg, traceback.format_exc()
            _best_effort(job, job._log, f"error: {msg}")  # the disk may be full: still finish the job
            if job.recorder:
                _best_effort(job, job.recorder.log, job.traceback, stamped=True)
            self._finish(job, "failed", msg)
        else:
            if job._cancel.is_set():
                self._finish(job, "cancelled", "cancelled by the user")
            else:
                self._finish(job, "succeeded", "done", progress=1.0)

    def _finish(self, job: Job, state: str, message: str, progress: float | None = None) -> None:
        with job._lock:
            job.state, job.message, job.finished = state, message, time.time()
            if progress is not None:
                job.progress = progress
        if job.recorder:
            _best_effort(job, job.recorder.finish, state, message, finished=job.finished, progress=job.progress,
                         error=job.error)
        if job.lock:
            job.lock.release()
        job._done.set()

    # -- controlling and reading -------------------------------------------------------------
    def cancel(self, job_id: str) -> bool:
        """Ask a job to stop at its next check (or never start, if queued). False if unknown/finished; True
        while it is stopping, however often asked (the snapshot's ``stopping`` says a request is pending)."""
        job = self._jobs.get(job_id)
        if job is None or job.state not in runs.ACTIVE_STATES:
            return False
        if not job._cancel.is_set():
            with job._lock:
                job.message = STOPPING  # kept until the job ends (its own progress messages no longer replace it)
            job._cancel.set()
            job._log("cancel requested")
        return True

    def get(self, job_id: str, metrics_since: int = 0) -> dict[str, Any] | None:
        job = self._jobs.get(job_id)
        return job.snapshot(metrics_since) if job else None

    def result(self, job_id: str) -> Any:
        return self._jobs[job_id].result

    def jobs(self) -> list[dict[str, Any]]:
        return [j.snapshot(metrics_since=10**9) for j in sorted(self._jobs.values(), key=lambda j: j.created)]

    def live_ids(self) -> set[str]:
        """IDs of jobs this process has queued or running (for ``runs.effective_status``)."""
        return {j.id for j in self._jobs.values() if j.state in runs.ACTIVE_STATES}

    def active(self, kind: str | None = None) -> list[str]:
        return [j.id for j in self._jobs.values() if j.state in runs.ACTIVE_STATES and (kind is None or j.kind == kind)]

    def wait(self, job_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Block until the job ends (or ``timeout`` s pass); returns its snapshot."""
        self._jobs[job_id]._done.wait(timeout)
        return self._jobs[job_id].snapshot()


def _best_effort(job: Job, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Run a run-folder write of the runner's own bookkeeping; a failure (full disk) goes to the
    in-memory log tail instead of killing the worker thread."""
    try:
        fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - OSError, DiskFull: the job's state in memory stays right
        with job._lock:
            job.logs.append(f"[{time.strftime('%H:%M:%S')}] could not write to the run folder: {exc}")


def _jsonable(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The JSON-friendly part of ``kwargs`` for config.json (paths become strings)."""
    out = {}
    for key, value in kwargs.items():
        if isinstance(value, (str, int, float, bool)) or value is None:
            out[key] = value
        elif isinstance(value, Path):
            out[key] = str(value)
        elif isinstance(value, (list, tuple, dict)):
            out[key] = value
    return out


_default_runner: JobRunner | None = None
_default_lock = threading.Lock()


def default_runner() -> JobRunner:
    """The process-wide runner the studio uses (created on first use)."""
    global _default_runner
    with _default_lock:
        if _default_runner is None:
            _default_runner = JobRunner()
        return _default_runner
