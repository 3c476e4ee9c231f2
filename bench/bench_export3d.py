"""Benchmark of issue 6: the exported 3D student (ONNX Runtime FP32 / INT8, torch eager) vs the visual-hull teacher.

    .venv/bin/python bench/bench_export3d.py --quick          # random-init student, 3 fresh sample shoes (< 1 min)
    .venv/bin/python bench/bench_export3d.py                  # random-init student, 8 sample shoes, more repeats
    .venv/bin/python bench/bench_export3d.py --run ID [--runs DIR]   # a trained run: its best checkpoint, val shoes

One process, side by side: ``engine.export.export_student`` exports the student (default
``StudentConfig`` when no run is given: speed and file size do not depend on the weights) with INT8,
checks parity and measures torch eager / ORT FP32 / ORT INT8 at batch 1 on ``--threads`` threads
(alternating rounds, median); then the ``visual-hull`` teacher (balanced preset) runs on the same shoes
(its ``predict`` on the 256 px views, loading excluded, as the student's time excludes loading).
Targets (issue 6): ORT <= 15 ms per shoe on 2 CPU cores; >= 100x faster than the visual hull; INT8
file <= 30 % of FP32; the INT8 CD-L1 change is reported (meaningful for a trained run only). Issue 17:
ORT FP32 <= 3 ms per shoe at batch 1 on 2 threads, INT8 <= 0.7x the FP32 time. Side by side in the same
alternating rounds: the fast graph (``student.onnx``) and the small-table graph the INT8 file is quantised
from, on ``--threads`` and on 1 thread, and a random-init student of each other named size
(``STUDENT_PRESETS``: ``fast``, issue 17 item 6) on both; then ms per call by operator type in FP32 and INT8
(why INT8 is slower here) and the file the export recommends; last a handoff probe (``handoff_probe``: a MatMul
chain with and without small single-threaded ops reading each MatMul's output, on 1 and ``--threads``
threads) that shows what moving a parallel op's output between cores costs on this machine.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from engine.cli import CliProgress  # noqa: E402

TARGET_ORT_MS, TARGET_SPEEDUP, TARGET_INT8_PCT = 15.0, 100.0, 30.0
TARGET_FAST_MS, TARGET_INT8_RATIO = 3.0, 0.7  # issue 17: FP32 <= 3 ms per shoe on 2 threads; INT8 <= 0.7x FP32


def random_run(work: Path, shoes: int) -> Path:
    """A run folder holding a random-init default student whose val split is ``shoes`` fresh sample shoes."""
    from engine.data.sample_shoes import build_sample
    from engine.jobs import NULL_CONTEXT
    from engine.students.checkpoint import save_checkpoint
    from engine.students.mesh_student import MeshStudent, StudentConfig

    data = work / "data"
    build_sample(NULL_CONTEXT, data, count=shoes, seed=0)
    torch.manual_seed(0)
    model = MeshStudent(StudentConfig())
    ids = sorted(p.name for p in (data / "input_images").iterdir())
    run = work / "runs" / "random-init"
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)
    save_checkpoint(run / "checkpoints" / "best.pt", model, None, {"data": str(data), "random_init": True}, 0, None,
                    None, {"train": [], "val": ids})
    return run


def teacher_seconds(data: Path, ids: list[str]) -> list[float]:
    """Visual-hull (balanced) ``predict`` seconds per shoe on the shoes' full-size views."""
    from engine.data.layout import find_shoe, load_views
    from engine.teachers.base import TeacherSettings, get_teacher

    teacher, settings = get_teacher("visual-hull"), TeacherSettings(preset="balanced")
    out = []
    for sid in ids:
        views = load_views(find_shoe(data, sid))
        t = time.perf_counter()
        teacher.predict(views, settings)
        out.append(time.perf_counter() - t)
    return out


