"""Jobs made of several pipeline steps, beside ``jobs`` and ``cli`` (they sit above train and evaluate).

``distil_and_report(ctx, config)``: the VAE job of the CLI and the studio — ``engine.train.vae``'s phases,
then the TinyVAE report (``engine.evaluate.vae_report``) on the best checkpoint.

``distill_with_baseline(ctx, config)``: the one workflow the CLI (``train --with-baseline``) and the
Train 3D tab both call to answer "does distilling pay here?":

1. train the distilled student in ``ctx.run_dir`` (progress 0-45 %, messages ``1 of 2 student · …``);
2. train the GT-only baseline — same data, seed, split, epochs and student — in its own run folder
   (``<student run>-baseline``, kind ``train3d``; 45-90 %, ``2 of 2 baseline · …``); stopped or failed
   before it, the baseline's folder says so (``cancelled``/``failed``, "not started: …");
3. evaluate both and the teacher on the val shoes (``mesh_eval.evaluate_run``; 90-97 %);
4. write the distillation report (``evaluate.distill_report``) into the student's run folder.

``pair.json`` in the student's folder names the baseline run. Stopped and resumed (``resume: true``), each
run continues from its own ``last.pt`` (or starts when it has none); a run already at its last epoch is
not trained again — so a stop during the baseline never loses it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from engine import runs, storage
from engine.config import UserError

PAIR = "pair.json"


class Labelled:
    """One step of a job: ``ctx`` with progress mapped into ``[start, start + span]`` and ``label`` in
    front of its messages (``"1 of 2 student · epoch 3/8 …"``), so the job's one bar always says which
    step it shows; log lines, metrics, run folder and cancellation are ``ctx``'s."""

    def __init__(self, ctx, span: float, start: float, label: str):
        self._ctx, self._span, self._start, self._label = ctx, span, start, label
        self.run_dir, self.job_id = getattr(ctx, "run_dir", None), getattr(ctx, "job_id", None)

    def progress(self, fraction: float, message: str = "") -> None:
        self._ctx.progress(self._start + self._span * min(max(float(fraction), 0.0), 1.0),
                           f"{self._label} · {message}" if message else self._label)

    def log(self, text: str) -> None:
        self._ctx.log(text)

    def metric(self, record: dict[str, Any]) -> None:
        self._ctx.metric(record)

    def cancelled(self) -> bool:
        return self._ctx.cancelled()

    def check_cancelled(self) -> None:
        self._ctx.check_cancelled()


class RunOf(Labelled):
    """A ``Labelled`` step that is a second run inside one job: it records into ``run_dir`` (``RunRecorder``:
    status, history, log) instead of ``ctx``'s folder; log lines also reach ``ctx`` with the label."""

    def __init__(self, ctx, run_dir: Path, span: float, start: float, label: str):
        super().__init__(ctx, span, start, label)
        self.run_dir, self.job_id = Path(run_dir), Path(run_dir).name
        self.recorder = runs.RunRecorder(self.run_dir)

    def progress(self, fraction: float, message: str = "") -> None:
        self.recorder.progress(fraction, message)
        super().progress(fraction, message)

    def log(self, text: str) -> None:
        self.recorder.log(text)
        self._ctx.log(f"{self._label}: {text}")

    def metric(self, record: dict[str, Any]) -> None:
        self.recorder.metric(record)


def _done_epochs(run_dir: Path) -> int:
    """The epoch of ``checkpoints/last.pt`` (0 when there is none)."""
    from engine.students.checkpoint import CKPT_DIR, load_checkpoint

    path = Path(run_dir) / CKPT_DIR / "last.pt"
    return int(load_checkpoint(path)["epoch"]) if path.is_file() else 0


def _train_one(ctx, cfg: dict) -> None:
    """Train ``cfg`` in ``ctx.run_dir``: resume from last.pt, skip when already at the last epoch."""
    from engine.train.distill3d import train_student

    done = _done_epochs(ctx.run_dir)
    if done >= cfg["epochs"]:
        ctx.log(f"already trained ({done} epochs)")
        ctx.progress(1.0, "already trained")
        return
    train_student(ctx, {**cfg, "resume": done > 0})


