"""TinyVAE distillation end to end on a tiny Fashion-MNIST-format dataset: checkpoints, history, report,
the deployment snippet, determinism, resume, cancel, bad configs, running as a job."""
import gzip
import json

import numpy as np
import pytest
import torch

from engine import runs
from engine.config import UserError
from engine import workflows
from engine.evaluate import vae_report
from engine.jobs import JobCancelled, JobRunner
from engine.students.vgg import bundled_hed_weights
from tests.conftest import Recording
from engine.train import vae as T

PERCEPTUAL = 0.1 if bundled_hed_weights() else 0.0  # the real VGG when its weights are installed
TINY = {"limit": 32, "val_images": 8, "batch_size": 16, "teacher_epochs": 1, "epochs": 1, "finetune_epochs": 1,
        "checkpoint_every": 1, "eval_limit": 16, "perceptual_weight": PERCEPTUAL}


def _write_idx(path, images):
    n, r, c = images.shape
    head = b"\x00\x00\x08\x03" + b"".join(v.to_bytes(4, "big") for v in (n, r, c))
    path.write_bytes(gzip.compress(head + images.astype(np.uint8).tobytes()))


def _fake_fashion_mnist(folder):
    """Blobs of varying size and brightness on black: 48 train, 16 test images (28×28)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:28, :28]
    for name, n in (("train", 48), ("t10k", 16)):
        imgs = []
        for _ in range(n):
            cy, cx, r = rng.uniform(8, 20), rng.uniform(8, 20), rng.uniform(3, 9)
            imgs.append(np.where((yy - cy) ** 2 + (xx - cx) ** 2 < r * r, rng.uniform(120, 255), 0))
        _write_idx(folder / f"{name}-images-idx3-ubyte.gz", np.stack(imgs))


class RecordingContext(Recording):
    def __init__(self, cancel_after=None):
        super().__init__()
        self.checks, self.cancel_after = 0, cancel_after

    def check_cancelled(self):
        self.checks += 1
        if self.cancel_after is not None and self.checks > self.cancel_after:
            raise JobCancelled("cancelled by the user")


@pytest.fixture(scope="module")
def fmnist(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fmnist")
    _fake_fashion_mnist(folder)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DS_FASHION_MNIST", str(folder))
        mp.setattr(vae_report, "SPEED_REPEATS", 1)
        mp.setattr(vae_report, "SPEED_BATCH", 8)
        yield folder


@pytest.fixture(scope="module")
def tiny_run(fmnist, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    ctx = RecordingContext()
    result = workflows.distil_and_report(ctx, {**TINY, "checkpoint_dir": str(out)})
    return out, ctx, result


def test_run_writes_checkpoints_history_grid_and_report(tiny_run):
    out, ctx, result = tiny_run
    for name in ("tinyvae_best.pth", "tinyvae_last.pth", "teacher.pth", "tinyvae_teacher_epoch_001.pth",
                 "tinyvae_distill_epoch_001.pth", "tinyvae_finetune_epoch_001.pth", "recon_grid.png",
                 "report.json", "report.md", "onnx/student_encoder.onnx", "onnx/student_decoder.onnx"):
        assert (out / name).is_file(), name
    history = runs.read_history(out)
    assert history == [{"time": h["time"], **r} for h, r in zip(history, ctx.records)]
    batches = [r for r in history if r["scope"] == "batch"]
    epochs = [r for r in history if r["scope"] == "epoch"]
    assert [(r["phase"], r["epoch"]) for r in epochs] == [("teacher", 1), ("distill", 1), ("finetune", 1)]
    assert len(batches) == 3 * 2  # 32 images / batch 16, three phases
    distill = [r for r in batches if r["phase"] == "distill"]
    expected = {"recon", "kl", "latent", "output", "loss"} | ({"perceptual"} if PERCEPTUAL else set())
    assert expected <= set(distill[0]) and {"step", "epoch", "lr", "seconds"} <= set(distill[0])
    assert all(np.isfinite(r["loss"]) for r in batches)
    assert {"val_loss", "val_recon", "val_select", "train_loss"} <= set(epochs[1])
    report = json.loads((out / "report.json").read_text())
    assert report == json.loads(json.dumps(result["report"]))
    assert report["params"]["ratio"] > 9
    assert report["images"] == 16 and report["split"] == "test"
    q, s = report["quality"], report["speed"]
    assert 0 < q["teacher_psnr"] < 100 and 0 < q["student_psnr"] < 100 and -1 <= q["student_ssim"] <= 1
    assert 0 <= q["latent_cka"] <= 1
    assert max(v for m in s["onnx"].values() for k, v in m.items() if k.endswith("err")) < 1e-4
    assert s["teacher_ort_ms"] > 0 and s["student_ort_ms"] > 0
    assert "PSNR" in (out / "report.md").read_text()


def test_deployment_snippet_runs_against_saved_checkpoint(tiny_run):
    out = tiny_run[0]
    image = torch.rand(2, 3, 32, 32)
    # --- the seed's snippet, only the import path changed ---
    from engine.students.vae import MinimalVAE

    model = MinimalVAE(latent_dim=128, base_channels=32)
    checkpoint = torch.load(str(out / "tinyvae_best.pth"), weights_only=True)
    model.load_state_dict(checkpoint["student_state_dict"])
    model.eval()
    with torch.no_grad():
        latent = model.encode(image)
        reconstruction = model.decode(latent)
    # ---
    assert latent.shape == (2, 128, 4, 4) and reconstruction.shape == (2, 3, 32, 32)
    assert set(checkpoint) >= {"student_state_dict", "teacher_state_dict", "projector_state_dict", "config"}
    assert isinstance(checkpoint["config"], dict)
    torch.load(str(out / "tinyvae_best.pth"), weights_only=True)  # plain data only


def test_same_config_and_seed_same_numbers_and_resume(fmnist, tmp_path):
    cfg = {**TINY, "finetune_epochs": 0, "report": False, "perceptual_weight": 0.0, "checkpoint_every": 5}
    straight, part, resumed = RecordingContext(), RecordingContext(), RecordingContext()
    T.run_vae_distillation(straight, {**cfg, "epochs": 2, "checkpoint_dir": str(tmp_path / "a")})
    T.run_vae_distillation(part, {**cfg, "epochs": 1, "checkpoint_dir": str(tmp_path / "c")})
    strip = runs.without_timings
    assert strip(part.records) == strip(straight.records[:len(part.records)])  # same config + seed, same numbers
    T.run_vae_distillation(resumed, {**cfg, "epochs": 2, "resume": True, "checkpoint_dir": str(tmp_path / "c")})
    assert [r["phase"] for r in resumed.records] == ["distill"] * 3  # two batches + the epoch record
    assert strip(part.records + resumed.records) == strip(straight.records)
    a = torch.load(tmp_path / "a" / "tinyvae_last.pth", weights_only=True)["student_state_dict"]
    c = torch.load(tmp_path / "c" / "tinyvae_last.pth", weights_only=True)["student_state_dict"]
    assert all(torch.equal(a[k], c[k]) for k in a)
    with pytest.raises(UserError, match="resume: seed"):
        T.run_vae_distillation(None, {**cfg, "seed": 5, "resume": True, "checkpoint_dir": str(tmp_path / "c")})
    with pytest.raises(UserError, match="no tinyvae_last.pth"):
        T.run_vae_distillation(None, {**cfg, "resume": True, "checkpoint_dir": str(tmp_path / "empty")})


def test_cancel_stops_at_the_next_step(fmnist, tmp_path):
    ctx = RecordingContext(cancel_after=3)  # teacher epoch (2 steps) completes, distill stops at step 2
    with pytest.raises(JobCancelled):
        T.run_vae_distillation(ctx, {**TINY, "report": False, "checkpoint_dir": str(tmp_path)})
    assert [r["phase"] for r in ctx.records if r["scope"] == "batch"] == ["teacher", "teacher", "distill"]
    last = torch.load(tmp_path / "tinyvae_last.pth", weights_only=True)
    assert (last["phase"], last["epoch"]) == ("teacher", 1)


def test_teacher_checkpoint_skips_pretraining_and_wrong_models_are_rejected(tiny_run, tmp_path):
    out = tiny_run[0]
    ctx = RecordingContext()
    T.run_vae_distillation(ctx, {**TINY, "report": False, "finetune_epochs": 0, "teacher_epochs": 0,
                                 "teacher_checkpoint": str(out / "teacher.pth"), "checkpoint_dir": str(tmp_path)})
    assert {r["phase"] for r in ctx.records} == {"distill"}
    with pytest.raises(UserError, match="teacher_state_dict does not fit"):
        T.run_vae_distillation(None, {**TINY, "teacher_latent_dim": 64, "teacher_checkpoint": str(out / "teacher.pth"),
                                      "checkpoint_dir": str(tmp_path / "x")})
    with pytest.raises(UserError, match="not a TinyVAE distillation checkpoint"):
        T.load_checkpoint(out / "teacher.pth")
    ckpt = torch.load(out / "tinyvae_best.pth", weights_only=True)
    ckpt["config"]["student_base_channels"] = 16  # the stored student no longer fits its config
    torch.save(ckpt, tmp_path / "wrong.pth")
    with pytest.raises(UserError, match="student_state_dict does not fit MinimalVAE"):
        T.load_checkpoint(tmp_path / "wrong.pth")
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(UserError, match="not a TinyVAE distillation checkpoint"):
        T.load_checkpoint(tmp_path / "list.pth")


@pytest.mark.parametrize("bad, match", [
    ({"learnin_rate": 0.1}, "unknown config key 'learnin_rate'"),
    ({"learning_rate": 0}, "learning_rate"), ({"batch_size": 0}, "batch_size"), ({"batch_size": 2.5}, "batch_size"),
    ({"epochs": -1}, "epochs"), ({"kl_weight": -0.1}, "kl_weight"), ({"temperature": 0}, "temperature"),
    ({"recon_weight": float("nan")}, "recon_weight"), ({"recon_weight": "0.3"}, "recon_weight"),
    ({"dataset": "mnist"}, "dataset"), ({"device": "tpu"}, "device"), ({"resume": "yes"}, "resume"),
    ({"limit": 0}, "limit"), ({"teacher_epochs": True}, "teacher_epochs"), ({"checkpoint_dir": ""}, "checkpoint_dir"),
    ({"teacher_epochs": 0}, "teacher_checkpoint"), ({"epochs": 0, "finetune_epochs": 0}, "nothing would train"),
])
def test_bad_config_rejected_by_name(bad, match):
    with pytest.raises(UserError, match=match):
        T.validate_config(bad)


def test_config_keys_are_the_seeds_plus_extras():
    seed_keys = {"dataset", "batch_size", "epochs", "learning_rate", "teacher_latent_dim", "student_latent_dim",
                 "recon_weight", "kl_weight", "distill_latent_weight", "distill_recon_weight", "perceptual_weight",
                 "temperature", "checkpoint_dir"}
    assert set(T.SEED_DEFAULTS) == seed_keys and not seed_keys & set(T.EXTRA_DEFAULTS)
    cfg = T.validate_config({"learning_rate": 1})
    assert cfg["learning_rate"] == 1.0 and cfg["temperature"] == 3.0 and cfg["recon_weight"] == 0.3


def test_runs_as_a_job_in_its_run_folder(fmnist, tmp_path):
    runner = JobRunner(runs_root=tmp_path)
    cfg = {**TINY, "finetune_epochs": 0, "report": False, "perceptual_weight": 0.0}
    job_id = runner.submit(T.run_vae_distillation, kind="vae", config=cfg, **cfg)
    snap = runner.wait(job_id, timeout=300)
    assert snap["state"] == "succeeded", snap["error"]
    run = runs.load_run(job_id, tmp_path)
    assert run["config"]["epochs"] == 1 and (tmp_path / job_id / "tinyvae_best.pth").is_file()
    assert (tmp_path / job_id / "recon_grid.png").is_file()
    assert {r["scope"] for r in run["history"]} == {"batch", "epoch"}
    assert runner.result(job_id)["output_dir"] == str(tmp_path / job_id)
