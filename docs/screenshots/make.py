"""Regenerate the README's screenshots: each studio tab in its finished state, as a user leaves it.

    .venv/bin/python docs/screenshots/make.py [--out docs/screenshots] [--keep]

Starts the studio (``python app.py``) on fresh temporary roots with 4 sample shoes, then drives Debian
chromium through Playwright (the browser tests' helpers, ``tests/browser.py``) tab by tab: validate the
data, run the visual-hull teacher, build the cache, train a student and its GT-only baseline (6 epochs),
distil a tiny VAE, compare one shoe, export to ONNX, open the run in Runs. Each tab is captured at a
1100 px wide window (at most 2300 px of it from the top) and saved as an 8-bit palette PNG (``<tab>.png``, well under 150 KB each). About
5 minutes on 2 CPU cores; ``--keep`` leaves the temporary roots in place to look at.
"""
from __future__ import annotations

import argparse
import io
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from engine.data.sample_shoes import build_sample  # noqa: E402
from engine.progress import NULL_CONTEXT  # noqa: E402
from tests.browser import (browser_page, choose, open_tab, set_number, studio_process,  # noqa: E402
                           wait_state)
from tests.conftest import free_port, make_roots  # noqa: E402

WIDTH, HEIGHT, MAX_HEIGHT = 1100, 900, 2300  # px: window, and the tallest capture kept


def save(page, out: Path, name: str) -> Path:
    """The page (from the top, at most ``MAX_HEIGHT`` px) as an optimised 256-colour PNG."""
    from PIL import Image

    page.wait_for_timeout(800)
    full = page.evaluate("() => document.documentElement.scrollHeight")
    png = page.screenshot(clip={"x": 0, "y": 0, "width": WIDTH, "height": min(full, MAX_HEIGHT)}, full_page=True)
    img = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    path = out / f"{name}.png"
    img.save(path, optimize=True)
    print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: {path.stat().st_size // 1024} KB")
    return path


def runs_with_checkpoint(runs_root: Path) -> list[str]:
    return sorted(p.name for p in runs_root.iterdir() if (p / "checkpoints" / "best.pt").is_file())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    ap.add_argument("--keep", action="store_true", help="keep the temporary data / cache / runs folders")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="ds-screens-"))
    roots = make_roots(base)
    build_sample(NULL_CONTEXT, roots["data"] / "sample", count=4, seed=0)
    try:
        with studio_process(roots, free_port()) as url, browser_page("screenshots", (WIDTH, HEIGHT)) as page:
            page.goto(url)
            open_tab(page, url, "Data")
            choose(page, "#data-dataset", "sample")
            page.locator("#data-validate").click()
            page.locator("#data-table").get_by_text("shoe_001").wait_for(timeout=60_000)
            choose(page, "#data-shoe", "shoe_001")
            page.locator("#data-gt canvas").wait_for(timeout=60_000)
            page.wait_for_timeout(4000)
            save(page, args.out, "data")

            open_tab(page, url, "Teacher")
            choose(page, "#teacher-dataset", "sample")
            choose(page, "#teacher-shoe", "shoe_001")
            page.locator("#teacher-generate").click()
            wait_state(page, "#teacher-progress")
            page.wait_for_timeout(4000)
            save(page, args.out, "teacher")

            open_tab(page, url, "Cache")
            choose(page, "#cache-dataset", "sample")
            page.locator("#cache-preset").get_by_label("fast", exact=True).check()
            page.locator("#cache-build").click()
            wait_state(page, "#cache-progress", timeout=300)
            save(page, args.out, "cache")

            open_tab(page, url, "Train 3D")
            choose(page, "#train-dataset", "sample")
            choose(page, "#train-cache", "sample-visual-hull-fast")
            set_number(page, "epochs", 6)
            set_number(page, "batch size", 2)
            set_number(page, "student width", 4)
            page.locator("#train-start").click()
            wait_state(page, "#train-progress", timeout=900)
            page.locator("#train-comparison table").wait_for(timeout=60_000)
            save(page, args.out, "train3d")

            open_tab(page, url, "VAE")
            for label, value in (("training images (first N)", 256), ("teacher epochs", 1),
                                 ("distillation epochs", 1), ("fine-tune epochs", 1),
                                 ("report: test images (0 = all)", 256)):
                set_number(page, label, value)
            page.locator("#vae-start").click()
            wait_state(page, "#vae-progress", timeout=900)
            page.locator("#vae-report table").wait_for(timeout=60_000)
            save(page, args.out, "vae")

            run_id = min(runs_with_checkpoint(roots["runs"]), key=len)  # the distilled student, not its baseline
            open_tab(page, url, "Compare")
            choose(page, "#compare-run", run_id)
            page.wait_for_timeout(1500)
            page.locator("#compare-go").click()
            wait_state(page, "#compare-progress", timeout=300)
            page.wait_for_timeout(5000)
            save(page, args.out, "compare")

            open_tab(page, url, "Export")
            choose(page, "#export-run", run_id)
            page.locator("#export-go").click()
            wait_state(page, "#export-progress", timeout=600)
            save(page, args.out, "export")

            open_tab(page, url, "Runs")
            page.locator("#runs-table").get_by_text(run_id, exact=True).first.wait_for(timeout=60_000)
            choose(page, "#runs-select", run_id)
            page.locator("#runs-plot .scatterlayer .trace").first.wait_for(timeout=60_000)
            page.wait_for_timeout(2500)  # one live refresh after the pick
            save(page, args.out, "runs")
    finally:
        if args.keep:
            print(f"roots kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
