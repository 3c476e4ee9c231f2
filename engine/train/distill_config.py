"""The 3D distillation training config: defaults, validation, and the checkpoint format.

``validate_config(dict) -> dict`` returns a complete, plain config (stored in ``config.json`` and in
every checkpoint) or raises ``UserError`` naming the offending key. Keys:

    data            dataset root (``<root>/input_images``, ``<root>/OBJs``)                 required
    cache           teacher cache folder (``metadata.json``); optional when ``baseline``
    epochs          >= 1                                                                     50
    lr              Adam learning rate, > 0                                                  1e-3
    batch_size      shoes per step and process (DDP: per rank)                               4
    seed            >= 0: model init, split, shuffling, point sampling                        0
    schedule        conservative | default | aggressive | custom (``engine.train.schedules``)  default
    alpha_start / alpha_end  override the schedule's ends; required for ``custom``          None
    lambda_edge     weight of ``edge_length_loss``, >= 0                                      2.0
    lambda_smooth   weight of ``laplacian_smoothing_loss``, >= 0                              1.0
    lambda_feat     weight of the feature-level term (``engine.train.feature_distill``), >= 0;
                    needs a cache with teacher features (the occupancy teacher's)             0.0
    n_points        points sampled on the student mesh per shoe and step (see below)         10000
    target_points   teacher / GT points per shoe (a prefix of the cached 10k), 1..10000       10000
    chamfer_norm    1 = Euclidean (CD-L1, default: best val CD-L1 in trials), 2 = squared     1
    val_fraction    share of the GT shoes held out for validation, in [0, 1)                 0.2
    checkpoint_every  also keep ``epoch_NNNN.pt`` every K epochs (0 = off)                  10
    max_nan_steps   stop after this many non-finite steps in a row                           5
    baseline        train on GT alone (alpha = 0), same student / seed / split               False
    device          auto | cpu | cuda | cuda:N                                                auto
    threads         torch threads on CPU while training (0 = leave torch's setting)           2
    resume          continue the run folder's ``checkpoints/last.pt``                         False
    student         ``StudentConfig`` fields (width, hidden, blocks, fine_blocks, ...)        {}
                    (``STUDENT_PRESETS``: the fields of a named size, e.g. ``fast``)
    photo_views     photo-style versions per training shoe (``engine.train.photo_views``),
                    made when the run starts; 0 = off                                         0
    photo_prob      chance a training shoe's views are swapped for one of its versions        0.5

The Chamfer terms compare the student's ``n_points`` samples with the 10k teacher / GT points — 10k
on both sides, as the issue specifies (the seed compared the 10k teacher points with the student's 2562
vertices). ``n_points: 2500`` makes each Chamfer term ~2.5x cheaper (the KD-tree work scales with both
sets) and gave the same val CD-L1 in an 8-epoch check on the 101 sample shoes (0.0179 vs 0.0174, within
run-to-run noise), about 3 s less per epoch; the samples are redrawn every step. Validation always
uses 10k points on each side.

``threads`` is process-wide while the run lasts (torch has no per-thread setting) and is restored after
it; it also sizes the Chamfer KD-tree pool and pykdtree's query threads (they follow torch's). 2 threads
train 1.7x faster than 1 on a quiet 2-core machine (3.38 vs 5.72 s per epoch, alternating runs of
``bench_train3d.py --compare-threads``); on a machine already loaded by other work they gain little.
A resumed run may change it, ``device`` and ``epochs``; a
different thread count can change the last bits of the numbers.
"""
from __future__ import annotations

import math
from pathlib import Path

from engine.config import UserError
from engine.train.schedules import SCHEDULE_NAMES, resolve_schedule

