"""Dataset layout: listing, loading, and a validator that names every problem of a broken folder."""
from __future__ import annotations

import re

import numpy as np
import pytest
import trimesh

from engine.config import UserError
from engine.data.layout import (Shoe, check_dataset, find_shoe, list_shoes, load_mesh, load_views, shoe_ids,
                                summarise)
from engine.data.render import mesh_to_obj_bytes, png_bytes, render_views
from engine.geometry.camera import VIEW_NAMES


def _write_shoe(root, sid, obj: bytes | None = None, views=VIEW_NAMES, with_obj=True):
    """A valid shoe (a normalised box and its four rendered views); ``obj`` overrides the OBJ bytes."""
    box = trimesh.creation.box(extents=(0.4, 0.3, 1.0))
    images = render_views(box.vertices, box.faces)
    folder = root / "input_images" / sid
    folder.mkdir(parents=True)
    for name in views:
        (folder / f"{name}.png").write_bytes(png_bytes(images[name]))
    if with_obj:
        (root / "OBJs").mkdir(exist_ok=True)
        (root / "OBJs" / f"{sid}.obj").write_bytes(obj if obj is not None else mesh_to_obj_bytes(box.vertices, box.faces))
    return folder


@pytest.fixture()
def broken(tmp_path):
    root = tmp_path / "ds"
    box = trimesh.creation.box()
    good = mesh_to_obj_bytes(box.vertices, box.faces)
    _write_shoe(root, "good")
    _write_shoe(root, "photo_only", with_obj=False)
    lines = good.decode().splitlines()
    _write_shoe(root, "truncated", obj=("\n".join(lines[:-3]) + "\nf 1 2").encode())
    _write_shoe(root, "empty", obj=b"")
    _write_shoe(root, "nan_vertex", obj=good.replace(b"v -0.500000", b"v nan", 1))
    _write_shoe(root, "flat", obj=b"v 0 0 0\nv 1 0 0\nv 2 0 0\nf 1 2 3\n")
    _write_shoe(root, "no_left", views=("front", "back", "right"))
    tiny = _write_shoe(root, "tiny_image")
    from PIL import Image

    Image.new("RGB", (1, 1)).save(tiny / "front.png")
    (_write_shoe(root, "garbage_image") / "back.png").write_bytes(b"not a png")
    noisy = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noisy).save(_write_shoe(root, "busy_photo") / "right.png")
    _write_shoe(root, "..x")
    _write_shoe(root, "with space")
    (root / "OBJs" / "..bad.obj").write_bytes(good)
    return root


def test_validator_names_each_problem(broken):
    rows = {r["id"]: r for r in check_dataset(None, broken)}
    text = {k: " | ".join(r["problems"]) for k, r in rows.items()}
    assert rows["good"]["status"] == "ok" and rows["good"]["problems"] == []
    assert rows["photo_only"]["status"] == "photo-only" and not rows["photo_only"]["has_gt"]
    expect = {
        "truncated": ["truncated.obj", "truncated"],
        "empty": ["empty.obj", "empty"],
        "nan_vertex": ["nan_vertex.obj", "non-finite"],
        "flat": ["flat.obj", "zero surface area"],
        "no_left": ["missing views: left.png"],
        "tiny_image": ["tiny_image/front.png", "too small (1x1"],
        "garbage_image": ["garbage_image/back.png", "unreadable"],
        "busy_photo": ["busy_photo/right.png", "no subject found"],
        "..x": ["bad ID", "input_images/'..x'"],
        "with space": ["bad ID", "'with space'"],
        "..bad": ["bad ID", "OBJs/'..bad.obj'"],
    }
    for sid, fragments in expect.items():
        assert rows[sid]["status"] == "problem", sid
        for fragment in fragments:
            assert fragment in text[sid], (sid, text[sid])
    assert rows["no_left"]["views"] == ["front", "back", "right"]
    assert "left" not in text["no_left"].replace("left.png", "")  # names only the missing one
    assert summarise(list(rows.values())) == {"total": 13, "ok": 1, "photo-only": 1, "problem": 11}
    # meshes can be skipped for speed: mesh problems disappear, photo problems stay
    fast = {r["id"]: r for r in check_dataset(None, broken, check_meshes=False)}
    assert fast["empty"]["status"] == "ok" and fast["tiny_image"]["status"] == "problem"


