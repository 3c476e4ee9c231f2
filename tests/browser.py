"""Helpers for the real-browser tests: start the studio as a user would, drive Debian chromium."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--enable-unsafe-swiftshader"]
ARTIFACTS = ROOT / "test-artifacts"


def require_chromium() -> None:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: `make test` installs it with apt-get as root")
        pytest.skip("Debian chromium not installed (make test installs it when run as root)")


@contextmanager
def studio_process(env_roots: dict[str, Path], port: int):
    """``python app.py`` in a subprocess on ``port`` with the given roots; waits for HTTP 200."""
    import httpx

    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False",
               **{f"DS_{k.upper()}": str(v) for k, v in env_roots.items()})
    log = open(env_roots["runs"].parent / "studio.log", "w")
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"studio exited early: {(env_roots['runs'].parent / 'studio.log').read_text()}")
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            raise RuntimeError("studio did not answer within 90 s")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@contextmanager
def browser_page(name: str):
    """A chromium page; a screenshot lands in test-artifacts/ when the body raises."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            yield page
        except BaseException:
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
            raise
        finally:
            browser.close()
