"""Real browser, as a new user: every tab opens; teacher preview renders; cache progress moves; the loss plot
grows while training runs; Compare shows three meshes; ONNX export downloads; a 1-epoch VAE job shows its
reconstruction grid; good and bad photos are uploaded. One studio process serves the whole module."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

from engine.data.sample_shoes import build_sample
from engine.jobs import NULL_CONTEXT
from tests.browser import (browser_page, canvas_painted, canvas_png, choose, input_cut_off, open_tab, painted_extent,
                           painted_pixels, pick_option, plot_overlaps, plot_points, require_chromium, set_number,
                           studio_process, wait_state, watch_percents, watched_percents)
from tests.conftest import free_port, make_roots

pytestmark = pytest.mark.browser
TABS = ("Data", "Teacher", "Cache", "Train 3D", "VAE", "Compare", "Export", "Runs")
CACHE = "sample-occupancy-fast"  # the learned teacher: slow enough (about 1 s a shoe) to watch progress


@pytest.fixture(scope="module")
def studio_url(tmp_path_factory):
    require_chromium()
    base = tmp_path_factory.mktemp("browser-tabs")
    roots = make_roots(base)
    build_sample(NULL_CONTEXT, roots["data"] / "sample", count=3, seed=0)
    with studio_process(roots, free_port()) as url:
        yield url, roots, base


def test_every_tab_opens(studio_url):
    url, _, _ = studio_url
    with browser_page("tabs_open") as page:
        page.goto(url)
        for name in TABS:
            open_tab(page, url, name)
            page.get_by_role("tab", name=name, exact=True).wait_for()
            assert page.get_by_role("tabpanel").first.is_visible()
        assert "Not available yet" not in page.content()


def test_teacher_preview_and_photo_uploads(studio_url):
    url, roots, base = studio_url
    front = roots["data"] / "sample" / "input_images" / "shoe_000" / "front.png"
    from PIL import Image

    noise = base / "noise.png"  # no alpha and no plain background: no mask can be found
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(noise)
    with browser_page("teacher_tab") as page:
        open_tab(page, url, "Teacher")
        choose(page, "#teacher-dataset", "sample")
        choose(page, "#teacher-shoe", "shoe_000")
        page.locator("#teacher-generate").click()
        wait_state(page, "#teacher-progress")
        assert canvas_painted(page, "#teacher-model") > 2000
        assert "all four" in page.locator("#teacher-views").inner_text()
        page.get_by_role("button", name="Prepare download").click()
        page.locator("#teacher-download a").first.wait_for(timeout=30_000)  # the dataset shoe's mesh file
        # uploaded photos: a good one gives a mesh, a bad one a clear message
        page.get_by_role("tab", name="Upload photos").first.click()
        page.locator("#teacher-upload-front input[type=file]").set_input_files(str(front))
        page.get_by_label("uploaded photos").check()
        page.locator("#teacher-generate").click()
        wait_state(page, "#teacher-progress")
        assert canvas_painted(page, "#teacher-model") > 2000
        assert page.locator("#teacher-download a").count() == 0, "the previous mesh's download is still offered"
        views = page.locator("#teacher-views").inner_text()  # one photo: said plainly next to the result
        assert "1 of 4" in views and "slab" in views and "several views" in views, views
        page.reload()  # a fresh form, as a user starting over
        open_tab(page, url, "Teacher")
        page.get_by_role("tab", name="Upload photos").first.click()
        page.locator("#teacher-upload-front input[type=file]").set_input_files(str(noise))
        page.get_by_label("uploaded photos").check()
        page.locator("#teacher-generate").click()
        wait_state(page, "#teacher-progress", states=("failed",))
        assert "background" in page.locator("#teacher-progress").inner_text()


def test_3d_pipeline_cache_train_compare_export(studio_url):
    url, roots, _ = studio_url
    with browser_page("pipeline_3d") as page:
        open_tab(page, url, "Cache")
        choose(page, "#cache-dataset", "sample")
        choose(page, "#cache-teacher", "occupancy")
        page.get_by_label("fast", exact=True).check()
        watch_percents(page, "#cache-progress")
        page.locator("#cache-build").click()
        wait_state(page, "#cache-progress", timeout=180)
        seen = watched_percents(page, "#cache-progress")
        assert any(0 < p < 100 for p in seen), f"progress never moved between 0 and 100 %: {seen}"
        assert "3 cached" in page.locator("#cache-summary").inner_text()

        open_tab(page, url, "Train 3D")
        choose(page, "#train-dataset", "sample")
        choose(page, "#train-cache", CACHE)
        set_number(page, "epochs", 12)  # long enough (about 20 s) to watch the plot grow
        set_number(page, "batch size", 1)
        set_number(page, "student width", 4)
        page.get_by_label("also train the baseline (GT only)").uncheck()
        page.locator("#train-start").click()
        counts = []
        end = time.time() + 300
        while time.time() < end:
            counts.append(plot_points(page, "#train-loss-plot"))
            if page.locator("#train-comparison table").count():
                break
            page.wait_for_timeout(500)
        growing = sorted(set(c for c in counts if c))
        assert len(growing) >= 2, f"the loss plot did not gain points while training ran: {counts[-20:]}"
        comparison = page.locator("#train-comparison").inner_text()
        assert "student" in comparison and "baseline row missing" in comparison  # and why it is missing
        for plot in ("#train-loss-plot", "#train-epoch-plot"):  # legends clear of the axis titles
            assert plot_overlaps(page, plot) == [], (plot, plot_overlaps(page, plot))

        open_tab(page, url, "Compare")  # the run trained above is listed without asking for a refresh
        run_id = sorted(p.name for p in roots["runs"].iterdir() if (p / "checkpoints" / "best.pt").is_file())[0]
        label = pick_option(page, "#compare-run", run_id)
        assert "student" in label and "12/12 ep" in label and "val CD-L1" in label, label
        assert not input_cut_off(page, "#compare-run"), "the run's ID is cut off in the picker"
        page.wait_for_timeout(1000)
        val = [r["id"] for r in json.loads((roots["runs"] / run_id / "evaluation.json").read_text())["rows"]]
        first = next(sid for sid in ("shoe_000", "shoe_001", "shoe_002") if sid not in val)  # a training shoe
        choose(page, "#compare-shoe", first)
        page.locator("#compare-go").click()
        wait_state(page, "#compare-progress")
        widths = {}
        for name in ("teacher", "student", "gt"):  # rendered, and framed: the shoe fills most of each viewer
            png = canvas_png(page, f"#compare-{name}")
            widths[name] = painted_extent(png)[0]
            assert painted_pixels(png) > 1000, name
        assert min(widths.values()) > 0.5 and max(widths.values()) - min(widths.values()) < 0.2, widths
        assert "cd_l1" in page.locator("#compare-metrics").inner_text()
        # the run was evaluated when training finished: its worst shoe opens with one click
        worst = val[0]  # evaluation.json lists the val shoes worst first, as the table does
        matches = page.locator("#compare-worst").get_by_text(worst, exact=True)
        matches.first.wait_for(state="attached", timeout=30_000)
        cell = next((matches.nth(i) for i in range(matches.count()) if matches.nth(i).is_visible()), None)
        assert cell is not None, page.locator("#compare-worst").inner_html()[:2000]
        cell.click()
        page.locator("#compare-notes", has_text=worst).wait_for(timeout=120_000)
        assert "val split" in page.locator("#compare-notes").inner_text()

        open_tab(page, url, "Export")
        pick_option(page, "#export-run", run_id)
        page.locator("#export-go").click()
        wait_state(page, "#export-progress", timeout=300)
        link = page.locator("#export-files a[download='student.onnx']").first
        link.wait_for(timeout=30_000)
        with page.expect_download() as dl:
            link.click()
        path = dl.value.path()
        assert path and open(path, "rb").read(64)  # a non-empty ONNX file came down


def test_vae_one_epoch_shows_the_reconstruction_grid(studio_url):
    url, _, _ = studio_url
    with browser_page("vae_tab") as page:
        open_tab(page, url, "VAE")
        set_number(page, "training images (first N)", 64)
        set_number(page, "teacher epochs", 1)
        set_number(page, "distillation epochs", 1)
        set_number(page, "fine-tune epochs", 0)
        set_number(page, "w_perc", 0.1)
        set_number(page, "report: test images (0 = all)", 64)
        page.locator("#vae-start").click()
        img = page.locator("#vae-grid img")
        img.wait_for(timeout=300_000)  # drawn after the first epoch
        assert page.evaluate("el => el.naturalWidth", img.element_handle()) > 32
        wait_state(page, "#vae-progress", timeout=300)
        page.locator("#vae-report table").wait_for(timeout=30_000)
        assert "PSNR" in page.locator("#vae-report").inner_text()
