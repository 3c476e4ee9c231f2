"""The renderer pins the camera convention; render-any-meshes turns odd files into a dataset."""
from __future__ import annotations

import numpy as np
import pytest
import trimesh

from engine.data import render
from engine.data.layout import check_dataset, load_mesh
from engine.data.render import render_meshes_into_layout, render_views, sanitise_id
from engine.geometry.camera import IMAGE_SIZE, ORTHO_EXTENT, VIEW_NAMES, ndc_to_pixel, project_ndc


def _sphere(centre=(0, 0, 0), radius=0.4, color=None):
    s = trimesh.creation.icosphere(subdivisions=4, radius=radius)
    s.apply_translation(centre)
    colors = None if color is None else np.tile(np.array(color, np.uint8), (len(s.vertices), 1))
    return s.vertices, s.faces, colors


def _centroid(alpha):  # (col, row) of the mask, in continuous pixel coordinates (centres at i + 0.5)
    rows, cols = np.nonzero(alpha > 0)
    return cols.mean() + 0.5, rows.mean() + 0.5


def test_sphere_gives_round_mask_of_expected_radius():
    v, f, _ = _sphere(radius=0.4)
    views = render_views(v, f)
    expected_r = 0.4 / ORTHO_EXTENT * IMAGE_SIZE  # 85.3 px
    for name in VIEW_NAMES:
        img = views[name]
        assert img.shape == (IMAGE_SIZE, IMAGE_SIZE, 4) and img.dtype == np.uint8
        alpha = img[:, :, 3]
        assert set(np.unique(alpha)) == {0, 255}
        assert (img[alpha == 0, :3] == 0).all()
        area = (alpha > 0).sum()
        assert abs(np.sqrt(area / np.pi) - expected_r) < 1.0
        cx, cy = _centroid(alpha)
        assert abs(cx - IMAGE_SIZE / 2) < 0.5 and abs(cy - IMAGE_SIZE / 2) < 0.5
        # round: every masked pixel lies within the radius, every pixel well inside it is masked
        rows, cols = np.mgrid[:IMAGE_SIZE, :IMAGE_SIZE] + 0.5
        dist = np.hypot(cols - IMAGE_SIZE / 2, rows - IMAGE_SIZE / 2)
        assert dist[alpha > 0].max() <= expected_r + 0.5
        assert (alpha[dist < expected_r - 2] > 0).all()
        grey = img[alpha > 0, :3].astype(int)
        assert (grey[:, 0] == grey[:, 1]).all() and grey.max() > 150  # neutral grey, lit


@pytest.mark.parametrize("point,expected", [
    # a small sphere at +X: right half of the front view, left half of the back view, centre of left/right
    ((0.3, 0, 0), {"front": "right", "back": "left"}),
    # the toe (+Z): left half of the left view (camera on +X), right half of the right view (camera on -X)
    ((0, 0, 0.3), {"left": "left", "right": "right"}),
])
def test_view_convention(point, expected):
    v, f, _ = _sphere(point, radius=0.1)
    views = render_views(v, f)
    for name, side in expected.items():
        cx, cy = _centroid(views[name][:, :, 3])
        want = IMAGE_SIZE / 2 + (1 if side == "right" else -1) * 0.3 / ORTHO_EXTENT * IMAGE_SIZE
        assert abs(cx - want) < 0.5, name
        assert abs(cy - IMAGE_SIZE / 2) < 0.5
    up = render_views(*_sphere((0, 0.3, 0), radius=0.1)[:2])
    for name in VIEW_NAMES:  # +Y is up in every view: smaller row numbers
        assert _centroid(up[name][:, :, 3])[1] < IMAGE_SIZE / 2 - 60


def test_nearer_surface_wins_and_colours_show():
    red = _sphere((0, 0, 0.2), 0.15, (255, 0, 0))
    blue = _sphere((0, 0, -0.2), 0.3, (0, 0, 255))
    v = np.concatenate([red[0], blue[0]])
    f = np.concatenate([red[1], blue[1] + len(red[0])])
    c = np.concatenate([red[2], blue[2]])
    views = render_views(v, f, c)
    mid = IMAGE_SIZE // 2
    front, back = views["front"][mid, mid], views["back"][mid, mid]  # front camera sits on +Z
    assert front[0] > 100 and front[2] == 0
    assert back[2] > 100 and back[0] == 0


