"""ONNX helpers shared by every student: export, parity, ONNX Runtime sessions, latency.

* ``export_onnx(module, example, path)`` writes ``module`` with a dynamic batch axis (axis 0 of every
  input and output) through the TorchScript exporter (``dynamo=False``: the dynamo exporter needs
  ``onnxscript``, which the project does not install), checks the file with ``onnx.checker`` and writes
  it atomically.
* ``ort_session(path, threads)`` opens an ONNX Runtime CPU session with a fixed thread count, so that
  timings are comparable between models and runs.
* ``parity(module, session, inputs)`` is the max-abs-error between torch and ONNX Runtime outputs.
* ``latency_torch`` / ``latency_ort``: median wall time of ``repeats`` calls after ``warmup`` calls.
"""
from __future__ import annotations

import io
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from engine import storage
from engine.config import UserError

DEFAULT_OPSET = 17


def export_onnx(module: torch.nn.Module, example: torch.Tensor | Sequence[torch.Tensor], path: Path,
                input_names: Sequence[str] = ("input",), output_names: Sequence[str] = ("output",),
                opset: int = DEFAULT_OPSET) -> Path:
    """Export ``module`` (put in eval mode) to ``path`` with axis 0 of every input/output named ``batch``.

    ``example``: one tensor or a sequence of tensors (the example inputs). Returns ``path``.
    """
    import onnx

    args = (example,) if isinstance(example, torch.Tensor) else tuple(example)
    if len(args) != len(input_names):
        raise ValueError(f"{len(args)} example inputs but {len(input_names)} input names")
    dynamic = {name: {0: "batch"} for name in (*input_names, *output_names)}
    was_training = module.training
    module.eval()
    buf = io.BytesIO()
    try:
        with torch.no_grad():
            torch.onnx.export(module, args, buf, input_names=list(input_names), output_names=list(output_names),
                              dynamic_axes=dynamic, opset_version=opset, dynamo=False)
    finally:
        module.train(was_training)
    data = buf.getvalue()
    onnx.checker.check_model(onnx.load_from_string(data))
    return storage.write_bytes(Path(path), data)


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
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


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


def _median_time(fn: Callable[[], Any], warmup: int, repeats: int) -> float:
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


def latency_ort(session, *inputs: torch.Tensor, warmup: int = 2, repeats: int = 7) -> float:
    """Median seconds of one ``session.run`` on ``inputs``."""
    feeds = _feeds(session, inputs)
    return _median_time(lambda: session.run(None, feeds), warmup, repeats)
