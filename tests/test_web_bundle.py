"""The export's web bundle (``engine.export.web_bundle``): its files and zip, the error without
onnxruntime-web, the page's view making (``web/views.mjs`` under node) against Pillow / ``engine.data.photos``
byte for byte, and the Export tab's link to the bundle served by the studio (nothing else of the run is)."""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.config import UserError
from engine.data.photos import load_photo
from engine.export import export_student, web_bundle
from engine.export.web_bundle import (BUNDLE_META, MODEL_FILES, ORT_FILES, TEMPLATE_FILES, WEB_DIR, ZIP_NAME, ZIP_ROOT,
                                      WebRuntimeMissing, write_web_bundle)
from engine.geometry.camera import VIEW_NAMES
from engine.infer import views_from_photos
from engine.jobs import NULL_CONTEXT
from tests.test_export3d import trained  # noqa: F401  (the tiny 1-epoch run, as a fixture of this module)

torch.set_num_threads(1)
NODE = shutil.which("node")


def require_ort_web() -> None:
    """Skip (fail in CI, where ``make test`` installs it) without onnxruntime-web under node_modules."""
    try:
        web_bundle.ort_dist()
    except WebRuntimeMissing as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def bundle(trained, tmp_path_factory):  # noqa: F811
    require_ort_web()
    out = tmp_path_factory.mktemp("web-export")
    report = export_student(NULL_CONTEXT, trained["run"], out_dir=out, threads=1, repeats=1, rounds=1)
    return {"out": out, "report": report}


def test_the_export_writes_the_page_its_runtime_and_a_zip_of_them(bundle):
    out, rep = bundle["out"], bundle["report"]
    web = out / WEB_DIR
    assert rep["files"]["web"] == str(web) and rep["files"]["web_zip"] == str(out / ZIP_NAME)
    names = {p.name for p in web.iterdir()}
    assert names == set(TEMPLATE_FILES) | set(ORT_FILES) | set(MODEL_FILES) | {BUNDLE_META}
    for name in MODEL_FILES:  # the model the page runs is the exported one
        assert (web / name).read_bytes() == (out / name).read_bytes(), name
    meta = json.loads((web / BUNDLE_META).read_text())
    _, version = web_bundle.ort_dist()
    lock = json.loads((web_bundle.repo_root() / "package-lock.json").read_text())
    assert meta["onnxruntime-web"] == version == lock["packages"][""]["dependencies"]["onnxruntime-web"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)  # pinned exactly
    assert meta["bytes"] == sum(p.stat().st_size for p in web.iterdir() if p.name != BUNDLE_META)
    assert meta["bytes"] < 25 * 2**20  # the wasm-only build, no WebGPU / WebGL / source maps
    html = (web / "index.html").read_text()
    assert "ort.wasm.min.js" in html and "app.mjs" in html
    assert not [n for n in TEMPLATE_FILES if re.search(r"https?://", (web / n).read_text())]  # no CDN, no internet
    with zipfile.ZipFile(out / ZIP_NAME) as zf:
        assert sorted(zf.namelist()) == sorted(f"{ZIP_ROOT}/{n}" for n in names)
        assert zf.read(f"{ZIP_ROOT}/ort-wasm-simd-threaded.wasm") == (web / "ort-wasm-simd-threaded.wasm").read_bytes()
        assert zf.testzip() is None
    assert "student-web.zip" in rep["markdown"]


def test_a_rewrite_replaces_the_folder_whole_and_leaves_no_work_folders(bundle):
    out = bundle["out"]
    (out / WEB_DIR / "stale.txt").write_text("from an earlier bundle")
    dead = subprocess.Popen(["true"])
    dead.wait()
    (out / f".web-{dead.pid}-k1ll3d").mkdir()  # a write killed midway
    assert write_web_bundle(out) == out / WEB_DIR
    assert not (out / WEB_DIR / "stale.txt").exists() and (out / WEB_DIR / "index.html").is_file()
    assert not list(out.glob(".web-*")) and not list(out.glob(".student-web.zip.*"))


