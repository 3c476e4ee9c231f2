"""ONNX export of the 3D mesh student, with parity, INT8 and latency tables (the Export tab, ``engine export``).

``export_student(ctx, run_dir, out_dir=None, int8=False, checkpoint="best", threads=2)`` loads
``run_dir/checkpoints/<checkpoint>.pt`` (``engine.students.trained_run.open_run``; another kind of
checkpoint is a ``UserError`` naming its kind) and writes into ``out_dir`` (default ``run_dir/export/``):

    student.onnx         input ``views`` float32 (batch, 4, 4, S, S) in [0, 1]: views in
                         ``camera.VIEW_NAMES`` order (front, left, back, right), channels RGBA (alpha =
                         mask), a missing view all zeros; output ``vertices`` float32 (batch, V, 3) in
                         the student's normalised frame (+Y up). Axis 0 is dynamic.
    student.faces.json   ``{"faces": [[a, b, c], ...], "vertices": V}``: the ico-sphere triangles (int)
    student.json         what a runtime needs: student_config, image_size, view order, input / output spec,
                         the file names, the run, checkpoint and epoch it came from
    student.int8.onnx    (``int8=True``) ``onnxruntime.quantization.quantize_dynamic`` of the same student
                         exported with the small neighbour tables (``mesh_tables.EdgeTable``): weights of
                         Conv / MatMul / Gemm stored as int8 (but ``float_layers``), activations quantised
                         at run time. It is the small file (a third of FP32), not the fast one: this ONNX
                         Runtime build's ``ConvInteger`` takes ~4-6x FP32 ``Conv``'s time (the report's INT8
                         profile shows it)
    export.json, export.md   the report below (``export.json`` written atomically, last)

Report (``export.json``; the Export tab shows the rows as tables):

* ``parity_rows``: one row per (inputs, batch): the run's val shoes (its checkpoint's split, views from
  the dataset it trained on) and seeded random views, each at batch 1 and 3 — ``max_abs_err`` between
  torch and ONNX Runtime over every vertex coordinate (world units), ``cd_l1`` = mean over samples of
  the CD-L1 between the ORT and the torch vertex sets (``vertex_cd_l1``), ``ok`` = max_abs_err <=
  ``TOLERANCE``. Val rows
  are left out when the split or its data is gone (then only random views are checked).
* ``int8``: file sizes (``size_pct`` = INT8 bytes / FP32 bytes x 100), max abs error of INT8 vs FP32
  ORT, and the mean CD-L1 (and F@1 %) vs GT on the val split for ORT FP32 and ORT INT8 and their
  difference (``cd_l1_change``, positive = INT8 worse); ``profile_rows``: ms per call by operator type
  in each file (``operator_rows``), where INT8 loses its time. None without ``int8``.
* ``recommended``: the fastest file that keeps quality (``recommend``: INT8 only within ±1 % val CD-L1
  of FP32), with the reason; the Export tab and ``engine export`` show it.
* ``latency_rows``: torch eager, ORT FP32, ORT INT8 at batch 1 with ``threads`` threads each: several
  rounds taken alternately (so machine noise hits all alike), each the median of ``repeats`` calls
  after warm-up; ``ms_per_shoe`` is the median of the round medians.

Every CD-L1 / F-score against GT follows ``engine.evaluate.mesh_eval``: each mesh centred on its bounding-box
centre and scaled to longest side 1, 10,000 surface points per mesh, seed 0 (``mesh_metrics``).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from engine import runs, storage
from engine.config import UserError
from engine.export.onnx_tools import (compact_model, export_onnx, latency_ort, latency_torch, operator_ms,
                                      ort_session, run_ort)
from engine.progress import NULL_CONTEXT

ONNX_NAME, INT8_NAME = "student.onnx", "student.int8.onnx"
FACES_NAME, META_NAME = "student.faces.json", "student.json"
INPUT_NAME, OUTPUT_NAME = "views", "vertices"
FORMAT = "distillation-studio/mesh-student-onnx"
FORMAT_VERSION = 1
TOLERANCE = 1e-4  # max abs error (world units) the FP32 export must stay within
INT8_QUALITY_PCT = 1.0  # INT8 keeps quality when its val CD-L1 is within this many % of FP32's (issue 17)
PARITY_BATCHES = (1, 3)
RANDOM_SEED = 0
EXPORT_DIR = "export"  # default out_dir inside the run folder
EXPORT_KIND = "export"  # the run kind of an export job (CLI and studio): it shows in the Runs tab
REPORT_NAME = "export.json"
# column order of the report's row tables (export.json stores rows with sorted keys)
PARITY_COLUMNS = ("model", "inputs", "batch", "samples", "max_abs_err", "cd_l1", "tolerance", "ok")
LATENCY_COLUMNS = ("runtime", "threads", "batch", "ms_per_shoe", "speedup_vs_torch", "calls", "file_mb")


def sidecar_paths(onnx_path: Path) -> tuple[Path, Path]:
    """``(meta, faces)`` beside an exported model: ``X.onnx`` / ``X.int8.onnx`` -> ``X.json``, ``X.faces.json``."""
    onnx_path = Path(onnx_path)
    base = onnx_path.name[: -len(".onnx")] if onnx_path.name.endswith(".onnx") else onnx_path.stem
    base = base[: -len(".int8")] if base.endswith(".int8") else base
    return onnx_path.with_name(f"{base}.json"), onnx_path.with_name(f"{base}.faces.json")


def val_shoes(run, log=lambda _m: None) -> tuple[list[str], torch.Tensor | None, list]:
    """``(ids, views uint8 (N, 4, 4, S, S) or None, [(gt_vertices, gt_faces) or None])`` of a
    ``TrainedRun``'s val split (``engine.students.trained_run``), read from the dataset it trained on;
    shoes whose data is gone are logged and left out."""
    from engine.data.layout import load_mesh

    ids, views, gts = [], [], []
    for sid in run.val_ids:
        try:
            shoe = run.shoe(sid)
            views.append(run.views(shoe))
            gts.append(load_mesh(shoe.obj_path) if shoe.has_gt else None)
            ids.append(sid)
        except (UserError, TypeError) as exc:
            log(f"val shoe {sid}: left out of the export checks ({exc})")
    return ids, (torch.stack(views) if views else None), gts


def _batches(x: torch.Tensor, batch: int) -> list[torch.Tensor]:
    """Consecutive batches of ``batch`` rows covering every row once (the last one wraps around)."""
    n = len(x)
    return [x[torch.arange(i, i + batch) % n] for i in range(0, n, batch)]


def vertex_cd_l1(a: np.ndarray, b: np.ndarray) -> float:
    """CD-L1 between two (V, 3) vertex sets of the same mesh topology, each normalised (bbox centre 0,
    longest side 1) — ``point_metrics`` on the vertices themselves, so identical outputs give exactly 0
    (sampling both surfaces would add a sampling-noise floor of about 0.009)."""
    from engine.geometry.metrics import point_metrics
    from engine.geometry.normalise import normalise_vertices

    return point_metrics(normalise_vertices(np.asarray(a, np.float64))[0],
                         normalise_vertices(np.asarray(b, np.float64))[0])["cd_l1"]


def parity_rows(ctx, student, session, inputs: dict[str, torch.Tensor], span=(0.0, 1.0)) -> list[dict]:
    """One row per (inputs name, batch in ``PARITY_BATCHES``); ``inputs``: name -> float views (N, 4, 4, S, S)."""
    rows, todo = [], [(name, b) for name in inputs for b in PARITY_BATCHES]
    for k, (name, batch) in enumerate(todo):
        ctx.check_cancelled()
        errs, cds, samples = [], [], 0
        for x in _batches(inputs[name], batch):
            with torch.no_grad():
                ref = student(x).numpy()  # (b, V, 3)
            (out,) = run_ort(session, x)  # (b, V, 3)
            errs.append(float(np.abs(ref - out).max()))
            cds += [vertex_cd_l1(out[i], ref[i]) for i in range(len(x))]
            samples += len(x)
        err = max(errs)
        rows.append({"model": "fp32", "inputs": name, "batch": batch, "samples": samples, "max_abs_err": err,
                     "cd_l1": statistics.fmean(cds), "tolerance": TOLERANCE, "ok": err <= TOLERANCE})
        ctx.progress(span[0] + (span[1] - span[0]) * (k + 1) / len(todo), f"parity: {name}, batch {batch}")
    return rows


def float_layers(student, share: float = 0.01) -> tuple[str, ...]:
    """Weight names of the mesh student's layers the INT8 file keeps in float (``quantize_int8``'s ``keep``):
    every stage's output convolution (it writes the vertex offsets: a quantised offset moves a vertex by up
    to ~1/256 of its range), and the last stage's input convolution (it reads the vertex positions and the
    image at full resolution) when it holds at most ``share`` of the weights (in float it would otherwise
    cost the file its size). Measured on 20 val shoes of trained students, INT8 val CD-L1 change over FP32:
    the default student +2.2 % with every layer quantised, +0.5 % with the output convolutions kept (its
    input convolution holds 2.1 % of the weights: kept too, -0.3 % but a 30.4 % file); the ``fast``
    student +12.7 %, +4.4 %, and -0.2 % with its input convolution (0.6 % of the weights) kept too."""
    weights = {n: p.numel() for n, p in student.named_parameters() if n.endswith(".weight")}
    last = f"stages.{len(student.stages) - 1}.inp."
    total, fine_inp = sum(weights.values()), sum(v for n, v in weights.items() if n.startswith(last))
    return tuple(n for n in weights if n.startswith("stages.") and
                 (".out." in n or (n.startswith(last) and fine_inp <= share * total)))


def quantize_int8(onnx_path: Path, out_path: Path, op_types: tuple[str, ...] | None = None,
                  keep: tuple[str, ...] = ()) -> Path:
    """Dynamic INT8 quantisation (``quantize_dynamic``, int8 weights) of ``onnx_path``, compacted
    (``compact_model(short_names=True)``: the quantiser's names run long) and written atomically.
    ``op_types``: only these operator types (e.g. ``("MatMul", "Gemm")``; default: every one it can);
    ``keep``: weight (initializer) names whose ``Gemm`` / ``MatMul`` / ``Conv`` stays float."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    sweep_int8_temps(Path(out_path).parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".int8-{os.getpid()}-", dir=Path(out_path).parent))
    try:
        root.setLevel(logging.ERROR)  # its "consider pre-processing" notice is not the user's business
        kw = {"op_types_to_quantize": list(op_types)} if op_types else {}
        if keep:  # the quantiser first splits a Gemm into "<name>_MatMul" + an Add: exclude both names
            graph = onnx.load(str(onnx_path)).graph
            nodes = [n.name for n in graph.node if n.op_type in ("Gemm", "MatMul", "Conv") and set(keep) & set(n.input)]
            kw["nodes_to_exclude"] = nodes + [f"{n}_MatMul" for n in nodes]
        quantize_dynamic(str(onnx_path), str(tmp / "model.onnx"), weight_type=QuantType.QInt8, **kw)
        model = onnx.load(str(tmp / "model.onnx"))
        compact_model(model, short_names=True)
        return storage.write_bytes(Path(out_path), model.SerializeToString())
    finally:
        root.setLevel(level)
        shutil.rmtree(tmp, ignore_errors=True)


def sweep_int8_temps(folder: Path) -> list[Path]:
    """Remove the ``.int8-<pid>-*`` work folders of quantisations whose process is gone (an export killed
    midway) and those of the first naming (``.int8-<random>``); a live process's folder is left alone.
    Returns the removed folders."""
    removed = []
    for tmp in Path(folder).glob(".int8-*"):
        pid = tmp.name.split("-")[1]
        if tmp.is_dir() and not (pid.isdigit() and runs.pid_alive(int(pid))):
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
    return removed


def int8_report(ctx, fp32_session, int8_session, fp32_path: Path, int8_path: Path, views: torch.Tensor | None,
                gts: list, faces, probe: torch.Tensor) -> dict:
    """Sizes, INT8-vs-FP32 max abs error (on ``probe``) and mean CD-L1 / F@1 % vs GT on the val views."""
    from engine.geometry.metrics import EVAL_POINTS as N_POINTS
    from engine.geometry.metrics import EVAL_SEED as SEED
    from engine.geometry.metrics import mesh_metrics

    fp32_bytes, int8_bytes = fp32_path.stat().st_size, int8_path.stat().st_size
    (a,), (b,) = run_ort(fp32_session, probe), run_ort(int8_session, probe)
    rep = {"file": str(int8_path), "bytes": int8_bytes, "fp32_bytes": fp32_bytes,
           "size_pct": 100.0 * int8_bytes / fp32_bytes, "max_abs_err_vs_fp32": float(np.abs(a - b).max()),
           "quantisation": "onnxruntime quantize_dynamic of the small-table graph: int8 weights (Conv, MatMul, "
                           "Gemm), activations quantised at run time", "shoes": 0, "cd_l1_fp32": None, "cd_l1_int8": None,
           "cd_l1_change": None, "cd_l1_change_pct": None, "fscore@1%_fp32": None, "fscore@1%_int8": None}
    rows = [(views[i:i + 1], gt) for i, gt in enumerate(gts) if gt is not None] if views is not None else []
    if not rows:
        rep["note"] = "no val shoes with a GT mesh: the CD-L1 change is not measured"
        return rep
    metrics = {"fp32": [], "int8": []}
    for k, (x, (gv, gf)) in enumerate(rows):
        ctx.check_cancelled()
        for name, sess in (("fp32", fp32_session), ("int8", int8_session)):
            (v,) = run_ort(sess, x)
            metrics[name].append(mesh_metrics(v[0], faces, gv, gf, n_points=N_POINTS, seed=SEED))
        ctx.progress(0.7 + 0.15 * (k + 1) / len(rows), f"INT8 vs GT: shoe {k + 1}/{len(rows)}")
    for name, ms in metrics.items():
        rep[f"cd_l1_{name}"] = statistics.fmean(m["cd_l1"] for m in ms)
        rep[f"fscore@1%_{name}"] = statistics.fmean(m["fscore@1%"] for m in ms)
    rep.update(shoes=len(rows), cd_l1_change=rep["cd_l1_int8"] - rep["cd_l1_fp32"],
               cd_l1_change_pct=100.0 * (rep["cd_l1_int8"] - rep["cd_l1_fp32"]) / rep["cd_l1_fp32"])
    return rep


def latency_rows(student, sessions: dict[str, object], files: dict[str, Path], x: torch.Tensor, threads: int,
                 rounds: int = 3, repeats: int = 5, warmup: int = 2, ctx=NULL_CONTEXT) -> list[dict]:
    """torch eager and each ONNX Runtime session on ``x`` (batch 1), measured alternately (see module doc)."""
    runners = {"torch eager": lambda w: latency_torch(student, x, warmup=w, repeats=repeats, threads=threads)}
    for name, sess in sessions.items():
        runners[name] = lambda w, s=sess: latency_ort(s, x, warmup=w, repeats=repeats)
    times: dict[str, list[float]] = {name: [] for name in runners}
    for r in range(rounds):
        for name, fn in runners.items():
            ctx.check_cancelled()
            times[name].append(fn(warmup if r == 0 else 1))
        ctx.progress(0.85 + 0.15 * (r + 1) / rounds, f"latency round {r + 1}/{rounds}")
    torch_ms = 1000 * statistics.median(times["torch eager"])
    rows = []
    for name, ts in times.items():
        ms = 1000 * statistics.median(ts) / len(x)
        rows.append({"runtime": name, "threads": int(threads), "batch": len(x), "ms_per_shoe": ms,
                     "speedup_vs_torch": torch_ms / len(x) / ms, "calls": rounds * repeats,
                     "file_mb": files[name].stat().st_size / 2**20 if name in files else None})
    return rows


PROFILE_MIN_MS = 0.05  # operator types below this in both files are left out of the profile rows


def operator_rows(fp32_path: Path, int8_path: Path, x: torch.Tensor, threads: int) -> list[dict]:
    """Where each file's time goes: ``{"op", "fp32_ms", "int8_ms"}`` per operator type (ONNX Runtime's
    profiler, ``onnx_tools.operator_ms``; kernel time per call, profiler overhead included), the quantised
    operators (``ConvInteger``, ``MatMulIntegerToFloat``, ``DynamicQuantizeLinear``, ...) beside the FP32 ones
    they replace. Largest first; types under ``PROFILE_MIN_MS`` in both files are left out."""
    a, b = operator_ms(fp32_path, x, threads=threads), operator_ms(int8_path, x, threads=threads)
    ops = sorted(set(a) | set(b), key=lambda op: -max(a.get(op, 0.0), b.get(op, 0.0)))
    return [{"op": op, "fp32_ms": a.get(op), "int8_ms": b.get(op)} for op in ops
            if max(a.get(op, 0.0), b.get(op, 0.0)) >= PROFILE_MIN_MS]


def recommend(latency: list[dict], int8: dict | None, files: dict[str, Path]) -> dict:
    """The fastest ONNX file that keeps quality: FP32 is the reference; INT8 qualifies when its val CD-L1
    is within ``INT8_QUALITY_PCT`` of FP32's (unmeasured: it does not). Returns ``{"file", "runtime",
    "ms_per_shoe", "reason"}``."""
    ms = {r["runtime"]: r["ms_per_shoe"] for r in latency}
    keeps = ["onnxruntime fp32"]
    pct = (int8 or {}).get("cd_l1_change_pct")
    if "onnxruntime int8" in ms and pct is not None and abs(pct) <= INT8_QUALITY_PCT:
        keeps.append("onnxruntime int8")
    best = min(keeps, key=lambda name: ms[name])
    if best == "onnxruntime int8":
        why = f"INT8 is faster and its val CD-L1 is within ±{INT8_QUALITY_PCT:g} % of FP32's"
    elif "onnxruntime int8" not in ms:
        why = "the only file exported"
    elif ms["onnxruntime int8"] >= ms[best]:
        why = ("the fastest: this ONNX Runtime build's integer kernels make INT8 slower for this graph (see where "
               "the time goes); INT8 is the smaller file")
    else:
        why = "INT8 is faster but its val CD-L1 is " + (f"more than ±{INT8_QUALITY_PCT:g} % off FP32's" if pct is not None
                                                        else "not measured (no val shoes with a GT mesh)")
    return {"file": str(files[best]), "runtime": best, "ms_per_shoe": ms[best], "reason": why}


def _fmt(v, spec: str = ".3g") -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    return format(v, spec) if isinstance(v, float) else str(v)


def format_markdown(rep: dict) -> str:
    """``export.md``: files, parity, INT8 and latency as markdown tables."""
    from engine.geometry.metrics import NORMALISATION

    out = [f"# ONNX export of {rep['run']}", "",
           f"Checkpoint `{rep['checkpoint']}` (epoch {rep['epoch']}), image size {rep['image_size']}, "
           f"{rep['vertices']} vertices / {rep['faces']} faces. CD-L1: {NORMALISATION}.", "",
           "| file | path |", "|---|---|"]
    out += [f"| {k} | `{v}` |" for k, v in rep["files"].items() if v]
    out += ["", "## Parity: torch vs ONNX Runtime (FP32)", "",
            "| inputs | batch | samples | max abs err | CD-L1 torch vs ORT | within 1e-4 |", "|---|---:|---:|---:|---:|---|"]
    out += [f"| {r['inputs']} | {r['batch']} | {r['samples']} | {_fmt(r['max_abs_err'])} | {_fmt(r['cd_l1'])} | "
            f"{_fmt(r['ok'])} |" for r in rep["parity_rows"]]
    q = rep.get("int8")
    if q:
        out += ["", "## INT8", "", f"{q['quantisation']}.", "",
                "| FP32 MB | INT8 MB | INT8 size | max abs err vs FP32 | val shoes | CD-L1 FP32 | CD-L1 INT8 | change |",
                "|---:|---:|---:|---:|---:|---:|---:|---:|",
                f"| {q['fp32_bytes'] / 2**20:.2f} | {q['bytes'] / 2**20:.2f} | {q['size_pct']:.1f} % | "
                f"{_fmt(q['max_abs_err_vs_fp32'])} | {q['shoes']} | {_fmt(q['cd_l1_fp32'], '.5f')} | "
                f"{_fmt(q['cd_l1_int8'], '.5f')} | "
                + (f"{q['cd_l1_change']:+.5f} ({q['cd_l1_change_pct']:+.1f} %) |" if q["cd_l1_change"] is not None
                   else "- |")]
    if q and q.get("profile_rows"):
        out += ["", "### Where the time goes (ms per call by operator type, ONNX Runtime profiler)", "",
                "| operator | FP32 | INT8 |", "|---|---:|---:|"]
        out += [f"| {r['op']} | {_fmt(r['fp32_ms'], '.3f')} | {_fmt(r['int8_ms'], '.3f')} |" for r in q["profile_rows"]]
    rec = rep.get("recommended")
    if rec:
        out += ["", f"**Recommended: `{Path(rec['file']).name}`** ({rec['ms_per_shoe']:.2f} ms per shoe) — {rec['reason']}."]
    out += ["", "## Latency (batch 1, median of alternating rounds)", "",
            "| runtime | threads | ms / shoe | speed-up vs torch | file MB |", "|---|---:|---:|---:|---:|"]
    out += [f"| {r['runtime']} | {r['threads']} | {r['ms_per_shoe']:.2f} | {r['speedup_vs_torch']:.2f}x | "
            f"{_fmt(r['file_mb'], '.2f')} |" for r in rep["latency_rows"]]
    return "\n".join(out) + "\n"


def export_student(ctx, run_dir: Path, out_dir: Path | None = None, int8: bool = False, checkpoint: str = "best",
                   threads: int = 2, repeats: int = 5, rounds: int = 3) -> dict:
    """Export a 3D training run's student to ONNX and measure it; see the module docstring.

    Returns the report (also ``out_dir/export.json``): ``run, checkpoint, epoch, student_config,
    image_size, vertices, faces, threads, files {onnx, onnx_int8, faces, meta}, parity_rows, parity_ok,
    int8, latency_rows, markdown, seconds, created``. ``UserError`` for a missing run / checkpoint, a
    checkpoint of another kind, or ``threads`` < 1.
    """
    from engine.students.trained_run import open_run
    from engine.geometry.camera import VIEW_NAMES
    from engine.students.mesh_student import KIND

    ctx = ctx or NULL_CONTEXT
    t0 = time.perf_counter()
    if int(threads) < 1:
        raise UserError(f"threads must be at least 1 (got {threads})")
    run_dir = Path(run_dir)
    run = open_run(run_dir, checkpoint)
    student, ckpt = run.student, run.ckpt
    cfg = student.config
    s = cfg.image_size
    out_dir = Path(out_dir) if out_dir is not None else run_dir / EXPORT_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx.progress(0.02, "loading the val shoes")
    ids, views_u8, gts = val_shoes(run, ctx.log)
    random_views = torch.rand(max(PARITY_BATCHES), len(VIEW_NAMES), 4, s, s,
                              generator=torch.Generator().manual_seed(RANDOM_SEED))  # (3, 4, 4, S, S)
    val_views = views_u8.float().div(255.0) if views_u8 is not None else None
    with torch.no_grad():
        n_verts = int(student(random_views[:1]).shape[1])
    ctx.check_cancelled()

    ctx.progress(0.05, "exporting to ONNX")
    onnx_path = export_onnx(student, random_views[:2], out_dir / ONNX_NAME, (INPUT_NAME,), (OUTPUT_NAME,))
    faces = student.faces.cpu().numpy().astype(np.int64)  # (F, 3)
    faces_path = storage.write_text(out_dir / FACES_NAME, json.dumps({"faces": faces.tolist(), "vertices": n_verts}))
    int8_path = out_dir / INT8_NAME
    if int8:  # quantised from the small-table form: INT8 is for size (see ``int8_report``), the tables are half of it
        ctx.progress(0.2, "quantising to INT8")
        sweep_int8_temps(out_dir)
        with tempfile.TemporaryDirectory(prefix=f".int8-{os.getpid()}-", dir=out_dir) as tmp:  # swept if killed
            small = export_onnx(student, random_views[:2], Path(tmp) / ONNX_NAME, (INPUT_NAME,), (OUTPUT_NAME,),
                                small_tables=True)
            quantize_int8(small, int8_path, keep=float_layers(student))
    elif int8_path.exists():
        int8_path.unlink()  # a stale INT8 file from an earlier export would not match this model
    meta = {"format": FORMAT, "version": FORMAT_VERSION, "kind": KIND, "student_config": cfg.to_dict(),
            "image_size": s, "views": list(VIEW_NAMES), "vertices": n_verts, "faces": FACES_NAME,
            "input": {"name": INPUT_NAME, "dtype": "float32", "shape": ["batch", len(VIEW_NAMES), 4, s, s],
                      "range": [0.0, 1.0], "channels": "RGBA (alpha = mask)",
                      "missing_view": "all zeros", "order": list(VIEW_NAMES)},
            "output": {"name": OUTPUT_NAME, "dtype": "float32", "shape": ["batch", n_verts, 3],
                       "frame": "the student's normalised frame, +Y up"},
            "files": {"onnx": ONNX_NAME, "onnx_int8": INT8_NAME if int8 else None},
            "run": run_dir.name, "checkpoint": checkpoint, "epoch": ckpt["epoch"]}
    meta_path = storage.write_json(out_dir / META_NAME, meta)

    session = ort_session(onnx_path, threads)
    inputs = {"val shoes": val_views} if val_views is not None else {}
    inputs["random views"] = random_views
    rows = parity_rows(ctx, student, session, inputs, span=(0.35, 0.7))
    int8_rep, sessions, files = None, {"onnxruntime fp32": session}, {"onnxruntime fp32": onnx_path}
    if int8:
        int8_session = ort_session(int8_path, threads)
        probe = val_views[:1] if val_views is not None else random_views[:1]
        int8_rep = int8_report(ctx, session, int8_session, onnx_path, int8_path, val_views, gts, faces, probe)
        sessions["onnxruntime int8"], files["onnxruntime int8"] = int8_session, int8_path
    x = val_views[:1] if val_views is not None else random_views[:1]
    lat = latency_rows(student, sessions, files, x, threads, rounds=rounds, repeats=repeats, ctx=ctx)
    if int8_rep is not None:
        int8_rep["profile_rows"] = operator_rows(onnx_path, int8_path, x, threads)
    from engine.export.web_bundle import bundle_files  # web/ + student-web.zip (None without onnxruntime-web)

    web = bundle_files(out_dir, ctx)
    report = {"run": run_dir.name, "checkpoint": checkpoint, "epoch": ckpt["epoch"],
              "student_config": cfg.to_dict(), "image_size": s, "vertices": n_verts,
              "faces": len(faces), "threads": int(threads), "val_shoes": ids,
              "files": {"onnx": str(onnx_path), "onnx_int8": str(int8_path) if int8 else None,
                        "faces": str(faces_path), "meta": str(meta_path), **web},
              "parity_rows": rows, "parity_ok": all(r["ok"] for r in rows), "int8": int8_rep, "latency_rows": lat,
              "recommended": recommend(lat, int8_rep, files),
              "seconds": round(time.perf_counter() - t0, 3), "created": time.time()}
    report["markdown"] = format_markdown(report)
    storage.write_text(out_dir / "export.md", report["markdown"])
    storage.write_json(out_dir / REPORT_NAME, report)
    ctx.log(f"exported {run_dir.name} ({checkpoint}) to {out_dir}")
    ctx.progress(1.0, "export done")
    return report
