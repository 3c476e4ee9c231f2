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
def browser_page(name: str, viewport: tuple[int, int] = (1400, 1000)):
    """A chromium page of ``viewport`` (width, height) px; a screenshot lands in test-artifacts/ when the body
    raises."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
        try:
            yield page
        except BaseException:
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
            raise
        finally:
            browser.close()


def open_tab(page, url: str, name: str) -> None:
    if not page.url.startswith(url):
        page.goto(url)
    tab = page.get_by_role("tab", name=name, exact=True)
    tab.wait_for(timeout=60_000)
    tab.click()


def choose(page, selector: str, value: str) -> None:
    """Type a value into a Gradio dropdown (they accept custom values here) and confirm it."""
    box = page.locator(f"{selector} input").first
    box.fill(value)
    box.press("Enter")


def set_number(page, label: str, value) -> None:
    field = page.get_by_label(label, exact=True).first
    field.fill(str(value))
    field.press("Tab")


def wait_state(page, selector: str, states=("succeeded",), timeout: float = 180) -> str:
    """Wait until the job progress bar in ``selector`` shows a final state; return it."""
    end = time.time() + timeout
    while time.time() < end:
        el = page.locator(f"{selector} .job-progress")
        if el.count():
            state = el.first.get_attribute("data-state")
            if state in ("succeeded", "failed", "cancelled"):
                assert state in states, page.locator(selector).inner_text()
                return state
        page.wait_for_timeout(300)
    raise AssertionError(f"{selector}: no final state within {timeout} s")


def watch_percents(page, selector: str) -> None:
    """Record every percent the progress bar in ``selector`` shows from now on, whatever the polling of
    this test: a MutationObserver in the page notes each render (read back by ``watched_percents``)."""
    page.evaluate(
        """sel => { window.__percents = window.__percents || {}; const seen = window.__percents[sel] = [];
        new MutationObserver(() => { const el = document.querySelector(sel);
          const m = el && el.innerText.match(/(\\d+)%/); if (m) seen.push(+m[1]); })
        .observe(document.body, {subtree: true, childList: true, characterData: true}); }""", selector)


def watched_percents(page, selector: str) -> list[int]:
    return sorted(set(page.evaluate("sel => (window.__percents || {})[sel] || []", selector)))


def painted_mask(png: bytes):
    """Boolean (H, W) mask of the pixels that differ from the image's most common (background) colour."""
    import io

    import numpy as np
    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    flat = img.reshape(-1, 3)
    colors, counts = np.unique(flat, axis=0, return_counts=True)
    return np.abs(img - colors[counts.argmax()]).sum(-1) > 30


def painted_pixels(png: bytes) -> int:
    """Pixels that differ from the canvas's most common (background) colour."""
    return int(painted_mask(png).sum())


def painted_extent(png: bytes) -> tuple[float, float]:
    """(width, height) of the painted pixels' bounding box as fractions of the image's (0, 0 when blank); the
    outer 3 px (the viewer's border) are left out."""
    import numpy as np

    mask = painted_mask(png)
    mask[:3], mask[-3:], mask[:, :3], mask[:, -3:] = False, False, False, False
    if not mask.any():
        return 0.0, 0.0
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return (cols[-1] - cols[0] + 1) / mask.shape[1], (rows[-1] - rows[0] + 1) / mask.shape[0]


def canvas_png(page, selector: str) -> bytes:
    """A screenshot of the 3D viewer's canvas in ``selector`` once Babylon.js has loaded and drawn the GLB."""
    canvas = page.locator(f"{selector} canvas")
    canvas.wait_for(timeout=60_000)
    page.wait_for_timeout(4000)  # Babylon.js loads the GLB and draws
    overlays = f"{selector} [data-testid=block-label], {selector} button, {selector} .icon-button-wrapper"
    page.add_style_tag(content=f"{overlays} {{ visibility: hidden !important; }}")  # the label and icons on top
    return canvas.screenshot()


def canvas_painted(page, selector: str) -> int:
    return painted_pixels(canvas_png(page, selector))


def plot_points(page, selector: str) -> int:
    """Points of the first trace of the plotly figure inside ``selector`` (0 when none is drawn yet)."""
    return page.evaluate(
        "sel => { const d = document.querySelector(sel + ' .js-plotly-plot');"
        " return d && d.data && d.data.length ? d.data[0].x.length : 0; }", selector)


def pick_option(page, selector: str, text: str) -> str:
    """Open the Gradio dropdown in ``selector`` as a user does (no typing) and click the first choice whose
    text contains ``text``; returns that choice's text. Fails when no such choice is listed."""
    page.locator(f"{selector} input").first.click()
    option = page.locator(f"{selector} li", has_text=text).first
    option.wait_for(timeout=15_000)
    label = option.inner_text()
    option.click()
    return label


def input_cut_off(page, selector: str) -> bool:
    """Whether the text in the input of ``selector`` is wider than the box shows."""
    return page.evaluate("sel => { const i = document.querySelector(sel + ' input');"
                         " return i.scrollWidth > i.clientWidth + 1; }", selector)


def plot_overlaps(page, selector: str) -> list[str]:
    """Legends of the plotly figure in ``selector`` that overlap one of its axis or figure titles (their
    screen boxes intersect): ``["legend2 / xtitle", ...]``; empty when every legend is clear."""
    return page.evaluate(
        """sel => { const d = document.querySelector(sel + ' .js-plotly-plot'); if (!d) return ['no plot'];
        const box = e => e.getBoundingClientRect(), hit = (a, b) => a.left < b.right && b.left < a.right &&
          a.top < b.bottom && b.top < a.bottom;
        const legends = [...d.querySelectorAll('.infolayer > g[class^=legend]')];
        const titles = [...d.querySelectorAll('.infolayer text[class$=title]')].filter(t => t.textContent);
        const out = [];
        for (const l of legends) for (const t of titles) if (hit(box(l), box(t)))
          out.push(l.getAttribute('class') + ' / ' + t.getAttribute('class'));
        return out; }""", selector)
