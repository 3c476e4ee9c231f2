"""Importing arbitrary meshes: ``data render --up x|y|z|auto`` and ``data check`` flagging what the
cameras would see badly (slivers, cut-off views, views that disagree in height)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh
from PIL import Image

from engine.cli import main as cli_main
from engine.data.layout import check_dataset
from engine.data.photos import view_problems
from engine.data.render import render_meshes_into_layout
from engine.geometry.orientation import rotation_for


def _coverage(out, sid):
    return {v: float((np.asarray(Image.open(out / "input_images" / sid / f"{v}.png"))[:, :, 3] > 0).mean())
            for v in ("front", "left", "back", "right")}


@pytest.fixture
def lying(tmp_path):
    """A flat blade lying flat (thin along Y) and a post lying along X, plus a post standing along Z."""
    folder = tmp_path / "meshes"
    folder.mkdir()
    trimesh.creation.box(extents=(1.0, 0.02, 0.4)).export(folder / "blade.stl")
    trimesh.creation.box(extents=(2.0, 0.3, 0.3)).export(folder / "post_x.stl")
    trimesh.creation.box(extents=(0.3, 0.3, 2.0)).export(folder / "post_z.stl")
    return folder


def test_rotations_are_proper_and_auto_puts_the_longest_axis_along_z(lying):
    rng = np.random.default_rng(0)
    for up in ("x", "y", "z", "auto"):
        mesh = trimesh.load(lying / "post_x.stl")
        r = rotation_for(mesh.vertices, mesh.faces, up)
        assert np.allclose(r @ r.T, np.eye(3), atol=1e-9) and np.isclose(np.linalg.det(r), 1.0)
    mesh = trimesh.load(lying / "post_x.stl")
    spun = mesh.vertices @ trimesh.transformations.random_rotation_matrix(rng.random(3))[:3, :3].T
    out = spun @ rotation_for(spun, mesh.faces, "auto").T
    ext = np.ptp(out, axis=0)
    assert ext[2] == pytest.approx(2.0, abs=1e-6) and np.argmax(ext) == 2
    blade = trimesh.load(lying / "blade.stl")
    ext = np.ptp(blade.vertices @ rotation_for(blade.vertices, blade.faces, "auto").T, axis=0)
    np.testing.assert_allclose(ext, (0.02, 0.4, 1.0), atol=1e-6)  # thin along X, flat face to the side cameras
    with pytest.raises(ValueError, match="unknown --up"):
        rotation_for(blade.vertices, blade.faces, "w")


def test_lying_meshes_are_slivers_until_rotated(lying, tmp_path):
    plain = tmp_path / "plain"
    render_meshes_into_layout(None, lying, plain)
    rows = {r["id"]: r for r in check_dataset(None, plain)}
    blade = " | ".join(rows["blade"]["problems"])
    assert rows["blade"]["status"] == "problem" and blade.count("a sliver") == 4 and "--up" in blade
    assert max(_coverage(plain, "blade").values()) < 0.02

    auto = tmp_path / "auto"
    render_meshes_into_layout(None, lying, auto, up="auto")
    cov = _coverage(auto, "blade")
    assert cov["left"] > 0.2 and cov["right"] > 0.2  # its face, seen by the side cameras
    record = json.loads((auto / "import.json").read_text())
    assert record["blade"]["up"] == "auto" and np.allclose(np.abs(np.linalg.det(record["blade"]["rotation"])), 1)

    z_up = tmp_path / "z"
    render_meshes_into_layout(None, lying, z_up, up="z")
    cov = _coverage(z_up, "post_z")
    assert min(cov.values()) > 0.05  # standing: a tall post in every view
    assert json.loads((z_up / "import.json").read_text())["post_z"]["rotation"] == [[1, 0, 0], [0, 0, 1], [0, -1, 0]]


def test_cli_render_takes_up_and_check_names_slivers(lying, tmp_path, capsys):
    assert cli_main(["data", "render", "--meshes", str(lying), "--out", str(tmp_path / "d"), "--up", "auto", "--quiet"]) == 0
    assert "up" in json.loads((tmp_path / "d" / "import.json").read_text())["post_x"]
    cli_main(["data", "render", "--meshes", str(lying), "--out", str(tmp_path / "p"), "--quiet"])
    capsys.readouterr()
    assert cli_main(["data", "check", str(tmp_path / "p")]) != 0
    out = capsys.readouterr().out
    assert "blade" in out and "sliver" in out


def test_view_problems_cut_off_and_height_disagreement():
    view = np.zeros((64, 64, 4), np.uint8)
    view[20:40, 10:50, 3] = 255
    assert view_problems({"front": view, "left": view}) == []
    cut = view.copy()
    cut[20:40, 0:50, 3] = 255  # runs off the left edge
    assert any("touches the left border (cut off)" in p for p in view_problems({"front": cut}))
    short = np.zeros_like(view)
    short[30:40, 10:50, 3] = 255
    assert any("disagree in height" in p and "front 20 px" in p for p in view_problems({"front": view, "left": short}))


def test_data_tab_imports_uploaded_meshes_with_an_up_axis_and_validates_them(lying, tmp_path):
    import time

    from gradio_client import Client, handle_file

    from tests.conftest import make_roots, served_studio

    roots = make_roots(tmp_path / "studio")
    with served_studio(roots, scratch=tmp_path / "scratch") as (url, studio):
        client = Client(url, verbose=False)
        bar, _ = client.predict([handle_file(str(lying / "blade.stl"))], "../x", "auto", api_name="/import_meshes")
        assert "dataset name" in bar or "outside" in bar  # refused, nothing written
        client.predict([handle_file(str(lying / "blade.stl")), handle_file(str(lying / "post_x.stl"))], "scans",
                       "auto", api_name="/import_meshes")
        end = time.time() + 120
        while studio.runner.active() and time.time() < end:
            time.sleep(0.3)
        record = json.loads((roots["data"] / "scans" / "import.json").read_text())
        assert set(record) == {"blade", "post_x"} and record["blade"]["up"] == "auto"
        cov = _coverage(roots["data"] / "scans", "blade")
        assert cov["left"] > 0.2  # rotated: its face to the side cameras, not four slivers