def test_without_onnxruntime_web_it_says_to_run_make_install_and_writes_nothing(trained, tmp_path,  # noqa: F811
                                                                                 monkeypatch):
    out = tmp_path / "export"
    with pytest.raises(UserError, match="no such|missing"):
        write_web_bundle(out)  # nothing exported there yet
    monkeypatch.setattr(web_bundle, "node_modules", lambda: tmp_path / "empty" / "node_modules")
    with pytest.raises(WebRuntimeMissing, match=r"onnxruntime-web is not installed .*run 'make install'"):
        web_bundle.ort_dist()
    (out / WEB_DIR).mkdir(parents=True)  # an earlier export's bundle would hold the earlier model
    (out / WEB_DIR / "index.html").write_text("old")
    (out / ZIP_NAME).write_bytes(b"old")
    logged = []

    class Ctx:  # NULL_CONTEXT, keeping the log lines
        def __getattr__(self, name):
            return getattr(NULL_CONTEXT, name)

        def log(self, text):
            logged.append(text)

    rep = export_student(Ctx(), trained["run"], out_dir=out, threads=1, repeats=1, rounds=1)
    assert rep["files"]["web"] is None and rep["files"]["web_zip"] is None and rep["parity_ok"]
    assert not (out / WEB_DIR).exists() and not (out / ZIP_NAME).exists() and (out / "student.onnx").is_file()
    assert any("make install" in line for line in logged), logged
    with pytest.raises(WebRuntimeMissing):
        write_web_bundle(out)
    assert not (out / WEB_DIR).exists() and not list(out.glob(".web-*"))


NODE_SCRIPT = """
import {readFileSync} from "node:fs";
import {decodePng, calibratedView, photoViews, stackViews} from "%s";
const cases = JSON.parse(readFileSync(process.argv[1], "utf8")), out = {};
for (const c of cases) {
  const imgs = {};
  for (const [view, file] of Object.entries(c.files)) imgs[view] = await decodePng(new Uint8Array(readFileSync(file)));
  const views = {};
  if (c.mode === "calibrated")
    for (const [v, img] of Object.entries(imgs)) views[v] = calibratedView(img, c.size, v).rgba;
  else Object.assign(views, photoViews(imgs, c.size).views);
  out[c.name] = Buffer.from(stackViews(views, c.size).buffer).toString("base64");
}
process.stdout.write(JSON.stringify(out));
"""


