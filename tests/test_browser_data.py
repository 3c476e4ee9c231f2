"""Real browser: the Data tab validates a dataset and its 3D viewer really renders the GT mesh."""
from __future__ import annotations

import pytest

from engine.data.sample_shoes import build_sample
from engine.jobs import NULL_CONTEXT
from tests.browser import browser_page, painted_pixels, require_chromium, studio_process
from tests.conftest import free_port

pytestmark = pytest.mark.browser


def test_data_tab_validates_and_renders_gt_mesh(roots):
    require_chromium()
    build_sample(NULL_CONTEXT, roots["data"] / "sample", count=2, seed=0)
    with studio_process(roots, free_port()) as url, browser_page("data_tab") as page:
        page.goto(url)
        page.get_by_role("tab", name="Data").wait_for(timeout=60_000)
        page.get_by_role("tab", name="Data").click()
        page.locator("#data-dataset input").fill("sample")
        page.locator("#data-dataset input").press("Enter")
        page.locator("#data-validate").click()
        page.locator("#data-table").get_by_text("shoe_001").wait_for(timeout=30_000)
        assert page.locator("#data-table").get_by_text("ok").count() >= 2
        page.locator("#data-views img").first.wait_for(timeout=30_000)
        assert page.locator("#data-views img").count() >= 4
        canvas = page.locator("#data-gt canvas")
        canvas.wait_for(timeout=30_000)
        page.wait_for_timeout(4000)  # Babylon.js loads the GLB and draws
        assert painted_pixels(canvas.screenshot()) > 2000
