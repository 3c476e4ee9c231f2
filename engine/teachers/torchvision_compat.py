"""Make ``import torchvision`` work when its compiled ops cannot load (CPU torch + CUDA torchvision wheel).

Why: hy3dgen's conditioner does ``from torchvision import transforms``. The only torchvision wheel
the registry offers for torch 2.13 (0.28.0) is a CUDA build; on a CPU build of torch its ``_C.so``
fails to load, and ``import torchvision`` then dies in ``torchvision/_meta_registrations.py`` with
"operator torchvision::nms does not exist" (it registers fake kernels for ``nms`` and ``qnms``, which
requires their schemas to exist).

What: ``ensure_torchvision_importable()`` first tries to load torchvision's compiled library exactly as
torchvision would. Only if that fails and the ``torchvision::nms`` / ``torchvision::qnms`` operators
are still unknown does it *define their schemas* (no kernels) with
``torch.library.Library("torchvision", "DEF")``. torchvision then imports; models and transforms
work, while the compiled ops (nms, roi_align, io.decode_*, ...) still raise when called — the
Hunyuan shape pipeline uses none of them.

On a machine where ``_C.so`` loads (CUDA torch + CUDA torchvision, or a matching CPU build) this is
a no-op. Call it before the first torchvision import; only ``engine.teachers.hunyuan`` does.
"""
from __future__ import annotations

import glob
import importlib.util
import os
import sys

# Schemas copied from torchvision's C++ registrations (ops/nms.cpp, quantized/qnms); no kernels.
_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_LIBRARY = None  # keeps the DEF library alive: schemas vanish when it is garbage-collected
_STATE: dict[str, object] = {"done": False, "patched": False, "reason": ""}


def _op_exists(name: str) -> bool:
    import torch

    try:
        getattr(torch.ops.torchvision, name)
        return True
    except (AttributeError, RuntimeError):
        return False


def _try_load_compiled() -> str:
    """Load torchvision's ``_C`` library without importing torchvision. Returns '' or the failure."""
    import torch

    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return "torchvision is not installed"
    for folder in spec.submodule_search_locations:
        for lib in sorted(glob.glob(os.path.join(folder, "_C*.so")) + glob.glob(os.path.join(folder, "_C*.pyd"))):
            try:
                torch.ops.load_library(lib)
                return ""
            except (OSError, ImportError, RuntimeError) as exc:
                return f"{os.path.basename(lib)} does not load: {str(exc).splitlines()[0][:160]}"
    return "torchvision has no compiled _C library"


def ensure_torchvision_importable() -> dict:
    """Prepare for ``import torchvision``; returns ``{"patched": bool, "reason": str}``.

    ``patched`` is True when the nms/qnms schemas had to be defined (``reason`` says why the
    compiled ops did not load). Idempotent; does nothing once torchvision is already imported.
    Raises ``ModuleNotFoundError`` when torchvision is not installed at all.
    """
    global _LIBRARY
    if _STATE["done"] or "torchvision" in sys.modules:
        return {"patched": bool(_STATE["patched"]), "reason": str(_STATE["reason"])}
    if importlib.util.find_spec("torchvision") is None:
        raise ModuleNotFoundError("No module named 'torchvision'", name="torchvision")
    import torch

    reason = _try_load_compiled()
    missing = [name for name in _SCHEMAS if not _op_exists(name)]
    if missing:
        _LIBRARY = torch.library.Library("torchvision", "DEF")
        for name in missing:
            _LIBRARY.define(_SCHEMAS[name])
    _STATE.update(done=True, patched=bool(missing), reason=reason if missing else "")
    return {"patched": bool(missing), "reason": _STATE["reason"]}
