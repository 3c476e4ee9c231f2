"""The job-context protocol: what every engine function that can run as a job reports through.

An engine function that runs as a job takes ``ctx`` first; ``ctx`` is anything with this shape
(``Context``)::

    ctx.progress(fraction, message)   0..1, shown as a progress bar
    ctx.log(text)                     one log line
    ctx.metric({...})                 one history record
    ctx.cancelled()                   True once cancel was asked: return at the next step
    ctx.check_cancelled()             raises ``JobCancelled`` instead
    ctx.run_dir, ctx.job_id           the run folder and its ID (``None`` without one)

Implementations: ``engine.jobs.JobContext`` (a job in the runner), ``engine.cli.CliProgress`` (the
terminal, optionally recording into a run folder), ``NULL_CONTEXT`` (library use: nothing reported,
never cancelled) and the wrappers below (``Silent`` for DDP ranks > 0, ``Scaled`` for one step of a
longer job). What lands in a run folder (status / history / log) is written by one
``engine.runs.RunRecorder``, whichever of them drives it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable


class JobCancelled(Exception):
    """Raised by ``ctx.check_cancelled()``; the runner records the job as cancelled, not failed."""


@runtime_checkable
class Context(Protocol):
    """The shape of ``ctx`` (see the module docstring)."""

    run_dir: Path | None
    job_id: str | None

    def progress(self, fraction: float, message: str = "") -> None: ...

    def log(self, text: str) -> None: ...

    def metric(self, record: dict[str, Any]) -> None: ...

    def cancelled(self) -> bool: ...

    def check_cancelled(self) -> None: ...


class NullContext:
    """Reports nothing and is never cancelled: for engine functions called outside a job."""

    run_dir: Path | None = None
    job_id: str | None = None

    def progress(self, fraction: float, message: str = "") -> None:
        pass

    def log(self, text: str) -> None:
        pass

    def metric(self, record: dict[str, Any]) -> None:
        pass

    def cancelled(self) -> bool:
        return False

    def check_cancelled(self) -> None:
        if self.cancelled():
            raise JobCancelled("cancelled by the user")


NULL_CONTEXT = NullContext()


class Silent(NullContext):
    """``ctx`` without its voice: no progress, logs or metrics; ``run_dir`` (to read) and cancellation pass
    through. For DDP ranks > 0, which train alongside rank 0 but must not write."""

    def __init__(self, ctx: Context):
        self._ctx = ctx
        self.run_dir = getattr(ctx, "run_dir", None)
        self.job_id = getattr(ctx, "job_id", None)

    def cancelled(self) -> bool:
        return self._ctx.cancelled()

    def check_cancelled(self) -> None:
        self._ctx.check_cancelled()


class Scaled:
    """``ctx`` with progress mapped to ``[start, start + span]``: one step of a job made of several."""

    def __init__(self, ctx: Context, span: float, start: float = 0.0):
        self._ctx, self._span, self._start = ctx, float(span), float(start)
        self.run_dir = getattr(ctx, "run_dir", None)
        self.job_id = getattr(ctx, "job_id", None)

    def progress(self, fraction: float, message: str = "") -> None:
        self._ctx.progress(self._start + self._span * min(max(float(fraction), 0.0), 1.0), message)

    def log(self, text: str) -> None:
        self._ctx.log(text)

    def metric(self, record: dict[str, Any]) -> None:
        self._ctx.metric(record)

    def cancelled(self) -> bool:
        return self._ctx.cancelled()

    def check_cancelled(self) -> None:
        self._ctx.check_cancelled()
