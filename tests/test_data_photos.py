"""Dataset views → calibrated RGBA views: alpha kept, masks from plain backdrops, framing untouched."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from engine.config import UserError
from engine.data.photos import load_photo, to_rgba


def _photo(h=128, w=128, bg=(250, 250, 250)):
    """A white-backdrop RGB photo with a dark 40x60 block holding a white 'logo' (enclosed)."""
    img = np.empty((h, w, 3), np.uint8)
    img[:] = bg
    top, left = h // 2 - 20, w // 2 - 30
    img[top:top + 40, left:left + 60] = (30, 60, 120)
    img[top + 15:top + 25, left + 25:left + 35] = bg  # enclosed, background-coloured
    return img


def test_rgba_keeps_alpha_and_resizes():
    rgba = np.zeros((512, 512, 4), np.uint8)
    rgba[100:300, 50:150] = (10, 200, 30, 255)
    out = to_rgba(Image.fromarray(rgba, "RGBA"))
    assert out.shape == (256, 256, 4) and out.dtype == np.uint8
    assert (out[50:150, 25:75, 3] == 255).all() and out[:45, :, 3].max() == 0
    assert (out[60, 30, :3] == (10, 200, 30)).all()
    same = to_rgba(rgba[::2, ::2])  # already 256: untouched
    np.testing.assert_array_equal(same, rgba[::2, ::2])


def test_rgb_on_plain_backdrop_gets_a_mask_with_enclosed_holes_filled():
    out = to_rgba(_photo(256, 256))
    alpha = out[:, :, 3]
    assert (alpha[108:148, 98:158] == 255).all()  # the block, logo included
    assert alpha.sum() == 255 * 40 * 60
    assert (out[120, 110, :3] == (30, 60, 120)).all()
    # a fully opaque alpha channel carries no mask: treated like RGB
    opaque = np.concatenate([_photo(256, 256), np.full((256, 256, 1), 255, np.uint8)], axis=2)
    np.testing.assert_array_equal(to_rgba(opaque)[:, :, 3], alpha)


def test_non_square_is_padded_centred_not_cropped():
    out = to_rgba(_photo(64, 128), size=128)  # pads 32 rows above and below
    rows, cols = np.nonzero(out[:, :, 3] > 0)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (32 + 12, 32 + 51, 34, 93)
    assert out[:32, :, 3].max() == 0 and out[-32:, :, 3].max() == 0


def test_busy_background_is_refused_by_name():
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    with pytest.raises(UserError, match="front.png: no subject found"):
        to_rgba(noise, name="front.png")
    with pytest.raises(UserError, match="x.png: no subject found"):
        to_rgba(np.full((64, 64, 3), 255, np.uint8), name="x.png")


def _save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def test_load_photo_errors_name_the_file(tmp_path):
    good = _save(tmp_path / "s" / "left.png", _photo())
    assert load_photo(good).shape == (256, 256, 4)
    cases = {
        "missing.png": (None, "no such file"),
        "tiny.png": (np.zeros((1, 1, 3), np.uint8), "too small"),
        "thin.png": (np.zeros((8, 200, 3), np.uint8), "too small"),
        "huge.png": (np.full((33, 4100, 3), 255, np.uint8), "too large"),
    }
    for name, (array, message) in cases.items():
        path = tmp_path / "s" / name
        if array is not None:
            _save(path, array)
        with pytest.raises(UserError, match=message) as info:
            load_photo(path)
        assert f"s/{name}" in str(info.value)
    (tmp_path / "s" / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    truncated = good.read_bytes()[: len(good.read_bytes()) // 2]
    (tmp_path / "s" / "cut.png").write_bytes(truncated)
    (tmp_path / "s" / "empty.png").write_bytes(b"")
    for name in ("garbage.png", "cut.png", "empty.png"):
        with pytest.raises(UserError, match=f"s/{name}: (unreadable|empty)"):
            load_photo(tmp_path / "s" / name)
