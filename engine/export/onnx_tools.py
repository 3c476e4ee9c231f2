"""ONNX helpers shared by every student: export, parity, ONNX Runtime sessions, latency.

* ``export_onnx(module, example, path)`` writes ``module`` (a mesh student in its export form,
  ``mesh_onnx.export_form``) with a dynamic batch axis (axis 0 of every input and output) through the
  TorchScript exporter (``dynamo=False``: the dynamo exporter needs ``onnxscript``, which the project
  does not install), compacts the graph (``compact_model``), checks the file with ``onnx.checker`` and
  writes it atomically.
* ``compact_model(model)``: the TorchScript exporter writes one copy of a constant per use (the mesh
  student's neighbour tables once per graph convolution); identical constants are merged, int64 Gather
  indices that fit are stored as int32, and large index tables with values in 0..65535 as uint16 plus a
  ``Cast`` (ONNX Runtime folds it when the session loads). Same numbers, a smaller file. With
  ``short_names=True`` (the INT8 files, whose quantiser-made names run long) intermediate values get
  short names and what only tools read (node names, ``value_info``) is dropped.
* ``ort_session(path, threads)`` opens an ONNX Runtime CPU session with a fixed thread count, so that
  timings are comparable between models and runs; a missing or unreadable file is a ``UserError``.
* ``parity(module, session, inputs)`` is the max-abs-error between torch and ONNX Runtime outputs.
* ``latency_torch`` / ``latency_ort``: median wall time of ``repeats`` calls after ``warmup`` calls.
"""
from __future__ import annotations

import hashlib
import io
import itertools
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from engine import storage
from engine.config import UserError

DEFAULT_OPSET = 17
UINT16_MIN_SIZE = 64  # index tables from this many values on are stored as uint16 (+ a Cast node, ~40 bytes)


def export_onnx(module: torch.nn.Module, example: torch.Tensor | Sequence[torch.Tensor], path: Path,
                input_names: Sequence[str] = ("input",), output_names: Sequence[str] = ("output",),
                opset: int = DEFAULT_OPSET, compact: bool = True, small_tables: bool = False) -> Path:
    """Export ``module`` (put in eval mode) to ``path`` with axis 0 of every input/output named ``batch``.

    What is traced is ``mesh_onnx.export_form(module)``: a mesh student's export-time swap (same numbers,
    an ONNX-friendly graph), any other module as it is. ``example``: one tensor or a sequence of tensors
    (the example inputs); ``compact``: run ``compact_model`` on the graph before writing; ``small_tables``:
    a mesh student's small neighbour tables instead of the fast ones (``mesh_tables``). Returns ``path``.
    """
    import onnx

    from engine.export.mesh_onnx import export_form

    args = (example,) if isinstance(example, torch.Tensor) else tuple(example)
    if len(args) != len(input_names):
        raise ValueError(f"{len(args)} example inputs but {len(input_names)} input names")
    dynamic = {name: {0: "batch"} for name in (*input_names, *output_names)}
    was_training = module.training
    module.eval()
    buf = io.BytesIO()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # constants captured by the trace (camera rotations) are constants: the notice is noise here
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(export_form(module, small_tables), args, buf, input_names=list(input_names),
                              output_names=list(output_names), dynamic_axes=dynamic, opset_version=opset, dynamo=False)
    finally:
        module.train(was_training)
    model = onnx.load_from_string(buf.getvalue())
    if compact:
        compact_model(model)
    onnx.checker.check_model(model)
    return storage.write_bytes(Path(path), model.SerializeToString())


def _has_subgraphs(graph) -> bool:
    import onnx

    kinds = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
    return any(a.type in kinds for n in graph.node for a in n.attribute)


def _replace(field, items: list) -> None:
    """Set a repeated protobuf message field to ``items`` (copied first: they are its own elements)."""
    copies = [type(x)() for x in items]
    for new, old in zip(copies, items):
        new.CopyFrom(old)
    del field[:]
    field.extend(copies)