def side_by_side(run: Path, rep: dict, out: Path, work: Path, threads: int, rounds: int, repeats: int) -> dict[str, float]:
    """ms per shoe (batch 1) in alternating rounds (median): the fast graph, the small-table graph and the fast
    graph with INT8 MatMul / Gemm only (the "INT8 only where it might win" option) on ``threads`` threads;
    the fast graph and the INT8 file on 1 thread; a random-init student of every named size but the default
    (``STUDENT_PRESETS``, issue 17 item 6: "size NAME") on ``threads`` and on 1 thread."""
    from engine.export.mesh_student import quantize_int8
    from engine.export.onnx_tools import export_onnx, latency_ort, ort_session
    from engine.students.mesh_student import MeshStudent, StudentConfig
    from engine.students.trained_run import open_run
    from engine.train.distill_config import STUDENT_PRESETS

    student = open_run(run, "best").student
    s = rep["image_size"]
    x = torch.rand(1, 4, 4, s, s, generator=torch.Generator().manual_seed(0))
    small = export_onnx(student, x, work / "small.onnx", ("views",), ("vertices",), small_tables=True)
    gemm_int8 = quantize_int8(out / "student.onnx", work / "gemm.int8.onnx", op_types=("MatMul", "Gemm"))
    inputs = {"fast": x, "small": x, "int8 matmul/gemm only": x, "fast 1 thread": x, "int8 1 thread": x}
    sessions = {"fast": ort_session(out / "student.onnx", threads), "small": ort_session(small, threads),
                "int8 matmul/gemm only": ort_session(gemm_int8, threads),
                "fast 1 thread": ort_session(out / "student.onnx", 1),
                "int8 1 thread": ort_session(out / "student.int8.onnx", 1)}
    for name in (n for n in STUDENT_PRESETS if n != "default"):
        torch.manual_seed(0)
        cfg = StudentConfig(**STUDENT_PRESETS[name])
        xs = torch.rand(1, 4, 4, cfg.image_size, cfg.image_size, generator=torch.Generator().manual_seed(0))
        path = export_onnx(MeshStudent(cfg), xs, work / f"size-{name}.onnx", ("views",), ("vertices",))
        for key, t in ((f"size {name}", threads), (f"size {name} 1 thread", 1)):
            sessions[key], inputs[key] = ort_session(path, t), xs
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for r in range(rounds):
        for name, sess in sessions.items():
            times[name].append(latency_ort(sess, inputs[name], warmup=3 if r == 0 else 1, repeats=repeats))
    return {k: 1000 * statistics.median(v) for k, v in times.items()}


