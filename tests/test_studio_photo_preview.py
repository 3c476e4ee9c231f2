"""The upload boxes' previews through gradio_client: what each photo became (thumbnails with captions),
views left out and why, what missing views cost, and unsure masks refused until the user accepts them."""
from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image

from engine.data.composites import composite
from engine.data.sample_shoes import build_sample
from engine.jobs import NULL_CONTEXT
from tests.conftest import make_roots, served_studio


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from gradio_client import Client

    base = tmp_path_factory.mktemp("preview")
    roots = make_roots(base)
    build_sample(NULL_CONTEXT, roots["data"] / "sample", count=1, seed=0)
    shoe = roots["data"] / "sample" / "input_images" / "shoe_000"
    left = np.asarray(Image.open(shoe / "left.png"))
    photo, _ = composite(left, np.random.default_rng(2), "floor-wall")  # a phone-style photo of the left side
    Image.fromarray(photo).save(base / "left_photo.jpg", quality=92)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)).save(base / "noise.png")
    unsure, _ = composite(left, np.random.default_rng(0), "gradient")  # two cuts disagree: confidence 0.78
    Image.fromarray(unsure).save(base / "blends_in.png")
    front = np.asarray(Image.open(shoe / "front.png"))  # a phone JPEG: stored turned, EXIF orientation 6
    rgb = np.where(front[:, :, 3:] > 0, front[:, :, :3], 255).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgb).transpose(Image.Transpose.ROTATE_90).save(base / "phone.jpg", quality=95, exif=exif)
    opaque = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], 2)  # RGBA, alpha 255 everywhere
    Image.fromarray(opaque, "RGBA").save(base / "opaque.png")
    with served_studio(roots, scratch=base / "scratch") as (url, studio):
        yield Client(url, verbose=False), studio, shoe, base


def preview(client, prefix: str, files, timeout: float = 60):
    from gradio_client import handle_file

    client.predict(*[handle_file(str(f)) if f else None for f in files], api_name=f"/{prefix}_preview")
    end = time.time() + timeout
    while time.time() < end:
        gallery, note, _timer = client.predict(api_name=f"/{prefix}_preview_poll")
        if isinstance(note, str) and note and not note.startswith("masking"):
            return gallery, note
        time.sleep(0.3)
    raise AssertionError("the preview did not finish")


def test_preview_shows_what_each_photo_became_and_what_is_missing(app):
    client, _, shoe, base = app
    gallery, note = preview(client, "compare", [shoe / "front.png", base / "left_photo.jpg", base / "noise.png", None])
    captions = [g["caption"] for g in gallery]
    assert captions[0] == "front: alpha", captions
    assert captions[1].startswith(("left: segmented, confidence", "left: plain backdrop")), captions
    assert len(gallery) == 2 and all(Image.open(g["image"]).size == (160, 160) for g in gallery)
    assert "back: not used: back view (noise.png): no subject found" in note
    assert "Views given: 2 of 4" in note and "missing: back, right" in note and "blob" in note


def test_phone_jpeg_with_exif_and_opaque_rgba_are_used(app):
    client, _, shoe, base = app
    gallery, note = preview(client, "export", [base / "phone.jpg", None, base / "opaque.png", None])
    captions = [g["caption"] for g in gallery]
    assert captions == ["front: plain backdrop", "back: plain backdrop"], (captions, note)
    front = np.asarray(Image.open(gallery[0]["image"]).convert("L")) < 140  # the shoe, upright (not turned)
    back = np.asarray(Image.open(gallery[1]["image"]).convert("L")) < 140
    assert (front & back).sum() / max((front | back).sum(), 1) > 0.8


def test_unsure_mask_is_shown_and_refused_until_accepted(app):
    client, studio, _, base = app
    gallery, note = preview(client, "teacher", [base / "blends_in.png", None, None, None])
    assert "Unsure mask: front" in note and "(unsure: check it)" in gallery[0]["caption"]
    assert "visual hull" in note  # the Teacher tab says what a missing view costs the teachers

    from gradio_client import handle_file

    def generate(accept: bool) -> str:
        args = ("uploaded photos", "sample", "shoe_000", "visual-hull", "fast", None, 0,
                handle_file(str(base / "blends_in.png")), None, None, None, accept)
        client.predict(*args, api_name="/teacher_generate")
        end = time.time() + 60
        while time.time() < end:
            bar = client.predict(api_name="/teacher_poll")[0]
            if "data-state='succeeded'" in bar or "data-state='failed'" in bar:
                return bar
            time.sleep(0.3)
        raise AssertionError("no final state")

    refused = generate(False)
    assert "failed" in refused and "mask confidence too low" in refused
    assert "succeeded" in generate(True)
