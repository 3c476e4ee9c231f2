"""A teacher cache knows what it was built from (issue 16, cases 3 and 4): the dataset's images by
fingerprint, and in every entry file its shoe ID and fingerprint. Another dataset's cache, a swapped or a
replaced entry file and an entry of the first format are refused with the right reason, in training, in
``cache show`` and in the build (which remakes them)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from engine import storage
from engine.cache import (build_cache, cache_summary, check_dataset, entry_path, make_entry, read_metadata,
                          usable_entry)
from engine.config import UserError
from engine.data.layout import find_shoe, list_shoes
from engine.jobs import NULL_CONTEXT
from engine.teachers.base import TeacherSettings
from tests.conftest import Recording


@pytest.fixture
def built(tiny_vh, tmp_path) -> tuple[Path, Path]:
    """A copy of the session's 5-shoe dataset and its visual-hull cache (fast preset)."""
    shutil.copytree(tiny_vh / "data", tmp_path / "data")
    shutil.copytree(tiny_vh / "cache", tmp_path / "cache")
    return tmp_path / "data", tmp_path / "cache"


def _same_size_copy(cache: Path, src: str, dst: str, data=None) -> None:
    """``dst``'s entry file replaced by ``src``'s (or by ``data``), its recorded size made to match."""
    if data is None:
        shutil.copy(entry_path(cache, src), entry_path(cache, dst))
    else:
        storage.torch_save(entry_path(cache, dst), data)
    meta = json.loads((cache / "metadata.json").read_text())
    meta["entries"][dst]["bytes"] = entry_path(cache, dst).stat().st_size
    (cache / "metadata.json").write_text(json.dumps(meta))


def test_the_cache_records_its_dataset_and_images(built, tiny_vh):
    data, cache = built
    meta = read_metadata(cache)
    assert meta["format"] == 2 and meta["data_root"] == str((tiny_vh / "data").resolve())
    entry = torch.load(entry_path(cache, "shoe_000"), weights_only=True)
    assert entry["shoe_id"] == "shoe_000" and entry["fingerprint"] == meta["entries"]["shoe_000"]["fingerprint"]
    assert all(len(e["images"]) == 64 for e in meta["entries"].values())
    check_dataset(cache, meta, list_shoes(data), data)  # its own images, though copied elsewhere: fine


def test_a_swapped_or_replaced_entry_file_is_refused_and_rebuilt(built):
    data, cache = built
    _same_size_copy(cache, "shoe_001", "shoe_000")  # one shoe's file copied over another's
    other = make_entry(*[torch.load(entry_path(cache, "shoe_002"), weights_only=True)[k] for k in ("vertices", "faces")],
                       "shoe_002", fp="f" * 64)  # the same shoe from another build (another preset)
    _same_size_copy(cache, "shoe_002", "shoe_002", data=other)
    meta = read_metadata(cache)
    assert usable_entry(cache, meta, find_shoe(data, "shoe_000"))[1] == (
        "teacher entry unusable (shoe_000.pt: holds the teacher entry of 'shoe_001', not 'shoe_000' (a file copied "
        "over another); rebuild the cache)")
    assert "not the entry its metadata records" in usable_entry(cache, meta, find_shoe(data, "shoe_002"))[1]
    summary = cache_summary(cache)  # `cache show`
    assert (summary["ok"], summary["failed"]) == (3, 2)
    assert [f["id"] for f in summary["failures"]] == ["shoe_000", "shoe_002"]

    from engine.train.shoe_data import load_shoes

    ctx = Recording()
    logs = []
    ctx.log = logs.append
    shoes, counts = load_shoes(ctx, data, cache, image_size=32, target_points=100)
    assert counts["both"] == 3 and sorted(set(shoes.ids) - {i for i, t in zip(shoes.ids, shoes.has_teacher) if t}) \
        == ["shoe_000", "shoe_002"]  # trained on GT alone, never on the wrong targets
    assert any("shoe_000: teacher entry unusable (shoe_000.pt: holds the teacher entry of 'shoe_001'" in x for x in logs)

    totals = build_cache(NULL_CONTEXT, data, cache, settings=TeacherSettings(preset="fast"))  # the build remakes them
    assert (totals["done"], totals["skipped"]) == (2, 3)
    assert cache_summary(cache)["ok"] == 5


def test_changed_images_are_stale_for_that_reason_and_another_datasets_cache_is_refused(built, tmp_path):
    data, cache = built
    front = data / "input_images" / "shoe_001" / "front.png"
    shutil.copy(data / "input_images" / "shoe_003" / "front.png", front)
    meta = read_metadata(cache)
    assert usable_entry(cache, meta, find_shoe(data, "shoe_001"))[1] == (
        "teacher entry is stale (the shoe's images changed since the cache was built from them)")
    other = tmp_path / "other"
    from engine.data.sample_shoes import build_sample

    build_sample(NULL_CONTEXT, other, count=3, seed=11)  # the same shoe IDs, other pictures
    with pytest.raises(UserError, match=r"built from another dataset .* none of its 5 entries matches the images"):
        check_dataset(cache, meta, list_shoes(other), other)


def test_a_first_format_cache_is_rebuilt(built):
    data, cache = built
    meta = json.loads((cache / "metadata.json").read_text())
    for sid, entry in meta["entries"].items():
        entry.pop("images")
        raw = torch.load(entry_path(cache, sid), weights_only=True)
        storage.torch_save(entry_path(cache, sid), {k: raw[k] for k in ("vertices", "faces", "points", "normals")})
    (cache / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="first format .* rebuild it: python -m engine cache build --data"):
        check_dataset(cache, read_metadata(cache), list_shoes(data), data)
    totals = build_cache(NULL_CONTEXT, data, cache, settings=TeacherSettings(preset="fast"))
    assert (totals["done"], totals["skipped"]) == (5, 0)
    check_dataset(cache, read_metadata(cache), list_shoes(data), data)
