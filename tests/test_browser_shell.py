"""Real browser: every tab opens; the Runs tab shows a run written by the CLI side of the engine, and the reply
to Cancel outlives the table's 2 s refresh."""
from __future__ import annotations

import pytest

from engine import runs
from tests.browser import browser_page, require_chromium, studio_process
from tests.conftest import free_port

pytestmark = pytest.mark.browser

TABS = ["Data", "Teacher", "Cache", "Train 3D", "VAE", "Compare", "Export", "Runs"]


def test_every_tab_opens_and_runs_tab_lists_runs(roots):
    require_chromium()
    done = runs.create_run("demo", {"epochs": 1}, root=roots["runs"])
    runs.append_history(done, {"step": 1, "loss": 3.0})
    runs.append_history(done, {"step": 2, "loss": 1.0})
    runs.write_status(done, state="succeeded", started=100.0, finished=160.0)
    stale = runs.create_run("cache", {}, root=roots["runs"])
    runs.write_status(stale, state="running", pid=999_999_999, started=200.0)  # its process is long gone

    with studio_process(roots, free_port()) as url, browser_page("shell") as page:
        page.goto(url)
        page.get_by_role("tab", name="Data").wait_for(timeout=60_000)
        for tab in TABS:
            page.get_by_role("tab", name=tab).click()
            page.wait_for_timeout(200)
        table = page.locator("#runs-table")
        table.get_by_text(done.name).wait_for(timeout=15_000)
        assert table.get_by_text("interrupted").count() >= 1
        assert table.get_by_text("succeeded").count() >= 1
        table.get_by_text(done.name).click()
        page.locator("#runs-plot .js-plotly-plot").wait_for(timeout=15_000)
        assert page.locator("#runs-plot .scatterlayer .trace").count() >= 1
        page.locator("#runs-cancel").click()  # its reply stays readable through the 2 s refreshes
        reply = page.locator("#runs-cancel-note", has_text="nothing to cancel")
        reply.wait_for(timeout=10_000)
        page.wait_for_timeout(4500)
        assert reply.is_visible(), page.locator("#runs-cancel-note").inner_text()