def compact_model(model, short_names: bool = False) -> dict:
    """Shrink an ``onnx.ModelProto`` in place without changing what it computes; returns counts.

    1. An int64 ``Constant`` used only as the indices of ``Gather`` nodes, with every value inside the
       int32 range, becomes int32 (``Gather`` accepts both index types).
    2. ``Constant`` nodes with identical tensors (dtype, shape, bytes) collapse into the first one; so do
       identical initializers that are not graph inputs.
    3. An integer ``Constant`` or initializer of at least ``UINT16_MIN_SIZE`` values used only as
       ``Gather`` indices, all in 0..65535, is stored as uint16 and cast to int32 by a ``Cast`` node.
    4. ``short_names``: every value but the graph's inputs, outputs and initializers is renamed ``v0``,
       ``v1``, ...; node names and the ``value_info`` shape annotations (ONNX Runtime infers them) go.
    Graphs with subgraphs (If / Loop / Scan) are left alone. Returns ``{"narrowed", "merged_constants",
    "merged_initializers", "uint16", "renamed"}``.
    """
    from onnx import numpy_helper

    g = model.graph
    stats = {"narrowed": 0, "merged_constants": 0, "merged_initializers": 0, "uint16": 0, "renamed": 0}
    if _has_subgraphs(g):
        return stats
    uses: dict[str, list[tuple[str, int]]] = {}
    for node in g.node:
        for k, name in enumerate(node.input):
            uses.setdefault(name, []).append((node.op_type, k))
    protected = {o.name for o in g.output} | {i.name for i in g.input}

    def value_attr(node):
        return node.attribute[0] if (node.op_type == "Constant" and len(node.attribute) == 1
                                     and node.attribute[0].name == "value") else None

    narrowed: set[str] = set()
    for node in g.node:  # 1. narrow Gather indices
        attr = value_attr(node)
        if attr is None or node.output[0] in protected:
            continue
        arr = numpy_helper.to_array(attr.t)
        used = uses.get(node.output[0], [])
        if (arr.dtype == np.int64 and arr.size and used and all(u == ("Gather", 1) for u in used)
                and arr.min() >= np.iinfo(np.int32).min and arr.max() <= np.iinfo(np.int32).max):
            attr.t.CopyFrom(numpy_helper.from_array(arr.astype(np.int32), attr.t.name))
            stats["narrowed"] += 1
            narrowed.add(node.output[0])
    _replace(g.value_info, [v for v in g.value_info if v.name not in narrowed])  # its recorded type was int64

    def key(arr: np.ndarray) -> tuple:
        return arr.dtype.str, arr.shape, hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()

    rename: dict[str, str] = {}
    first: dict[tuple, str] = {}
    kept = []
    for node in g.node:  # 2a. merge constants (inputs renamed as we go: a constant precedes its users)
        for k, name in enumerate(node.input):
            if name in rename:
                node.input[k] = rename[name]
        attr = value_attr(node)
        if attr is not None and node.output[0] not in protected:
            kk = key(numpy_helper.to_array(attr.t))
            if kk in first:
                rename[node.output[0]] = first[kk]
                stats["merged_constants"] += 1
                continue
            first[kk] = node.output[0]
        kept.append(node)
    _replace(g.node, kept)

    rename, first, inits = {}, {}, []  # 2b. merge initializers
    for t in g.initializer:
        if t.name in protected:
            inits.append(t)
            continue
        kk = key(numpy_helper.to_array(t))
        if kk in first:
            rename[t.name] = first[kk]
            stats["merged_initializers"] += 1
        else:
            first[kk] = t.name
            inits.append(t)
    if rename:
        _replace(g.initializer, inits)
        for node in g.node:
            for k, name in enumerate(node.input):
                if name in rename:
                    node.input[k] = rename[name]
    stats["uint16"] = _uint16_indices(g, protected)
    if short_names:
        stats["renamed"] = _short_names(g, protected | {t.name for t in g.initializer})
    return stats


def _short_names(g, keep: set[str]) -> int:
    """Step 4 of ``compact_model``: values outside ``keep`` renamed ``v0``, ``v1``, ...; node names and
    ``value_info`` dropped. Returns how many values were renamed."""
    names: dict[str, str] = {}
    fresh = (f"v{k}" for k in itertools.count())

    def short(name: str) -> str:
        if not name or name in keep:
            return name
        if name not in names:
            names[name] = next(n for n in fresh if n not in keep)
        return names[name]

    for node in g.node:
        node.name = ""
        for field in (node.input, node.output):
            for k, name in enumerate(field):
                field[k] = short(name)
    del g.value_info[:]
    return len(names)


def _uint16_indices(g, protected: set[str]) -> int:
    """Step 3 of ``compact_model``: index tables stored as uint16 + ``Cast``; returns how many."""
    from onnx import TensorProto, helper, numpy_helper

    uses: dict[str, set[tuple[str, int]]] = {}
    for node in g.node:
        for k, name in enumerate(node.input):
            uses.setdefault(name, set()).add((node.op_type, k))

    def narrow(arr: np.ndarray, name: str):
        """``(uint16 array, Cast node)`` for an index table, else None."""
        if (name in protected or arr.dtype not in (np.int32, np.int64) or arr.size < UINT16_MIN_SIZE
                or uses.get(name) != {("Gather", 1)} or arr.min() < 0 or arr.max() > np.iinfo(np.uint16).max):
            return None
        cast = helper.make_node("Cast", [f"{name}_u16"], [name], name=f"{name}_cast", to=TensorProto.INT32)
        return arr.astype(np.uint16), cast

    done: set[str] = set()
    nodes = []
    for t in g.initializer:  # initializers: their Cast nodes go first
        found = narrow(numpy_helper.to_array(t), t.name)
        if found is not None:
            done.add(t.name)
            t.CopyFrom(numpy_helper.from_array(found[0], f"{t.name}_u16"))
            nodes.append(found[1])
    for node in g.node:
        nodes.append(node)
        if node.op_type != "Constant" or len(node.attribute) != 1 or node.attribute[0].name != "value":
            continue
        name = node.output[0]
        found = narrow(numpy_helper.to_array(node.attribute[0].t), name)
        if found is not None:
            node.attribute[0].t.CopyFrom(numpy_helper.from_array(found[0]))
            node.output[0] = f"{name}_u16"
            nodes.append(found[1])
            done.add(name)
    if done:
        _replace(g.node, nodes)
        _replace(g.value_info, [v for v in g.value_info if v.name not in done])
    return len(done)


