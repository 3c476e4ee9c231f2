"""The exported student as a static web page: ``export_dir/web/`` and ``export_dir/student-web.zip``.

``write_web_bundle(export_dir)`` takes the files ``export_student`` wrote (``student.onnx``,
``student.json``, ``student.faces.json``) and puts beside them a page that runs the student in the
browser with onnxruntime-web (WebAssembly, on the CPU of the machine that opens it):

    web/index.html                        1-4 photos (front / left / back / right) in, the mesh out
    web/app.mjs, views.mjs, viewer.mjs    the page's code (templates in ``engine/export/web/``): views made
                                          as ``engine.data.photos`` makes them, the student run and timed,
                                          a small WebGL viewer (flat shading, drag to rotate)
    web/ort.wasm.min.js, ort-wasm-simd-threaded.{mjs,wasm}
                                          onnxruntime-web's WebAssembly build, copied from ``node_modules``
                                          (``make install`` runs ``npm ci`` on ``package-lock.json``)
    web/student.onnx, student.json, student.faces.json
    web/bundle.json                       what the page was made from: the ORT-web version, file sizes
    student-web.zip                       the same folder as ``student-web/``: unzip it and serve it with any
                                          static HTTP server (``python -m http.server``); nothing is fetched
                                          from the internet

Both are replaced atomically: the folder is built under a temporary name and renamed into place (an
earlier ``web/`` is moved aside first and removed after), the zip goes through ``engine.storage``. A
missing onnxruntime-web is a ``WebRuntimeMissing`` (a ``UserError``) saying to run ``make install``;
no bundle is written then.
"""
from __future__ import annotations

import os
import secrets
import shutil
import time
import zipfile
from pathlib import Path

from engine import runs, storage
from engine.config import UserError

WEB_DIR = "web"
ZIP_NAME = "student-web.zip"
ZIP_ROOT = "student-web"  # the folder the zip unpacks to
BUNDLE_META = "bundle.json"
TEMPLATES = Path(__file__).resolve().parent / "web"  # index.html and the page's modules
TEMPLATE_FILES = ("index.html", "app.mjs", "views.mjs", "viewer.mjs")
ORT_PACKAGE = "onnxruntime-web"
# The WebAssembly-only build: its loader, the Emscripten glue it imports and the wasm binary it fetches
# (the one binary this release ships for the CPU: SIMD, threads used only when the page is
# cross-origin isolated; the page asks for one thread otherwise).
ORT_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
MODEL_FILES = ("student.onnx", "student.json", "student.faces.json")


class WebRuntimeMissing(UserError):
    """onnxruntime-web is not installed under ``node_modules`` (``make install`` installs it)."""


def repo_root() -> Path:
    """The repository root (``package.json`` lives there)."""
    return Path(__file__).resolve().parents[2]


def node_modules() -> Path:
    """Where ``npm ci`` installs the page's runtime: ``<repo>/node_modules``. The one place it is resolved."""
    return repo_root() / "node_modules"


def ort_dist() -> tuple[Path, str]:
    """``(folder holding ORT_FILES, version)`` of the installed onnxruntime-web; ``WebRuntimeMissing``
    naming what is missing and the command that installs it."""
    package = node_modules() / ORT_PACKAGE
    dist = package / "dist"
    missing = [name for name in ORT_FILES if not (dist / name).is_file()]
    meta = storage.read_json(package / "package.json")
    if missing or not isinstance(meta, dict) or not meta.get("version"):
        what = f"{', '.join(missing)} not found in {dist}" if missing else f"{package / 'package.json'} unreadable"
        raise WebRuntimeMissing(f"{ORT_PACKAGE} is not installed ({what}); run 'make install' (it runs npm ci) "
                                "to build the browser bundle")
    return dist, str(meta["version"])