DEFAULTS: dict = {
    "data": None, "cache": None, "epochs": 50, "lr": 1e-3, "batch_size": 4, "seed": 0, "schedule": "default",
    "alpha_start": None, "alpha_end": None, "lambda_edge": 2.0, "lambda_smooth": 1.0, "lambda_feat": 0.0,
    "n_points": 10000,
    "target_points": 10000, "chamfer_norm": 1, "val_fraction": 0.2, "checkpoint_every": 10, "max_nan_steps": 5,
    "baseline": False, "device": "auto", "threads": 2, "resume": False, "student": {}, "photo_views": 0,
    "photo_prob": 0.5,
}
# keys that may differ between a run and its resumption (``epochs``: train longer)
RESUME_FREE_KEYS = ("epochs", "resume", "device", "threads")
# named student sizes: StudentConfig fields a config's ``student`` starts from (``train --student NAME``, the
# Train tab's size). ``fast`` is issue 17 item 6's: 2.1 ms per shoe in ONNX Runtime on 1 thread, 2.7 ms on 2
# (the default: 4.5 / 4.9), 99k parameters. At the default's epochs its val CD-L1 is 4-6 % lower than the
# default's with the visual-hull teacher but 8 % higher with the learned occupancy teacher (distilled points,
# mean over two seeds on two sets); trained twice the epochs it is 6 % lower than the default's at the
# default's own epochs (0.85-1.03x over the same four seed/set pairs: ``bench_distill.py --student fast
# --epochs-sample 100 --epochs-few 80``; README, "Measured"), hence ``SIZE_EPOCH_FACTOR``. The default trained
# as long is better still (sample: 0.00773 / 0.00785 vs 0.00888 / 0.00800), so it stays the default size.
STUDENT_PRESETS = {
    "default": {},
    "fast": {"width": 8, "hidden": 32, "blocks": 2, "image_size": 80, "fine_hidden": 16, "fine_maps": 1},
}
SIZE_EPOCH_FACTOR = {"fast": 2}  # a named size's epochs when none are given: this multiple of DEFAULTS["epochs"]
STUDENT_INT_MIN = {"width": 1, "hidden": 1, "blocks": 0, "fine_blocks": 0, "fine_hidden": 0, "fine_maps": 1,
                   "sampled": 1, "stages": 1, "level": 0, "image_size": 16}


def _int(cfg: dict, key: str, lo: int, hi: int | None = None) -> None:
    v = cfg[key]
    if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
        rng = f">= {lo}" if hi is None else f"in {lo}..{hi}"
        raise UserError(f"{key} must be an integer {rng} (got {v!r})")


def _float(cfg: dict, key: str, lo: float, positive: bool = False, below: float | None = None) -> None:
    v = cfg[key]
    ok = not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v) and v >= lo \
        and (not positive or v > 0) and (below is None or v < below)
    if not ok:
        rule = "> 0" if positive else f">= {lo}" + (f" and < {below}" if below is not None else "")
        raise UserError(f"{key} must be a finite number {rule} (got {v!r})")
    cfg[key] = float(v)


def _positive(v) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v) and v > 0