def test_renders_agree_with_project_ndc_on_a_sample_shoe():
    from scipy.ndimage import binary_dilation

    from engine.data.sample_shoes import ShoeParams, make_shoe

    mesh = make_shoe(ShoeParams.sample(0, 4))
    views = render_views(mesh.vertices, mesh.faces, mesh.visual.vertex_colors)
    for name in VIEW_NAMES:
        uv = ndc_to_pixel(project_ndc(mesh.vertices, name))  # (V, 2) continuous (col, row)
        px = np.floor(uv).astype(int).clip(0, IMAGE_SIZE - 1)
        alpha = views[name][:, :, 3] > 0
        # a vertex on the silhouette may sit on a pixel whose centre the mesh just misses: allow one
        # pixel in any direction (8-neighbourhood)
        assert binary_dilation(alpha, np.ones((3, 3), bool))[px[:, 1], px[:, 0]].all(), name
        rows, cols = np.nonzero(alpha)
        assert abs(cols.min() - uv[:, 0].min()) < 1.0 and abs(cols.max() + 1 - uv[:, 0].max()) < 1.0, name
        assert abs(rows.min() - uv[:, 1].min()) < 1.0 and abs(rows.max() + 1 - uv[:, 1].max()) < 1.0, name


def _write_meshes(folder):
    folder.mkdir()
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=3.0)
    sphere.visual.vertex_colors = np.tile([200, 30, 30, 255], (len(sphere.vertices), 1)).astype(np.uint8)
    sphere.export(folder / "Red Ball.ply")
    trimesh.creation.box(extents=(2, 1, 4)).export(folder / "box.stl")
    two = trimesh.util.concatenate([trimesh.creation.box(extents=(1, 1, 1)),
                                    trimesh.creation.box(extents=(1, 1, 1)).apply_translation((3, 0, 0))])
    two.export(folder / "two_parts.obj")
    trimesh.creation.cylinder(radius=1, height=2).export(folder / "Red_Ball.off")  # collides with "Red Ball"
    (folder / "broken.obj").write_bytes(b"this is not a mesh\x00\x01")
    (folder / "notes.txt").write_text("ignored")


def test_render_meshes_into_layout_handles_ply_stl_and_two_parts(tmp_path):
    _write_meshes(tmp_path / "meshes")
    out = tmp_path / "ds"
    rows = render_meshes_into_layout(None, tmp_path / "meshes", out)
    by_source = {r["source"]: r for r in rows}
    assert set(by_source) == {"Red Ball.ply", "box.stl", "two_parts.obj", "Red_Ball.off", "broken.obj"}
    assert by_source["broken.obj"]["status"] == "skipped" and "broken.obj" in by_source["broken.obj"]["message"]
    assert by_source["Red Ball.ply"]["id"] == "Red_Ball" and by_source["Red_Ball.off"]["id"] == "Red_Ball_2"
    assert "grey" in by_source["box.stl"]["message"] and "grey" not in by_source["Red Ball.ply"]["message"]
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) == 4
    report = {r["id"]: r for r in check_dataset(None, out)}
    assert set(report) == {r["id"] for r in ok} and all(r["status"] == "ok" for r in report.values())
    for r in ok:  # normalised on disk
        v, _f = load_mesh(out / "OBJs" / f"{r['id']}.obj")
        assert np.isclose((v.max(0) - v.min(0)).max(), 1.0, atol=1e-5)
        assert np.allclose((v.max(0) + v.min(0)) / 2, 0, atol=1e-5)
    from engine.data.layout import load_views

    two = load_views(out / "input_images" / "two_parts")
    alpha = two["front"][:, :, 3] > 0
    cols = np.nonzero(alpha.any(axis=0))[0]
    assert len(cols) < cols.max() - cols.min() + 1  # a gap between the two parts
    red = load_views(out / "input_images" / "Red_Ball")["front"]
    rgb = red[red[:, :, 3] > 0, :3].astype(int)
    assert (rgb[:, 0] > rgb[:, 1] + 50).mean() > 0.95  # vertex colours carried through


def test_oversized_meshes_are_skipped(tmp_path, monkeypatch):
    folder = tmp_path / "m"
    folder.mkdir()
    trimesh.creation.box().export(folder / "big.stl")
    monkeypatch.setattr(render, "MAX_FACES", 6)
    rows = render_meshes_into_layout(None, folder, tmp_path / "out")
    assert rows[0]["status"] == "skipped" and "big.stl" in rows[0]["message"] and "limit" in rows[0]["message"]
    assert not (tmp_path / "out" / "OBJs" / "big.obj").exists()


def test_empty_mesh_renders_transparent():
    views = render_views(np.empty((0, 3)), np.empty((0, 3), np.int64), size=32)
    assert set(views) == set(VIEW_NAMES) and all(v.shape == (32, 32, 4) and not v.any() for v in views.values())


def test_sanitise_id():
    assert sanitise_id("my shoe (1)") == "my_shoe__1"
    assert sanitise_id("../..") == "mesh"
    assert len(sanitise_id("x" * 100)) == 64
