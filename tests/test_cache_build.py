"""Teacher cache: build, skip, stale on settings change, recorded failures, SIGKILL + resume."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from engine.cache import N_POINTS, build_cache, cache_summary, fingerprint, load_entry, read_metadata
from engine.config import UserError
from engine.jobs import NULL_CONTEXT
from engine.teachers.base import TeacherSettings

ROOT = Path(__file__).resolve().parent.parent
FAST = TeacherSettings(preset="fast")


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    """Three sample shoes with GT plus one photo-only shoe (views of shoe_002, no OBJ)."""
    from engine.data.sample_shoes import build_sample

    root = tmp_path_factory.mktemp("data")
    build_sample(NULL_CONTEXT, root, count=3, seed=0)
    shutil.copytree(root / "input_images" / "shoe_002", root / "input_images" / "photo_only")
    return root


def _copy(sample: Path, dst: Path) -> Path:
    shutil.copytree(sample, dst)
    return dst


def test_build_load_and_skip(sample, tmp_path):
    cache = tmp_path / "cache"
    totals = build_cache(NULL_CONTEXT, sample, cache, settings=FAST)
    assert (totals["done"], totals["failed"], totals["skipped"], totals["shoes"]) == (4, 0, 0, 4)
    assert totals["bytes"] == sum(p.stat().st_size for p in cache.glob("*.pt"))
    for sid in ("shoe_000", "shoe_001", "shoe_002", "photo_only"):
        raw = torch.load(cache / f"{sid}.pt", weights_only=True)
        assert sorted(raw) == ["faces", "fingerprint", "normals", "points", "shoe_id", "vertices"]
        e = load_entry(cache, sid)
        assert e["points"].shape == (N_POINTS, 3) and e["normals"].dtype == torch.float32
        assert e["faces"].dtype == torch.int64 and e["vertices"].shape[1] == 3
        assert torch.allclose(e["normals"].norm(dim=1), torch.ones(N_POINTS), atol=1e-4)
        assert float(e["vertices"].abs().max()) <= 0.5 + 1e-5  # normalised
    meta = json.loads((cache / "metadata.json").read_text())
    assert meta["teacher"] == "visual-hull" and meta["settings"]["preset"] == "fast"
    gt = meta["entries"]["shoe_000"]
    assert gt["status"] == "ok" and gt["error"] is None and 0 < gt["cd_l1"] < 0.05 and 0 < gt["fscore@1%"] <= 1
    assert meta["entries"]["photo_only"]["cd_l1"] is None  # never in GT metrics
    # deterministic points (seeded by shoe id): a rebuild elsewhere gives identical tensors
    other = tmp_path / "again"
    build_cache(NULL_CONTEXT, sample, other, settings=FAST, ids=["shoe_001"])
    assert torch.equal(load_entry(other, "shoe_001")["points"], load_entry(cache, "shoe_001")["points"])
    again = build_cache(NULL_CONTEXT, sample, cache, settings=FAST)
    assert (again["done"], again["skipped"], again["bytes"]) == (0, 4, 0)
    s = cache_summary(cache)
    assert (s["entries"], s["ok"], s["failed"], s["stale"], s["with_gt"]) == (4, 4, 0, 0, 3)
    assert 0 < s["mean_cd_l1"] < 0.05 and s["size_bytes"] > totals["bytes"]


def test_preset_change_marks_stale_and_rebuilds(sample, tmp_path):
    cache = tmp_path / "cache"
    build_cache(NULL_CONTEXT, sample, cache, settings=FAST, first=3)
    high = TeacherSettings(preset="high")
    one = build_cache(NULL_CONTEXT, sample, cache, settings=high, ids=["shoe_001"])
    assert one["done"] == 1
    assert cache_summary(cache)["stale"] == 2  # the other two were built with the fast grid
    rest = build_cache(NULL_CONTEXT, sample, cache, settings=high, first=3)
    assert (rest["done"], rest["skipped"]) == (2, 1)
    meta = read_metadata(cache)
    assert {e["fingerprint"] for e in meta["entries"].values()} == {
        fingerprint("visual-hull", {"grid": 128, "alpha_threshold": 128, "blur_voxels": 0.6, "version": 1},
                    {n: sample / "input_images" / sid / f"{n}.png" for n in ("front", "left", "back", "right")})
        for sid in ("shoe_000", "shoe_001", "shoe_002")}
    assert cache_summary(cache)["stale"] == 0


def test_unreadable_image_is_a_recorded_failure(sample, tmp_path):
    data = _copy(sample, tmp_path / "data")
    bad = data / "input_images" / "shoe_001" / "left.png"
    good_bytes = bad.read_bytes()
    bad.write_bytes(b"\x89PNG\r\n\x1a\nthis is not an image")
    cache = tmp_path / "cache"
    totals = build_cache(NULL_CONTEXT, data, cache, settings=FAST)
    assert (totals["done"], totals["failed"]) == (3, 1)
    entry = read_metadata(cache)["entries"]["shoe_001"]
    assert entry["status"] == "failed" and "shoe_001/left.png" in entry["error"] and "unreadable" in entry["error"]
    assert not (cache / "shoe_001.pt").exists()
    summary = cache_summary(cache)
    assert summary["failures"] == [{"id": "shoe_001", "error": entry["error"]}]
    assert build_cache(NULL_CONTEXT, data, cache, settings=FAST)["skipped"] == 4  # same input: kept as failed
    assert build_cache(NULL_CONTEXT, data, cache, settings=FAST, retry_failed=True)["failed"] == 1
    bad.write_bytes(good_bytes)  # fixed input -> new fingerprint -> rebuilt
    fixed = build_cache(NULL_CONTEXT, data, cache, settings=FAST)
    assert (fixed["done"], fixed["skipped"]) == (1, 3)
    assert load_entry(cache, "shoe_001")["vertices"].shape[0] > 0


def test_bad_requests_are_user_errors(sample, tmp_path):
    with pytest.raises(UserError, match="not found in"):
        build_cache(NULL_CONTEXT, sample, tmp_path / "c", ids=["shoe_999"])
    with pytest.raises(UserError, match="bad shoe ID"):
        build_cache(NULL_CONTEXT, sample, tmp_path / "c", ids=["../x"])
    with pytest.raises(UserError, match="no teacher cache"):
        cache_summary(tmp_path / "empty")
    (tmp_path / "c2").mkdir()
    (tmp_path / "c2" / "shoe_000.pt").write_bytes(b"garbage")
    with pytest.raises(UserError, match="shoe_000.pt"):
        load_entry(tmp_path / "c2", "shoe_000")
    torch.save({"vertices": torch.zeros(3, 3)}, tmp_path / "c2" / "shoe_001.pt")
    with pytest.raises(UserError, match="corrupt cache entry"):
        load_entry(tmp_path / "c2", "shoe_001")


def test_killed_build_resumes(tmp_path):
    """SIGKILL a CLI build after its first entry, then resume: every entry complete and loadable."""
    from engine.data.sample_shoes import build_sample

    data, cache = tmp_path / "data", tmp_path / "cache"
    build_sample(NULL_CONTEXT, data, count=5, seed=3)
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "engine", "cache", "build", "--data", str(data), "--out", str(cache),
                             "--preset", "fast"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            meta = read_metadata(cache) if cache.exists() else None
            if meta and meta.get("entries"):
                break
            assert proc.poll() is None, "the build ended before it could be killed"
            time.sleep(0.01)
        assert proc.poll() is None, "the build ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    before = len(read_metadata(cache)["entries"])
    assert 1 <= before < 5
    totals = build_cache(NULL_CONTEXT, data, cache, settings=FAST)
    assert totals["skipped"] >= before and totals["done"] + totals["skipped"] == 5 and totals["failed"] == 0
    meta = read_metadata(cache)
    assert len(meta["entries"]) == 5 and all(e["status"] == "ok" for e in meta["entries"].values())
    for sid in meta["entries"]:
        torch.load(cache / f"{sid}.pt", weights_only=True)
        load_entry(cache, sid)
