"""ONNX export: generic helpers (``onnx_tools``) and the 3D mesh student's export (``mesh_student``).

``from engine.export import export_onnx, ort_session, run_ort, parity, latency_torch, latency_ort`` keep
working as they did when this was one module; ``export_student`` is the 3D student's export job.
"""
from engine.export.onnx_tools import (DEFAULT_OPSET, compact_model, export_onnx, latency_ort, latency_torch,
                                      ort_session, parity, run_ort)
from engine.export.mesh_student import export_student

__all__ = ["DEFAULT_OPSET", "compact_model", "export_onnx", "export_student", "latency_ort", "latency_torch",
           "ort_session", "parity", "run_ort"]