def _student(d) -> dict:
    from engine.students.mesh_student import StudentConfig

    if not isinstance(d, dict):
        raise UserError(f"student must be a mapping of StudentConfig fields (got {type(d).__name__})")
    try:
        sc = StudentConfig.from_dict(d)
    except (ValueError, TypeError) as exc:
        raise UserError(f"student: {exc}") from None
    out = sc.to_dict()
    for key, lo in STUDENT_INT_MIN.items():
        v = out[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise UserError(f"student.{key} must be an integer >= {lo} (got {v!r})")
    if out["level"] > 6:
        raise UserError(f"student.level must be at most 6 (got {out['level']})")
    if out["fine_maps"] > 4:
        raise UserError(f"student.fine_maps must be at most 4, the CNN's maps (got {out['fine_maps']})")
    if out["stages"] > out["level"] + 1:
        raise UserError(f"student.stages must be at most level + 1 = {out['level'] + 1} (got {out['stages']}): "
                        f"stage 1 runs on ico-sphere level {out['level']} - stages + 1")
    v = out["max_offset"]
    if not _positive(v):
        raise UserError(f"student.max_offset must be a number > 0 (got {v!r})")
    axes = out["template_axes"]
    if not isinstance(axes, (list, tuple)) or len(axes) != 3 or not all(_positive(a) for a in axes):
        raise UserError(f"student.template_axes must be three numbers > 0 (got {axes!r})")
    out["template_axes"] = [float(a) for a in axes]
    return out


def student_preset(name: str) -> dict:
    """The ``StudentConfig`` fields of a named size (``STUDENT_PRESETS``); ``UserError`` naming the sizes."""
    if name not in STUDENT_PRESETS:
        raise UserError(f"student size {name!r}: use {' or '.join(STUDENT_PRESETS)}")
    return dict(STUDENT_PRESETS[name])


def size_epochs(name: str) -> int:
    """The epochs a named size trains when the config gives none: ``SIZE_EPOCH_FACTOR`` x the default's."""
    return DEFAULTS["epochs"] * SIZE_EPOCH_FACTOR.get(name, 1)


def with_saved_student(config: dict, run_dir: Path) -> dict:
    """``config`` with its ``student`` mapping completed from ``run_dir``'s ``checkpoints/last.pt``, for a
    resume: the fields the config names win, every other one is the checkpoint's, so a run keeps the
    architecture it was trained with whatever the defaults are by then (the studio's config.json names only
    what its form set). ``config`` itself when the run has no such checkpoint (the resume then says so)."""
    from engine.students.checkpoint import CKPT_DIR, load_checkpoint

    path = Path(run_dir) / CKPT_DIR / "last.pt"
    if not path.is_file():
        return config
    saved = load_checkpoint(path)["student_config"]
    named = config.get("student") or {}
    return {**config, "student": {**saved, **named} if isinstance(named, dict) else named}


def validate_config(config: dict) -> dict:
    """Defaults filled in, types and ranges checked, paths made absolute; ``UserError`` otherwise."""
    if not isinstance(config, dict):
        raise UserError(f"training config must be a mapping (got {type(config).__name__})")
    unknown = sorted(set(config) - set(DEFAULTS) - {"kind"})
    if unknown:
        raise UserError(f"unknown training config key(s): {', '.join(unknown)} "
                        f"(known: {', '.join(sorted(DEFAULTS))})")
    cfg = {**DEFAULTS, **{k: v for k, v in config.items() if k != "kind"}}
    for key in ("data", "cache"):
        v = cfg[key]
        if v is not None and (not isinstance(v, (str, Path)) or not str(v)):
            raise UserError(f"{key} must be a folder path (got {v!r})")
        cfg[key] = None if v is None else str(Path(v).expanduser().resolve())
    if cfg["data"] is None:
        raise UserError("data: the dataset folder is required")
    for key in ("baseline", "resume"):
        if not isinstance(cfg[key], bool):
            raise UserError(f"{key} must be true or false (got {cfg[key]!r})")
    if cfg["cache"] is None and not cfg["baseline"]:
        raise UserError("cache: the teacher cache folder is required (only a baseline run trains without it)")
    _int(cfg, "epochs", 1, 100_000)
    _int(cfg, "batch_size", 1, 4096)
    _int(cfg, "seed", 0, 2**63 - 1)
    _int(cfg, "n_points", 1, 1_000_000)
    _int(cfg, "target_points", 1, 10_000)
    _int(cfg, "checkpoint_every", 0)
    _int(cfg, "max_nan_steps", 1)
    _int(cfg, "threads", 0, 1024)
    _int(cfg, "photo_views", 0, 64)
    if cfg["chamfer_norm"] not in (1, 2) or isinstance(cfg["chamfer_norm"], bool):
        raise UserError(f"chamfer_norm must be 1 (Euclidean) or 2 (squared) (got {cfg['chamfer_norm']!r})")
    _float(cfg, "lr", 0.0, positive=True)
    _float(cfg, "lambda_edge", 0.0)
    _float(cfg, "lambda_smooth", 0.0)
    _float(cfg, "lambda_feat", 0.0)
    _float(cfg, "val_fraction", 0.0, below=1.0)
    _float(cfg, "photo_prob", 0.0)
    if cfg["photo_prob"] > 1:
        raise UserError(f"photo_prob must be a probability in [0, 1] (got {cfg['photo_prob']!r})")
    if cfg["schedule"] not in SCHEDULE_NAMES:
        raise UserError(f"schedule must be one of {', '.join(SCHEDULE_NAMES)} (got {cfg['schedule']!r})")
    resolve_schedule(cfg["schedule"], cfg["alpha_start"], cfg["alpha_end"])  # validates the alphas
    for key in ("alpha_start", "alpha_end"):
        cfg[key] = None if cfg[key] is None else float(cfg[key])
    d = cfg["device"]
    if not isinstance(d, str) or not (d in ("auto", "cpu", "cuda") or (d.startswith("cuda:") and d[5:].isdigit())):
        raise UserError(f"device must be auto, cpu, cuda or cuda:N (got {d!r})")
    cfg["student"] = _student(cfg["student"])
    return cfg


def full_student(fields: dict | None) -> dict:
    """Every ``StudentConfig`` field of a (partial) student mapping, defaults filled in: two mappings name
    one architecture exactly when these are equal. ``ValueError`` naming an unknown key."""
    from engine.students.mesh_student import StudentConfig

    return StudentConfig.from_dict(fields or {}).to_dict()


def resume_mismatch(saved: dict, cfg: dict) -> list[str]:
    """Keys (other than ``RESUME_FREE_KEYS``) whose values differ between a checkpoint and a config; a key
    an older checkpoint lacks counts as its default, and so does a student field (a field's default is the
    architecture from before it existed)."""

    def value(d: dict, k: str):
        v = d.get(k, DEFAULTS.get(k))
        return full_student(v) if k == "student" and isinstance(v, dict) else v

    keys = (set(saved) | set(cfg)) - set(RESUME_FREE_KEYS)
    return sorted(k for k in keys if value(saved, k) != value(cfg, k))
