"""Procedural sample shoes: determinism, resumable builds, watertight shoe-like meshes."""
from __future__ import annotations

import json

import numpy as np
import pytest

from engine.config import UserError
from engine.data.sample_shoes import TOE_SHAPES, ShoeParams, build_sample, make_shoe
from engine.geometry.camera import VIEW_NAMES


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_files(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    ra = build_sample(None, a, count=3, seed=7)
    rb = build_sample(None, b, count=3, seed=7)
    assert ra["built"] == rb["built"] == 3
    fa, fb = _files(a), _files(b)
    expected = {"sample.json"} | {f"OBJs/shoe_00{i}.obj" for i in range(3)} | {
        f"input_images/shoe_00{i}/{n}.png" for i in range(3) for n in VIEW_NAMES}
    assert set(fa) == expected
    assert fa == fb  # byte for byte
    meta = json.loads(fa["sample.json"])
    assert meta["seed"] == 7 and meta["count"] == 3 and meta["complete"] is True
    assert meta["shoes"]["shoe_001"] == json.loads(json.dumps(ShoeParams.sample(7, 1).__dict__))
    # another seed gives other shoes
    c = build_sample(None, tmp_path / "c", count=1, seed=8)
    assert c["built"] == 1 and _files(tmp_path / "c")["OBJs/shoe_000.obj"] != fa["OBJs/shoe_000.obj"]


def test_build_resumes_and_refuses_other_seed(tmp_path):
    out = tmp_path / "s"
    build_sample(None, out, count=2, seed=0)
    before = _files(out)
    (out / "input_images" / "shoe_001" / "left.png").unlink()
    (out / "OBJs" / "shoe_000.obj").unlink()
    result = build_sample(None, out, count=2, seed=0)
    assert (result["built"], result["skipped"]) == (2, 0)
    assert _files(out) == before
    again = build_sample(None, out, count=2, seed=0)
    assert (again["built"], again["skipped"]) == (0, 2)
    with pytest.raises(UserError, match="seed 0"):
        build_sample(None, out, count=2, seed=1)


def test_cancel_stops_between_shoes(tmp_path):
    from engine.jobs import JobCancelled

    class Cancelling:
        calls = 0

        def progress(self, fraction, message=""):
            pass

        def log(self, text):
            pass

        def check_cancelled(self):
            Cancelling.calls += 1
            if Cancelling.calls > 1:
                raise JobCancelled("cancelled")

    with pytest.raises(JobCancelled):
        build_sample(Cancelling(), tmp_path / "x", count=3, seed=0)
    assert sorted(p.name for p in (tmp_path / "x" / "OBJs").iterdir()) == ["shoe_000.obj"]


@pytest.mark.parametrize("seed,index", [(0, 0), (0, 1), (1, 5), (2, 9), (3, 17), (42, 3)])
def test_sample_meshes_are_watertight_shoes(seed, index):
    params = ShoeParams.sample(seed, index)
    mesh = make_shoe(params)
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert mesh.body_count == 1
    assert mesh.volume > 0  # outward-facing triangles
    assert 5_000 <= len(mesh.faces) <= 20_000
    lo, hi = mesh.bounds
    np.testing.assert_allclose((lo + hi) / 2, 0, atol=1e-9)
    assert np.isclose((hi - lo).max(), 1.0) and np.argmax(hi - lo) == 2  # the length lies along Z
    v, colors = mesh.vertices, np.asarray(mesh.visual.vertex_colors)[:, :3]
    # sole colour at the bottom, upper colour above it
    sole = (colors == params.sole_color).all(axis=1)
    upper = (colors == params.upper_color).all(axis=1)
    assert sole.sum() > 100 and upper.sum() > 100
    assert v[sole, 1].mean() < v[upper, 1].mean()
    # toe towards +Z: the collar end (heel half) stands taller than the toe box
    assert v[v[:, 2] < -0.1, 1].max() > v[v[:, 2] > 0.3, 1].max() + 0.03


def test_collar_is_a_recess_seen_only_from_above():
    from trimesh.ray.ray_pyembree import RayMeshIntersector

    params = ShoeParams.sample(0, 2)
    mesh = make_shoe(params)
    zc = params.collar_position - 0.5  # the build frame spans z = 0..length, normalised to -0.5..0.5
    locations, _, _ = RayMeshIntersector(mesh).intersects_location([[0.0, 2.0, zc]], [[0.0, -1.0, 0.0]],
                                                                    multiple_hits=False)
    rim = mesh.vertices[np.abs(mesh.vertices[:, 2] - zc) < 0.15, 1].max()
    floor = locations[0, 1]
    assert rim - floor > 0.05  # a real dent from the top ...
    assert floor > mesh.bounds[0, 1] + 0.02  # ... that does not cut through the sole


def test_toe_shapes_all_occur_and_params_are_deterministic():
    shapes = {ShoeParams.sample(0, i).toe_shape for i in range(30)}
    assert shapes == set(TOE_SHAPES)
    assert ShoeParams.sample(5, 3) == ShoeParams.sample(5, 3) != ShoeParams.sample(5, 4)