def test_list_and_find(broken):
    shoes = list_shoes(broken)
    ids = [s.id for s in shoes]
    assert ids == sorted(ids) and "..x" not in ids and "with space" not in ids and "..bad" not in ids
    assert shoe_ids(broken) == ids
    shoe = find_shoe(broken, "no_left")
    assert isinstance(shoe, Shoe) and shoe.has_gt and not shoe.has_all_views and shoe.missing_views == ["left"]
    assert find_shoe(broken, "good").has_all_views and not find_shoe(broken, "photo_only").has_gt
    views = load_views(shoe)
    assert list(views) == ["front", "back", "right"]
    assert all(v.shape == (256, 256, 4) and v.dtype == np.uint8 for v in views.values())
    assert (views["front"][:, :, 3] > 0).any()
    with pytest.raises(UserError, match="bad shoe ID"):
        find_shoe(broken, "../good")
    with pytest.raises(UserError, match="not found"):
        find_shoe(broken, "nope")


def test_list_datasets(tmp_path, broken):
    from engine.data.layout import list_datasets

    (tmp_path / "not_a_dataset").mkdir()
    assert list_datasets(tmp_path) == ["ds"]
    assert list_datasets(tmp_path / "absent") == []


def test_runs_as_a_job(broken):
    from engine.jobs import JobRunner

    runner = JobRunner()
    job = runner.submit(check_dataset, kind="data-check", with_run=False, root=broken)
    snap = runner.wait(job, timeout=60)
    assert snap["state"] == "succeeded" and snap["progress"] == 1.0
    assert len(runner.result(job)) == 13


def test_roots_must_exist(tmp_path):
    with pytest.raises(UserError, match="not found"):
        list_shoes(tmp_path / "missing")
    (tmp_path / "OBJs").mkdir()
    with pytest.raises(UserError, match="no input_images"):
        check_dataset(None, tmp_path)


def test_load_mesh(tmp_path):
    path = tmp_path / "m.obj"
    box = trimesh.creation.box()
    path.write_bytes(mesh_to_obj_bytes(box.vertices, box.faces))
    v, f = load_mesh(path)
    assert v.dtype == np.float32 and v.shape == (8, 3) and f.dtype == np.int64 and f.shape == (12, 3)
    scene = trimesh.Scene([trimesh.creation.box(), trimesh.creation.icosphere(1).apply_translation((3, 0, 0))])
    scene.export(tmp_path / "scene.glb")
    v2, f2 = load_mesh(tmp_path / "scene.glb")
    assert len(f2) == 12 + 80
    path.write_bytes(b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 9\n")
    with pytest.raises(UserError, match="m.obj: .*(out of range|not a readable)"):
        load_mesh(path)
    with pytest.raises(UserError, match="no such mesh file"):
        load_mesh(tmp_path / "absent.obj")


OBJ_HEAD = b"v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\n"


@pytest.mark.parametrize("body, problem", [
    (b"f 1 2 3\r\nf 1 3 4\r\n", None),
    (b"f 1/1 2/2 3/3\nf 1//1 2//2 4//4\n", None),
    (b"f 10 2 3\nf 1 2 3\n", None),  # "10" is not 0 (the line is out of range, which trimesh's own checks catch)
    (b"vn 0 0\nvt 0\nf 1 2 3\n", None),  # only v / f lines are checked
    (b"v 0 0\nf 1 2 3\n", "line 5 is incomplete ('v 0 0')"),
    (b"f 1 2 3\nf 1 2", "line 6 is incomplete ('f 1 2')"),
    (b"f 1 2 3\nf 1\t2 \r\n", "line 6 is incomplete ('f 1\\t2')"),
    (b"f 0 1 2\n", "line 5 has face index 0 ('f 0 1 2')"),
    (b"f 1 2 3\nf 1 -0/4 3\n", "line 6 has face index 0"),
    (b"f 1 2 3\nf 2 3 0//1\n", "line 6 has face index 0"),
    (b"f 1 2 0\nv 1 1\n", "line 5 has face index 0"),  # the first offending line is named
])
def test_obj_line_check(tmp_path, body, problem):
    """The one-pass OBJ check names the first truncated line or face index 0, with its number."""
    from engine.data.layout import _check_obj_lines

    path = tmp_path / "m.obj"
    path.write_bytes(OBJ_HEAD + body)
    if problem is None:
        _check_obj_lines(path)
    else:
        with pytest.raises(UserError, match=re.escape(problem)):
            _check_obj_lines(path)
