"""The studio started in-process on a free port answers gradio_client calls."""
from __future__ import annotations

import pytest

from engine import runs
from tests.conftest import served_studio


@pytest.fixture
def studio_url(roots):
    with served_studio(roots) as (url, studio):
        yield url, studio


def test_page_serves_and_lists_runs(studio_url, roots):
    import httpx
    from gradio_client import Client

    url, studio = studio_url
    assert httpx.get(url, timeout=30).status_code == 200
    done = studio.runner.submit(lambda ctx: ctx.metric({"step": 1, "loss": 1.5}), kind="demo", run_config={"a": 1})
    studio.runner.wait(done, timeout=10)
    client = Client(url, verbose=False)
    table = client.predict(api_name="/list_runs")
    rows = table["data"] if isinstance(table, dict) else table
    assert any(row[0] == done and row[2] == "succeeded" for row in rows)
    status, config, _plot, _log = client.predict(done, api_name="/run_detail")
    assert "succeeded" in status and config["a"] == 1