def handoff_probe(threads: int, links: int = 60) -> dict[str, float]:
    """µs per link of two ONNX chains of ``links`` links on a (642, 48) tensor (the coarse stage's size): a
    MatMul by (48, 48) alone, and the same MatMul followed by four small single-threaded ops (Reshape, Relu,
    Reshape, Add) that read its output. On 1 and on ``threads`` threads, so the table shows what handing a
    parallel op's output to the next op costs on this machine (the small ops add ~9 µs on 1 thread)."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    def chain(small: bool) -> bytes:
        w = numpy_helper.from_array((np.random.default_rng(0).random((48, 48)) / 48).astype(np.float32), "w")
        shapes = [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in (("s3", [642, 1, 48]), ("s2", [642, 48]))]
        nodes = []

        def add(op: str, *inputs: str) -> str:
            nodes.append(helper.make_node(op, list(inputs), [f"y{len(nodes)}"]))
            return nodes[-1].output[0]

        prev = "x"
        for _ in range(links):
            prev = add("MatMul", prev, "w")
            if small:  # four single-threaded ops reading the MatMul's output
                prev = add("Reshape", add("Relu", add("Reshape", prev, "s3")), "s2")
                prev = add("Add", prev, prev)
        graph = helper.make_graph(nodes, "probe", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [642, 48])],
                                  [helper.make_tensor_value_info(prev, TensorProto.FLOAT, None)],
                                  [w] + (shapes if small else []))
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString()

    x = {"x": np.random.default_rng(1).random((642, 48), dtype=np.float32)}
    out = {}
    for small in (False, True):
        for n in sorted({1, threads}):
            opts = ort.SessionOptions()
            opts.intra_op_num_threads, opts.inter_op_num_threads, opts.log_severity_level = n, 1, 3
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every op a node
            sess = ort.InferenceSession(chain(small), opts, providers=["CPUExecutionProvider"])
            for _ in range(10):
                sess.run(None, x)
            times = []
            for _ in range(60):
                t0 = time.perf_counter()
                sess.run(None, x)
                times.append(time.perf_counter() - t0)
            out[f"{'matmul + 4 small ops' if small else 'matmul'}, {n} thread{'s' if n > 1 else ''}"] = \
                1e6 * statistics.median(times) / links
    return out


def fmt_ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def verdict(ok: bool | None) -> str:
    return "" if ok is None else ("PASS" if ok else "MISS")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 sample shoes, fewer repeats (under a minute)")
    ap.add_argument("--run", default=None, help="a trained 3D run ID (default: a random-init student)")
    ap.add_argument("--runs", default=None, help="runs folder for --run (default $DS_RUNS or ./runs)")
    ap.add_argument("--shoes", type=int, default=None, help="sample shoes without --run (default 3 quick, 8 full)")
    ap.add_argument("--threads", type=int, default=2, help="torch and ONNX Runtime threads (default 2)")
    ap.add_argument("--out", default=None, help="export folder (default: a temporary folder)")
    ap.add_argument("--json", action="store_true", help="also print the export report as JSON")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from engine import runs
    from engine.export import export_student
    from engine.students.checkpoint import load_checkpoint

    work = Path(tempfile.mkdtemp(prefix="bench_export3d_"))
    t0 = time.time()
    load0 = os.getloadavg()[0]
    if args.run:
        run = runs.run_dir(args.run, Path(args.runs).resolve() if args.runs else None)
    else:
        run = random_run(work, args.shoes or (3 if args.quick else 8))
    rounds, repeats = (2, 3) if args.quick else (5, 7)
    out = Path(args.out) if args.out else work / "export"
    print(f"bench_export3d: run {run.name} ({'random-init default student' if not args.run else 'trained'}), "
          f"{args.threads} threads, torch {torch.__version__}, {os.cpu_count()} cores, load {load0:.1f}, "
          f"export to {out}", flush=True)
    rep = export_student(CliProgress(), run, out_dir=out, int8=True, threads=args.threads, repeats=repeats,
                         rounds=rounds)
    ckpt_data = Path(load_checkpoint(run / "checkpoints" / "best.pt")["train_config"]["data"])
    ids = rep["val_shoes"]
    vh = teacher_seconds(ckpt_data, ids) if ids else []
    lat = {r["runtime"]: r["ms_per_shoe"] for r in rep["latency_rows"]}
    ort_ms, q = lat["onnxruntime fp32"], rep["int8"]
    vh_s = statistics.mean(vh) if vh else None
    speedup = vh_s * 1000 / ort_ms if vh_s else None
    parity = max(r["max_abs_err"] for r in rep["parity_rows"])
    change = (f"{q['cd_l1_change']:+.5f} ({q['cd_l1_change_pct']:+.2f} %) on {q['shoes']} shoes"
              if q["cd_l1_change"] is not None else "-")
    side = side_by_side(run, rep, out, work, args.threads, rounds, repeats)
    fast, small, one, int8_one, gemm8 = (side[k] for k in ("fast", "small", "fast 1 thread", "int8 1 thread",
                                                           "int8 matmul/gemm only"))
    int8_ratio = lat["onnxruntime int8"] / ort_ms
    sizes = [k[len("size "):] for k in side if k.startswith("size ") and not k.endswith(" 1 thread")]
    rows = [
        (f"ORT FP32 ms/shoe (batch 1, {args.threads} threads)", f"{ort_ms:.2f}", f"<= {TARGET_ORT_MS:g}",
         ort_ms <= TARGET_ORT_MS),
        (f"  same, issue 17 bar ({args.threads} threads)", f"{ort_ms:.2f}", f"<= {TARGET_FAST_MS:g}",
         ort_ms <= TARGET_FAST_MS),
        ("  side by side: fast graph / small-table graph ms", f"{fast:.2f} / {small:.2f} ({small / fast:.2f}x)", "", None),
        ("  fast graph on 1 thread ms (INT8 on 1 thread)", f"{one:.2f} ({int8_one:.2f})", "", None),
        *[(f"  student size {n} (random init), {args.threads} threads / 1 thread ms", f"{side[f'size {n}']:.2f} / "
           f"{side[f'size {n} 1 thread']:.2f} ({side[f'size {n}'] / fast:.2f}x / {side[f'size {n} 1 thread'] / one:.2f}x)",
           f"<= {TARGET_FAST_MS:g}", side[f"size {n}"] <= TARGET_FAST_MS) for n in sizes],
        ("ORT INT8 ms/shoe", f"{lat['onnxruntime int8']:.2f}", "", None),
        ("ORT INT8 time / FP32 time", f"{int8_ratio:.2f}x", f"<= {TARGET_INT8_RATIO:g}x", int8_ratio <= TARGET_INT8_RATIO),
        ("  INT8 of MatMul/Gemm only (no ConvInteger) / FP32", f"{gemm8 / fast:.2f}x ({gemm8:.2f} ms)",
         f"<= {TARGET_INT8_RATIO:g}x", gemm8 / fast <= TARGET_INT8_RATIO),
        ("torch eager ms/shoe", f"{lat['torch eager']:.2f}", "", None),
        (f"visual-hull (balanced) s/shoe, {len(vh)} shoes", f"{vh_s:.3f}" if vh_s else "-", "", None),
        ("visual hull time / ORT FP32 time", f"{speedup:.2f}x" if speedup else "-", f">= {TARGET_SPEEDUP:g}x",
         speedup >= TARGET_SPEEDUP if speedup else None),
        ("ORT FP32 speed-up vs torch eager", f"{lat['torch eager'] / ort_ms:.2f}x", "", None),
        ("INT8 file size, % of FP32", f"{q['size_pct']:.1f} % ({q['bytes'] / 2**20:.2f} / "
         f"{q['fp32_bytes'] / 2**20:.2f} MB)", f"<= {TARGET_INT8_PCT:g} %", q["size_pct"] <= TARGET_INT8_PCT),
        ("INT8 CD-L1 change vs GT (ORT INT8 - FP32)", change, "reported", None),
        ("parity: max abs err torch vs ORT (val + random, b 1/3)", f"{parity:.2e}", "<= 1e-4", rep["parity_ok"]),
    ]
    print(f"\n{'measure':<58}{'value':>34}  {'target':>10}  ok")
    print("-" * 110)
    for name, value, target, ok in rows:
        print(f"{name:<58}{value:>34}  {target:>10}  {verdict(ok)}")
    prof = q.get("profile_rows") or []
    print(f"\nwhere the time goes, ms per call by operator type ({args.threads} threads, ONNX Runtime profiler):")
    print(f"{'operator':<28}{'FP32':>8}{'INT8':>8}")
    for r in prof[:10]:
        print(f"{r['op']:<28}{fmt_ms(r['fp32_ms']):>8}{fmt_ms(r['int8_ms']):>8}")
    rec = rep["recommended"]
    print(f"\nrecommended: {Path(rec['file']).name} — {rec['reason']}")
    probe = handoff_probe(args.threads)
    print("\nhandoff probe, µs per link of a 60-link ONNX chain on (642, 48) (what a parallel op's output costs the "
          "next op here):")
    for name, us in probe.items():
        print(f"  {name:<34}{us:8.1f}")
    if args.threads > 1:
        one, many = (probe[f"matmul + 4 small ops, {k}"] - probe[f"matmul, {k}"] for k in ("1 thread", f"{args.threads} threads"))
        print(f"  the 4 small ops cost {many:.1f} µs after a {args.threads}-thread MatMul, {one:.1f} µs after a 1-thread one "
              f"({many - one:+.1f} µs: reading the other core's output)")
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end (was {load0:.1f}); total {time.time() - t0:.1f} s; "
          f"latency: {rounds} alternating rounds x {repeats} calls, median")
    if not args.run:
        print("random-init student: speed and file sizes equal a trained one's; its INT8 CD-L1 change says little "
              "about a trained model (use --run)")
    if args.json:
        print(json.dumps({k: v for k, v in rep.items() if k != "markdown"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