def run_views_mjs(cases: list[dict], tmp_path: Path) -> dict[str, np.ndarray]:
    """``web/views.mjs`` under node: {case name: float32 (4, 4, S, S)} of each case's files."""
    if NODE is None:
        if os.environ.get("CI"):
            pytest.fail("node is not installed: make install installs nodejs with apt as root")
        pytest.skip("node not installed")
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    script = NODE_SCRIPT % (web_bundle.TEMPLATES / "views.mjs").as_uri()
    res = subprocess.run([NODE, "--input-type=module", "-e", script, str(tmp_path / "cases.json")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return {name: np.frombuffer(base64.b64decode(b), np.float32).reshape(4, 4, c["size"], c["size"])
            for (name, b), c in zip(json.loads(res.stdout).items(), cases)}


def _py_views(views: dict[str, np.ndarray], size: int) -> np.ndarray:
    from engine.data.views import stack_views

    return (stack_views(views, size).float() / 255.0).numpy()


def test_the_page_makes_calibrated_views_exactly_as_training_reads_them(trained, tmp_path):  # noqa: F811
    """PNG decoding, masking (alpha or plain backdrop), padding to a square and Pillow's BOX / BILINEAR
    resize with premultiplied alpha: the page's float32 input equals ``load_photo`` + ``stack_views`` / 255."""
    rng = np.random.default_rng(0)
    files = {}
    for k, (w, h) in enumerate([(256, 256), (300, 200), (64, 64), (97, 250)]):
        a = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)  # partial alpha everywhere: the worst case for rounding
        a[..., 3] = np.where(rng.random((h, w)) < 0.3, 0, rng.integers(1, 256, (h, w)))
        Image.fromarray(a, "RGBA").save(tmp_path / f"rgba{k}.png")
        files[VIEW_NAMES[k]] = tmp_path / f"rgba{k}.png"
    white = np.full((120, 160, 3), 255, np.uint8)
    white[30:90, 40:120] = rng.integers(0, 200, (60, 80, 3))
    Image.fromarray(white).save(tmp_path / "white.png")  # RGB on a plain backdrop
    Image.fromarray(white).convert("L").save(tmp_path / "grey.png")
    pal = Image.fromarray(white).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.save(tmp_path / "palette.png", transparency=int(np.asarray(pal)[0, 0]))  # a transparency key
    shoe = trained["data"] / "input_images" / "shoe_000"
    cases = [{"name": f"random {size}", "mode": "calibrated", "size": size,
              "files": {k: str(v) for k, v in files.items()}} for size in (32, 96, 33)]
    cases += [{"name": "plain", "mode": "calibrated", "size": 48,
               "files": {"front": str(tmp_path / "white.png"), "left": str(tmp_path / "grey.png"),
                         "back": str(tmp_path / "palette.png")}},
              {"name": "shoe", "mode": "calibrated", "size": 32,
               "files": {v: str(shoe / f"{v}.png") for v in VIEW_NAMES}}]
    got = run_views_mjs(cases, tmp_path)
    for case in cases:
        ref = _py_views({v: load_photo(Path(f), case["size"]) for v, f in case["files"].items()}, case["size"])
        assert np.array_equal(got[case["name"]], ref), (case["name"], np.abs(got[case["name"]] - ref).max())


def test_the_page_frames_photos_like_the_studio(trained, tmp_path):  # noqa: F811
    """Photos mode (mask, cut-off check, ``camera.frame_boxes``; no levelling): the masks match
    ``prepare_views``' on the sample views, given whole or one of them alone."""
    shoe = trained["data"] / "input_images" / "shoe_001"
    paths = {v: str(shoe / f"{v}.png") for v in VIEW_NAMES}
    cases = [{"name": "all", "mode": "photos", "size": 64, "files": paths},
             {"name": "front", "mode": "photos", "size": 64, "files": {"front": paths["front"]}}]
    got = run_views_mjs(cases, tmp_path)
    for case in cases:
        ref, _ = views_from_photos(case["files"], 64)
        for k, view in enumerate(VIEW_NAMES):
            a, b = got[case["name"]][k, 3] > 0.5, ref[k, 3].numpy() > 127
            if view not in case["files"]:
                assert not got[case["name"]][k].any(), view
                continue
            assert (a & b).sum() / (a | b).sum() > 0.95, (case["name"], view)


def test_the_export_tab_links_the_bundle_served_by_the_studio_and_nothing_else(trained):  # noqa: F811
    import httpx
    from gradio_client import Client

    from tests.conftest import served_studio

    require_ort_web()
    run = trained["run"]
    export_student(NULL_CONTEXT, run, threads=1, repeats=1, rounds=1)  # runs/<id>/export/, as the tab does
    roots = {"data": trained["data"], "cache": trained["root"] / "cache", "runs": run.parent}
    roots["cache"].mkdir(exist_ok=True)
    with served_studio(roots) as (url, _studio):
        shown = Client(url, verbose=False).predict(run.name, api_name="/export_show")
        assert any(Path(f).name == ZIP_NAME for f in shown[3])  # the zip is offered for download
        link = re.search(r"href='([^']+)'", shown[-1])
        assert link and "Try the student in your browser" in shown[-1], shown[-1]
        page = httpx.get(url + link.group(1), timeout=30)
        assert page.status_code == 200 and "text/html" in page.headers["content-type"], page.status_code
        assert "Run student" in page.text
        base = url + link.group(1).rsplit("/", 1)[0]
        wasm = httpx.get(base + "/ort-wasm-simd-threaded.wasm", timeout=60)
        assert wasm.status_code == 200 and wasm.headers["content-type"] == "application/wasm"
        assert "javascript" in httpx.get(base + "/app.mjs", timeout=30).headers["content-type"]
        export = str(run / "export")
        for path in (f"{base}/%2e%2e/student.onnx", f"{base}/%2E%2E/%2E%2E/checkpoints/best.pt",
                     f"{url}gradio_api/file={export}/student.onnx", f"{url}gradio_api/file={run}/config.json"):
            res = httpx.get(path, timeout=30)
            assert res.status_code in (403, 404) and b"ONNX" not in res.content[:64], (path, res.status_code)
        for bad in ("../x", "no-such-run"):  # a bad or unknown run ID: no link, nothing registered
            assert "export-web-link" not in Client(url, verbose=False).predict(bad, api_name="/export_show")[-1]
