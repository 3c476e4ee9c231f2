"""Teacher interface + the embedded visual-hull teacher on rendered shapes with known answers."""
from __future__ import annotations

import numpy as np
import pytest
import trimesh

from engine.config import UserError
from engine.data.render import render_views
from engine.teachers.base import (TeacherSettings, TeacherUnavailable, check_views, get_teacher,
                                  teacher_availability, teacher_names)

SIZE = 128  # render size: 1.2 world units / 128 px = 0.0094 per pixel


def _mesh(result) -> trimesh.Trimesh:
    return trimesh.Trimesh(result.vertices, result.faces, process=False)


@pytest.fixture(scope="module")
def vh():
    return get_teacher("visual-hull")


def test_box_recovered_within_one_voxel(vh):
    """Convex shape: the visual hull is the shape itself. Tolerance: every vertex within 0.02 (about two
    voxels of the balanced grid) of the box surface, mean within 0.004; extents within 0.01."""
    half = np.array([0.3, 0.2, 0.5])
    box = trimesh.creation.box(extents=2 * half)
    result = vh.predict(render_views(box.vertices, box.faces, size=SIZE), TeacherSettings())
    v = result.vertices.astype(np.float64)
    q = np.abs(v) - half
    dist = np.linalg.norm(np.maximum(q, 0), axis=1) + np.minimum(q.max(axis=1), 0)  # signed box distance
    assert np.abs(dist).max() < 0.02 and np.abs(dist).mean() < 0.004
    extent = v.max(0) - v.min(0)
    np.testing.assert_allclose(extent, 2 * half, atol=0.01)
    mesh = _mesh(result)
    assert mesh.is_watertight and mesh.volume > 0  # closed, wound outwards
    assert abs(mesh.volume - np.prod(2 * half)) / np.prod(2 * half) < 0.05
    assert result.vertices.dtype == np.float32 and result.faces.dtype == np.int64
    assert result.stats["vertices"] == len(v) and result.stats["teacher"] == "visual-hull"


def test_sphere_gives_the_two_cylinder_hull_and_same_silhouettes(vh):
    """Four views around +Y see a sphere as a circle (front/back/left/right): the hull is the
    intersection of two cylinders (Steinmetz solid, volume 16/3 r^3), not the sphere — stated
    honestly. Surface within 0.015 of that solid; silhouettes re-rendered from the mesh match the
    input with IoU >= 0.97."""
    r = 0.5
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=r)
    views = render_views(sphere.vertices, sphere.faces, size=SIZE)
    result = vh.predict(views, TeacherSettings(preset="fast"))
    x, y, z = result.vertices.astype(np.float64).T
    f = np.maximum(np.hypot(x, y), np.hypot(z, y)) - r
    assert np.abs(f).max() < 0.015
    mesh = _mesh(result)
    assert abs(mesh.volume - 16 / 3 * r**3) / (16 / 3 * r**3) < 0.03
    again = render_views(mesh.vertices, mesh.faces, size=SIZE)
    for name, img in views.items():
        a, b = img[..., 3] > 0, again[name][..., 3] > 0
        assert (a & b).sum() / (a | b).sum() >= 0.97, name


def test_concavities_stay_filled(tmp_path, vh):
    """The visual hull contains the object: on a sample shoe (collar opening, arch) its volume exceeds
    the ground truth's, and the GT lies inside it."""
    from engine.data.layout import find_shoe, load_mesh, load_views
    from engine.data.sample_shoes import build_sample
    from engine.geometry.normalise import normalise_vertices
    from engine.jobs import NULL_CONTEXT

    build_sample(NULL_CONTEXT, tmp_path, count=1, seed=0)
    shoe = find_shoe(tmp_path, "shoe_000")
    gv, gf = load_mesh(shoe.obj_path)
    gt = trimesh.Trimesh(normalise_vertices(gv.astype(np.float64))[0], gf)
    hull = _mesh(vh.predict(load_views(shoe), TeacherSettings()))
    assert hull.volume > 1.05 * gt.volume
    inside = hull.contains(gt.sample(500, seed=1) * 0.97)  # shrink a little: surface points sit on the hull
    assert inside.mean() > 0.97


def test_presets_and_determinism(vh):
    box = trimesh.creation.box(extents=(0.5, 0.5, 1.0))
    views = render_views(box.vertices, box.faces, size=SIZE)
    counts = [len(vh.predict(views, TeacherSettings(preset=p)).vertices) for p in ("fast", "balanced", "high")]
    assert counts[0] < counts[1] < counts[2]
    a, b = vh.predict(views, TeacherSettings()), vh.predict(views, TeacherSettings(seed=5))
    np.testing.assert_array_equal(a.vertices, b.vertices)  # deterministic; the seed is ignored
    fp = vh.fingerprint_settings(TeacherSettings(preset="high"))
    assert fp["grid"] == 128 and vh.fingerprint_settings(TeacherSettings(octree_resolution=40))["grid"] == 40
    assert vh.fingerprint_settings(TeacherSettings(seed=3)) == vh.fingerprint_settings(TeacherSettings())
    one = vh.predict({"front": views["front"]}, TeacherSettings(preset="fast"))  # one view: a prism
    assert len(one.faces) > 0


def test_bad_views_are_user_errors(vh):
    box = trimesh.creation.box(extents=(0.5, 0.5, 1.0))
    views = render_views(box.vertices, box.faces, size=64)
    empty = dict(views, left=np.zeros_like(views["left"]))
    with pytest.raises(UserError, match="'left' has an empty silhouette"):
        vh.predict(empty, TeacherSettings())
    opaque = dict(views, back=np.full_like(views["back"], 255))
    with pytest.raises(UserError, match="'back' is opaque everywhere"):
        vh.predict(opaque, TeacherSettings())
    with pytest.raises(UserError, match="unknown view name"):
        check_views(dict(views, top=views["front"]))
    with pytest.raises(UserError, match="at least one view"):
        check_views({})
    with pytest.raises(UserError, match="uint8 RGBA"):
        check_views({"front": views["front"][..., :3]})


def test_settings_and_registry(tmp_path, monkeypatch):
    for bad in (dict(preset="ultra"), dict(steps=0), dict(octree_resolution=8), dict(seed=-1), dict(device="tpu")):
        with pytest.raises(UserError):
            TeacherSettings(**bad)
    s = TeacherSettings(preset="fast", steps=7, device="cuda:1")
    assert TeacherSettings.from_dict(s.to_dict()) == s
    with pytest.raises(UserError, match="unknown teacher setting"):
        TeacherSettings.from_dict({"preset": "fast", "grid": 3})
    assert teacher_names()[0] == "visual-hull" and "hunyuan3d-2mv" in teacher_names()
    with pytest.raises(UserError, match="unknown teacher 'nope'"):
        get_teacher("nope")
    monkeypatch.setenv("HY3DGEN_MODELS", str(tmp_path / "models"))
    rows = {r["name"]: r for r in teacher_availability()}
    assert rows["visual-hull"]["available"] is True
    hy = rows["hunyuan3d-2mv-turbo"]
    assert hy["available"] is False
    assert str(tmp_path / "models" / "tencent" / "Hunyuan3D-2mv" / "hunyuan3d-dit-v2-mv-turbo") in hy["reason"]
    assert issubclass(TeacherUnavailable, UserError)
