"""``python -m engine data check|sample|render``: output and exit codes."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import trimesh

from engine.cli import main

REPO = Path(__file__).resolve().parents[1]


def test_sample_then_check_exit_codes(tmp_path, capsys):
    out = tmp_path / "sample"
    assert main(["data", "sample", "--count", "2", "--seed", "3", "--out", str(out), "--quiet"]) == 0
    assert "2 built" in capsys.readouterr().out
    assert main(["data", "check", str(out)]) == 0
    text = capsys.readouterr().out
    assert "shoe_000" in text and "shoe_001" in text and "2 shoes: 2 ok, 0 photo-only, 0 with problems" in text

    (out / "OBJs" / "shoe_001.obj").write_bytes(b"")
    (out / "input_images" / "shoe_000" / "back.png").unlink()
    assert main(["data", "check", str(out)]) == 1
    text = capsys.readouterr().out
    assert "missing views: back.png" in text and "shoe_001.obj: empty file" in text
    assert "2 with problems" in text

    assert main(["data", "check", str(tmp_path / "nowhere")]) == 2
    assert "error:" in capsys.readouterr().err
    # the other seed is refused for an existing sample folder (a UserError: exit 2)
    assert main(["data", "sample", "--count", "2", "--seed", "4", "--out", str(out), "--quiet"]) == 2


def test_render_command(tmp_path, capsys):
    meshes = tmp_path / "meshes"
    meshes.mkdir()
    trimesh.creation.box().export(meshes / "a.stl")
    assert main(["data", "render", "--meshes", str(meshes), "--out", str(tmp_path / "ds"), "--quiet"]) == 0
    assert "1 of 1 meshes rendered" in capsys.readouterr().out
    (meshes / "b.ply").write_bytes(b"ply\nformat nonsense\n")
    assert main(["data", "render", "--meshes", str(meshes), "--out", str(tmp_path / "ds"), "--quiet"]) == 1
    assert "skipped" in capsys.readouterr().out


def test_module_entry_point(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "engine", "data", "check", str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "no input_images" in proc.stderr