def distill_with_baseline(ctx, config: dict) -> dict:
    """Student + baseline + evaluation + report (see the module docstring); returns the report."""
    from engine.evaluate.distill_report import build_report
    from engine.evaluate.mesh_eval import evaluate_run
    from engine.train import photo_views
    from engine.train.distill_config import validate_config, with_saved_student

    if ctx.run_dir is None:
        raise UserError("distillation with a baseline needs a run folder for the student")
    student_dir = Path(ctx.run_dir)
    if config.get("resume"):
        config = with_saved_student(config, student_dir)
    cfg = validate_config({k: v for k, v in config.items() if k not in ("with_baseline", "resume")})
    if cfg["baseline"]:
        raise UserError("with_baseline trains the distilled student and its baseline; do not set baseline too")
    if not cfg["val_fraction"] > 0:
        raise UserError("with_baseline compares validation CD-L1: val_fraction must be above 0")
    base_cfg = {**cfg, "baseline": True, "lambda_feat": 0.0}
    pair = storage.read_json(student_dir / PAIR) or {}
    base_dir = runs.run_dir(pair["baseline_run"], student_dir.parent) if pair.get("baseline_run") else None
    if base_dir is None or not base_dir.is_dir():
        base_dir = runs.create_run("train3d", {k: v for k, v in base_cfg.items() if k != "resume"},
                                   root=student_dir.parent, run_id=f"{student_dir.name}-baseline"[:64])
        storage.write_json(student_dir / PAIR, {"baseline_run": base_dir.name, "student_run": student_dir.name})
    ctx.log(f"1 of 2: the distilled student ({student_dir.name}); 2 of 2: the GT-only baseline ({base_dir.name})")

    base_ctx = RunOf(ctx, base_dir, 0.45, 0.45, "2 of 2 baseline")
    try:
        _train_one(Labelled(ctx, 0.45, 0.0, "1 of 2 student"), cfg)
    except BaseException as exc:  # the baseline never started: its folder says why and what to do
        cancelled = type(exc).__name__ == "JobCancelled"
        base_ctx.recorder.finish("cancelled" if cancelled else "failed",
                                 f"not started: the student run {student_dir.name} "
                                 f"{'was stopped' if cancelled else 'failed'} first; resuming it trains both",
                                 progress=0.0)
        raise
    with runs.RunLock(base_dir):  # the baseline has one writer too (no `train --resume` of it meanwhile)
        base_ctx.recorder.start("running")
        made = student_dir / photo_views.FILE
        if cfg["photo_views"] and made.is_file() and not (base_dir / photo_views.FILE).is_file():
            # the same shoes' photo-style versions (load_or_build checks they match): not made twice
            storage.write_bytes(base_dir / photo_views.FILE, made.read_bytes())
        try:
            _train_one(base_ctx, base_cfg)
        except BaseException as exc:
            cancelled = type(exc).__name__ == "JobCancelled"
            base_ctx.recorder.finish("cancelled" if cancelled else "failed", str(exc) or type(exc).__name__,
                                     **({} if cancelled else {"error": str(exc)}))
            raise
        base_ctx.recorder.finish("succeeded", "done", progress=1.0)
    ctx.progress(0.9, "evaluating student, baseline and teacher on the val shoes")
    evaluation = evaluate_run(Labelled(ctx, 0.07, 0.9, "evaluating"), student_dir, baseline_run=base_dir)
    report = build_report(student_dir, base_dir, evaluation)
    ctx.log(report["verdict"])
    ctx.progress(1.0, report["verdict"])
    return report


TRAIN_SHARE = 0.8  # of the VAE job's bar; the report (held-out PSNR / SSIM, ONNX export, timings) gets the rest


def distil_and_report(ctx, config: dict[str, Any] | None = None, **options: Any) -> dict[str, Any]:
    """``engine.train.vae.run_vae_distillation(ctx, config, **options)`` (progress 0-80 %), then, when the
    config's ``report`` is true and a best checkpoint exists, ``build_report`` on it into the output folder
    (and the job's run folder when that differs) with the rest of the bar (80-100 %: quality, ONNX export,
    timing rounds, each with its own "report: …" message): the summary dict gets ``report``."""
    from engine.evaluate.vae_report import build_report
    from engine.progress import NULL_CONTEXT, Scaled
    from engine.train.vae import run_vae_distillation, validate_config

    ctx = ctx or NULL_CONTEXT
    cfg = validate_config({**(config or {}), **options})
    result = run_vae_distillation(Scaled(ctx, TRAIN_SHARE) if cfg["report"] else ctx, cfg)
    if cfg["report"] and result["best"]:
        report_ctx = Scaled(ctx, 1.0 - TRAIN_SHARE, TRAIN_SHARE)  # the report's own share and messages
        report_ctx.progress(0.0, "report: loading the held-out images")
        out = Path(result["output_dir"])
        run_dir = getattr(ctx, "run_dir", None)
        folders = [out] + ([Path(run_dir)] if run_dir and Path(run_dir) != out else [])
        result["report"] = build_report(report_ctx, Path(result["best"]), eval_limit=cfg["eval_limit"],
                                        out_dirs=folders)
    ctx.progress(1.0, "done")
    return result