def ort_session(path: Path, threads: int = 1):
    """An ONNX Runtime CPU session for ``path`` using exactly ``threads`` intra-op threads (1 inter-op)."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such ONNX file")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own (pybind) exception types for bad files
        msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise UserError(f"{path.name}: not a loadable ONNX model ({msg})") from None


def _feeds(session, inputs: Sequence[torch.Tensor]) -> dict[str, np.ndarray]:
    names = [i.name for i in session.get_inputs()]
    return {n: t.detach().cpu().numpy() for n, t in zip(names, inputs)}


def run_ort(session, *inputs: torch.Tensor) -> list[np.ndarray]:
    """Run ``session`` on torch tensors; returns numpy outputs."""
    return session.run(None, _feeds(session, inputs))


def parity(module: torch.nn.Module, session, *inputs: torch.Tensor) -> float:
    """Max-abs-error over all outputs between ``module(*inputs)`` (eval, no grad) and ONNX Runtime."""
    was_training = module.training
    module.eval()
    with torch.no_grad():
        out = module(*inputs)
    module.train(was_training)
    outs = [out] if isinstance(out, torch.Tensor) else list(out)
    ort_outs = run_ort(session, *inputs)
    return max(float(np.max(np.abs(o.detach().cpu().numpy() - r))) for o, r in zip(outs, ort_outs))


SETTLE_S = 0.2  # pause before each timed block (see _median_time)


def _median_time(fn: Callable[[], Any], warmup: int, repeats: int) -> float:
    """Median wall time of ``repeats`` calls after ``warmup`` calls, started after a ``SETTLE_S`` pause:
    torch's OpenMP workers and ONNX Runtime's pool spin for a while after a call, and when runtimes are
    timed alternately on few cores, the other runtime's spinning threads doubled the measured time
    (ORT 12.3 ms -> 6.1 ms with the pause, 5.8 ms timed alone; torch 13.1 -> 9.7 ms)."""
    time.sleep(SETTLE_S)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def latency_torch(module: torch.nn.Module, *inputs: torch.Tensor, warmup: int = 2, repeats: int = 7,
                  threads: int | None = None) -> float:
    """Median seconds of one eager ``module(*inputs)`` call (eval, no grad), optionally with ``threads``."""
    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            return _median_time(lambda: module(*inputs), warmup, repeats)
    finally:
        module.train(was_training)
        torch.set_num_threads(old)


def operator_ms(path: Path, *inputs: torch.Tensor, threads: int = 1, calls: int = 20, warmup: int = 2) -> dict[str, float]:
    """Milliseconds per call spent in each operator type of ``path`` (ONNX Runtime's profiler, kernel time
    of ``calls`` calls after ``warmup`` calls), largest first. The profile file is removed."""
    import json
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads, opts.log_severity_level = int(threads), 1, 3
    with tempfile.TemporaryDirectory(prefix="ort-profile-") as tmp:
        opts.enable_profiling, opts.profile_file_prefix = True, str(Path(tmp) / "p")
        session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        feeds = _feeds(session, inputs)
        for _ in range(warmup + calls):
            session.run(None, feeds)
        events = json.loads(Path(session.end_profiling()).read_text())
    kernels = [e for e in events if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")]
    per_call = len(kernels) // (warmup + calls)  # the same nodes run in every call, in order
    per_op: dict[str, float] = {}
    for e in kernels[warmup * per_call:]:
        per_op[e["args"]["op_name"]] = per_op.get(e["args"]["op_name"], 0.0) + e["dur"] / 1000.0 / calls
    return dict(sorted(per_op.items(), key=lambda kv: -kv[1]))


def latency_ort(session, *inputs: torch.Tensor, warmup: int = 2, repeats: int = 7) -> float:
    """Median seconds of one ``session.run`` on ``inputs``."""
    feeds = _feeds(session, inputs)
    return _median_time(lambda: session.run(None, feeds), warmup, repeats)
