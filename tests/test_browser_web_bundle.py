"""The export's web bundle in chromium: unzipped and served by a plain static server, and served by the
studio from the Export tab's link. A sample shoe's views go in; the vertices onnxruntime-web computes in the
page match ONNX Runtime on CPU on the same view tensor (max abs diff <= 1e-4), the page reports its latency
per shoe and the viewer paints the mesh."""
from __future__ import annotations

import re
import subprocess
import sys
import time
import zipfile
from contextlib import contextmanager

import numpy as np
import pytest
import torch

from engine.data.views import load_views_tensor
from engine.export import export_student
from engine.export.web_bundle import ZIP_NAME, ZIP_ROOT
from engine.geometry.camera import VIEW_NAMES
from engine.jobs import NULL_CONTEXT
from tests.browser import browser_page, painted_pixels, require_chromium
from tests.conftest import free_port
from tests.test_export3d import trained  # noqa: F401  (the tiny 1-epoch run, as a fixture of this module)
from tests.test_web_bundle import require_ort_web

pytestmark = pytest.mark.browser
torch.set_num_threads(1)
TOLERANCE = 1e-4  # max abs vertex difference, world units (the FP32 export's own parity tolerance)


@contextmanager
def static_server(folder):
    """``python -m http.server`` in ``folder`` on a free port of 127.0.0.1; yields its URL."""
    import httpx

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"], cwd=folder,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(100):
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def run_page(page, url: str | None, files: dict, mode: str) -> dict:
    """Open the bundle's page (``url``; None: ``page`` shows it already), give it ``files`` ({view: path})
    as ``mode`` images, run the student."""
    if url:
        page.goto(url)
    page.wait_for_selector("#status[data-state=ready], #status[data-state=error]", timeout=60_000)
    assert page.locator("#status").get_attribute("data-state") == "ready", page.locator("#status").inner_text()
    for view, path in files.items():
        page.locator(f"#view-{view}").set_input_files(str(path))
    page.locator(f"#mode-{mode}").check()
    page.locator("#run").click()
    page.wait_for_selector("#status[data-state=done], #status[data-state=error]", timeout=120_000)
    assert page.locator("#status").get_attribute("data-state") == "done", page.locator("#status").inner_text()
    return {"vertices": np.asarray(page.evaluate("Array.from(window.lastVertices)"), np.float32).reshape(-1, 3),
            "input": np.asarray(page.evaluate("Array.from(window.lastInput)"), np.float32),
            "latency": page.locator("#latency").inner_text(), "ms": page.evaluate("window.lastLatencyMs"),
            "painted": painted_pixels(page.locator("#viewer").screenshot()),
            "notes": page.locator("#notes").inner_text()}


def check_shoe(res: dict, onnx_path, shoe_dir, size: int) -> float:
    """The page's input is the training view tensor and its vertices are ONNX Runtime's on CPU."""
    import onnxruntime as ort

    x = (load_views_tensor(shoe_dir, size).float() / 255.0).numpy()[None]  # (1, 4, 4, S, S)
    assert np.array_equal(res["input"], x.ravel())
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    ref = session.run(None, {"views": x})[0][0]  # (V, 3)
    err = float(np.abs(res["vertices"] - ref).max())
    assert res["vertices"].shape == ref.shape and err <= TOLERANCE, err
    assert re.fullmatch(r"latency per shoe: \d+(\.\d+)? ms", res["latency"]) and res["ms"] > 0, res["latency"]
    assert res["painted"] > 2000, res["painted"]  # the mesh is drawn
    return err


@pytest.fixture(scope="module")
def exported_run(trained):  # noqa: F811
    require_chromium()
    require_ort_web()
    report = export_student(NULL_CONTEXT, trained["run"], threads=1, repeats=1, rounds=1)  # runs/<id>/export/
    return trained, report


def test_the_unzipped_bundle_runs_a_shoe_in_chromium_like_onnx_runtime_on_cpu(exported_run, tmp_path):
    trained, report = exported_run
    with zipfile.ZipFile(report["files"]["web_zip"]) as zf:
        zf.extractall(tmp_path)
    folder = tmp_path / ZIP_ROOT
    shoe_dir = trained["data"] / "input_images" / "shoe_000"
    with static_server(folder) as url, browser_page("web_bundle_static") as page:
        res = run_page(page, url + "index.html", {v: shoe_dir / f"{v}.png" for v in VIEW_NAMES}, "calibrated")
        check_shoe(res, folder / "student.onnx", shoe_dir, report["image_size"])
        assert "views given: 4 of 4" in res["notes"]
        front = run_page(page, url + "index.html", {"front": shoe_dir / "front.png"}, "photos")  # one photo
        assert np.isfinite(front["vertices"]).all() and front["painted"] > 2000
        assert "views given: 1 of 4" in front["notes"] and "missing: left, back, right" in front["notes"]


def test_the_studio_serves_the_bundle_from_the_export_tab(exported_run):
    from tests.browser import open_tab, pick_option
    from tests.conftest import served_studio

    trained, report = exported_run
    run = trained["run"]
    roots = {"data": trained["data"], "cache": trained["root"] / "cache", "runs": run.parent}
    roots["cache"].mkdir(exist_ok=True)
    shoe_dir = trained["data"] / "input_images" / "shoe_003"
    with served_studio(roots) as (url, _studio), browser_page("web_bundle_studio") as page:
        open_tab(page, url, "Export")
        pick_option(page, "#export-run", run.name)
        link = page.locator("#export-web-link")
        link.wait_for(timeout=30_000)
        page.locator(f"#export-files a[download='{ZIP_NAME}']").first.wait_for(timeout=30_000)  # offered for download
        with page.context.expect_page() as opened:  # one click: the page opens in a new tab
            link.click()
        tab = opened.value
        res = run_page(tab, None, {v: shoe_dir / f"{v}.png" for v in VIEW_NAMES}, "calibrated")
        check_shoe(res, run / "export" / "student.onnx", shoe_dir, report["image_size"])
    assert ZIP_NAME in report["markdown"]
