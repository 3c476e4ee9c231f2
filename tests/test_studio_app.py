"""The studio started in-process on a free port answers gradio_client calls."""
from __future__ import annotations

import pytest

from engine import runs
from engine.jobs import JobRunner
from tests.conftest import free_port


@pytest.fixture
def studio_url(roots):
    from studio.app import build_app
    from studio.context import Studio

    studio = Studio(runner=JobRunner(runs_root=roots["runs"]), data_root=roots["data"],
                    cache_root=roots["cache"], runs_root=roots["runs"])
    demo = build_app(studio)
    port = free_port()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/", studio
    demo.close()


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