def _link_or_copy(src: Path, dst: Path) -> None:
    """A hard link when ``src`` and ``dst`` share a file system (the 15 MB wasm once on disk), else a copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def sweep_web_temps(export_dir: Path) -> list[Path]:
    """Remove ``.web-<pid>-*`` folders left by bundle writes whose process is gone; returns them."""
    removed = []
    for tmp in Path(export_dir).glob(".web-*"):
        pid = tmp.name.split("-")[1]
        if tmp.is_dir() and not (pid.isdigit() and runs.pid_alive(int(pid))):
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
    return removed


def _zip_folder(folder: Path, out: Path) -> Path:
    """``folder``'s files as ``ZIP_ROOT/<name>`` in a zip written atomically to ``out``."""
    tmp = out.with_name(f".{out.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
            for path in sorted(folder.iterdir()):
                zf.write(path, f"{ZIP_ROOT}/{path.name}")
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno in storage.DISK_FULL_ERRNOS:
            raise storage.DiskFull(f"no space left on the device while writing {out}") from None
        if exc.errno in storage.NOT_WRITABLE_ERRNOS:
            raise storage.not_writable(out.parent, exc) from None
        raise
    return out


def write_web_bundle(export_dir: Path) -> Path:
    """Write ``export_dir/web/`` and ``export_dir/student-web.zip`` (module docstring); returns the folder.
    ``UserError`` when the export's files are missing, ``WebRuntimeMissing`` without onnxruntime-web."""
    export_dir = Path(export_dir)
    missing = [name for name in MODEL_FILES if not (export_dir / name).is_file()]
    if missing:
        raise UserError(f"{export_dir}: {', '.join(missing)} missing; export the run first ('engine export')")
    dist, version = ort_dist()
    meta = storage.read_json(export_dir / "student.json")
    if not isinstance(meta, dict) or not isinstance(meta.get("image_size"), int):
        raise UserError(f"{export_dir / 'student.json'}: not a mesh-student export's metadata; re-export the run")
    sweep_web_temps(export_dir)
    tmp = export_dir / f".web-{os.getpid()}-{secrets.token_hex(4)}"
    final, old = export_dir / WEB_DIR, export_dir / f".web-{os.getpid()}-old-{secrets.token_hex(4)}"
    try:
        tmp.mkdir(parents=True)
        for name in TEMPLATE_FILES:
            shutil.copyfile(TEMPLATES / name, tmp / name)
        for name in ORT_FILES:
            _link_or_copy(dist / name, tmp / name)
        for name in MODEL_FILES:
            shutil.copyfile(export_dir / name, tmp / name)
        files = {p.name: p.stat().st_size for p in sorted(tmp.iterdir())}
        storage.write_json(tmp / BUNDLE_META, {
            "format": "distillation-studio/mesh-student-web", "version": 1, ORT_PACKAGE: version,
            "image_size": meta["image_size"], "run": meta.get("run"), "checkpoint": meta.get("checkpoint"),
            "files": files, "bytes": sum(files.values()), "created": time.time()})
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if exc.errno in storage.DISK_FULL_ERRNOS:
            raise storage.DiskFull(f"no space left on the device while writing {final}") from None
        if exc.errno in storage.NOT_WRITABLE_ERRNOS:
            raise storage.not_writable(export_dir, exc) from None
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)
    _zip_folder(final, export_dir / ZIP_NAME)
    return final


def bundle_files(export_dir: Path, ctx=None) -> dict:
    """What ``export_student`` records: ``{"web": folder, "web_zip": zip}`` as strings, both None (and the
    reason logged on ``ctx``) when onnxruntime-web is not installed: the ONNX export stands without it, and
    a bundle left from an earlier export (it would hold the earlier model) is removed."""
    try:
        folder = write_web_bundle(export_dir)
    except WebRuntimeMissing as exc:
        shutil.rmtree(Path(export_dir) / WEB_DIR, ignore_errors=True)
        (Path(export_dir) / ZIP_NAME).unlink(missing_ok=True)
        if ctx is not None:
            ctx.log(f"web bundle not written: {exc}")
        return {"web": None, "web_zip": None}
    return {"web": str(folder), "web_zip": str(Path(export_dir) / ZIP_NAME)}


def page_info(folder: Path) -> dict | None:
    """``bundle.json`` of a bundle folder when its page is there, else None."""
    folder = Path(folder)
    meta = storage.read_json(folder / BUNDLE_META)
    return meta if isinstance(meta, dict) and (folder / "index.html").is_file() else None


__all__ = ["WEB_DIR", "ZIP_NAME", "WebRuntimeMissing", "bundle_files", "node_modules", "ort_dist", "page_info",
           "write_web_bundle"]
