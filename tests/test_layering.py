"""The layering the architecture promises, checked on the source: studio never imports torch, the engine
never imports gradio, engine/geometry imports nothing else of the engine; and what must stay light at
import time stays light.

Static (ast) checks see every import statement, also those inside functions. Importing ``studio.app``
does load torch today — through the engine modules the tabs call (evaluation, export) — so the studio's
rule is checked on its own source, and the import-time check covers the studio's shared modules and the
engine's job / run / CLI core only.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _modules(folder: str) -> list[Path]:
    return sorted(p for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path``; relative imports are resolved."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((node.lineno, name))
    return found


def _offenders(folder: str, bad) -> list[str]:
    return [f"{p.relative_to(ROOT)}:{line} imports {name}"
            for p in _modules(folder) for line, name in _imports(p) if bad(name)]


def _is(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_studio_never_imports_torch():
    assert _modules("studio")
    assert _offenders("studio", lambda n: _is(n, "torch")) == []


def test_engine_never_imports_gradio():
    assert _modules("engine")
    assert _offenders("engine", lambda n: _is(n, "gradio")) == []


def test_geometry_imports_nothing_else_of_the_engine():
    assert _modules("engine/geometry")
    assert _offenders("engine/geometry", lambda n: _is(n, "engine") and not _is(n, "engine.geometry")) == []


@pytest.mark.parametrize("code, absent", [
    # the job / run / CLI core: the CLI parser with every command registered, no heavy imports
    ("import engine.jobs, engine.runs, engine.progress, engine.config, engine.devices\n"
     "from engine.cli import build_parser; build_parser()", ("torch", "gradio")),
    ("import studio.components, studio.context, studio.plots", ("torch",)),
])
def test_light_modules_stay_light_at_import(code, absent):
    check = f"import sys\n{code}\nprint(' '.join(m for m in {absent!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={"GRADIO_ANALYTICS_ENABLED": "False", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"importing {code!r} loaded {out.stdout.strip()}"


# the pipeline, upstream first (geometry: the pure conventions and functions data builds on): a package
# may import those before it, never those after it
PIPELINE = ("geometry", "data", "teachers", "cache", "students", "train", "evaluate", "export")
TOP = ("workflows", "jobs", "cli")  # beside the pipeline, above it: they may import any step


def _step(name: str) -> str | None:
    """The pipeline step of an engine module; ``engine/<step>_<part>.py`` (``cache_entry``) belongs to <step>."""
    parts = name.split(".")
    if len(parts) < 2 or parts[0] != "engine":
        return None
    return next((step for step in PIPELINE if parts[1].startswith(step + "_")), parts[1])


@pytest.mark.parametrize("package", PIPELINE)
def test_pipeline_arrows_run_one_way(package):
    """No step imports a later step or the workflows / jobs / CLI above them (engine/export never imports
    engine/evaluate: export uses the students' trained-run reader and the metrics' conventions)."""
    later = set(PIPELINE[PIPELINE.index(package) + 1:]) | set(TOP)
    folder = f"engine/{package}" if (ROOT / "engine" / package).is_dir() else None
    paths = _modules(folder) if folder else [ROOT / "engine" / f"{package}.py",
                                              *sorted((ROOT / "engine").glob(f"{package}_*.py"))]
    bad = [f"{p.relative_to(ROOT)}:{line} imports {name}" for p in paths for line, name in _imports(p)
           if _step(name) in later]
    assert bad == []
