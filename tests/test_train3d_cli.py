"""3D training from the command line: train / evaluate, 2-process DDP via torchrun, SIGKILL while saving."""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_train3d_run import TINY, base_cfg, tiny  # noqa: F401  (module fixture reused)

from engine import runs
from engine.cli import train as cli_train
from engine.config import UserError
from engine.data.layout import list_shoes, load_mesh
from engine.data.views import load_views_tensor
from engine.evaluate.mesh_eval import METRICS, evaluate_run, predict
from engine.geometry.metrics import mesh_metrics
from engine.students.checkpoint import load_checkpoint, load_student

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parent.parent


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="engine")
    cli_train.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def only_run(root: Path, exclude=()) -> Path:
    found = [p for p in root.iterdir() if p.is_dir() and p.name not in exclude]
    assert len(found) == 1, found
    return found[0]


def test_cli_train_baseline_evaluate_and_the_numbers_equal_the_geometry_functions(tiny, tmp_path, capsys):  # noqa: F811
    cfg_file = tmp_path / "cfg.json"
    cfg = base_cfg(tiny, epochs=1)
    cfg_file.write_text(json.dumps({k: v for k, v in cfg.items() if k not in ("data", "cache")}))
    out = tmp_path / "runs"
    common = ["--data", cfg["data"], "--cache", cfg["cache"], "--config", str(cfg_file), "--out-runs", str(out), "--quiet"]
    assert run_cli(["train", *common, "--epochs", "2", "--lr", "0.002"]) == 0
    run = only_run(out)
    assert runs.load_run(run.name, out)["status"]["state"] == "succeeded"
    saved = json.loads((run / "config.json").read_text())
    assert saved["kind"] == "train3d" and saved["epochs"] == 2 and saved["lr"] == 0.002
    assert run_cli(["train", *common, "--baseline"]) == 0
    base = only_run(out, exclude={run.name})
    assert run_cli(["evaluate", "--run", run.name, "--baseline", base.name, "--runs", str(out)]) == 0  # not quiet: logs on
    captured = capsys.readouterr()
    printed = captured.out
    assert "student" in printed and "baseline" in printed and "teacher" in printed and "longest side 1" in printed
    table_line = next(line for line in printed.splitlines() if "student" in line)
    assert (captured.out + captured.err).count(table_line) == 1  # the table once, even with stderr merged
    report = json.loads((run / "evaluation.json").read_text())
    assert (run / "evaluation.md").read_text().startswith(f"# Evaluation of {run.name}")
    assert report["val_shoes"] == 2 and report["teacher_shoes"] == 2
    student, _ = load_student(run / "checkpoints" / "best.pt")
    baseline, _ = load_student(base / "checkpoints" / "best.pt")
    cdl1 = [r["student"]["cd_l1"] for r in report["rows"]]
    assert cdl1 == sorted(cdl1, reverse=True)  # worst first
    data = Path(cfg["data"])
    for row in report["rows"]:
        shoe = next(s for s in list_shoes(data) if s.id == row["id"])
        gv, gf = load_mesh(shoe.obj_path)
        views = load_views_tensor(shoe, TINY["image_size"])
        want_s = mesh_metrics(predict(student, views), student.faces, gv, gf, n_points=10000, seed=0)
        want_b = mesh_metrics(predict(baseline, views), baseline.faces, gv, gf, n_points=10000, seed=0)
        entry = torch.load(Path(cfg["cache"]) / f"{row['id']}.pt", weights_only=True)
        want_t = mesh_metrics(entry["vertices"], entry["faces"], gv, gf, n_points=10000, seed=0)
        for key in METRICS:
            assert row["student"][key] == pytest.approx(want_s[key], rel=1e-9)
            assert row["baseline"][key] == pytest.approx(want_b[key], rel=1e-9)
            assert row["teacher"][key] == pytest.approx(want_t[key], rel=1e-9)
    mean = sum(r["student"]["cd_l1"] for r in report["rows"]) / 2
    assert report["summary"]["student"]["cd_l1"] == pytest.approx(mean)
    teacher_mean = report["summary"]["teacher"]["cd_l1"]
    assert report["ratios"]["student_vs_teacher_cd_l1"] == pytest.approx(mean / teacher_mean)
    with pytest.raises(UserError, match="not a baseline run"):
        evaluate_run(None, run, baseline_run=run)
    with pytest.raises(UserError, match="^lr must be"):
        run_cli(["train", *common, "--lr", "-1"])


def test_cli_resume_continues_a_run(tiny, tmp_path):  # noqa: F811
    cfg = base_cfg(tiny, epochs=1)
    out = tmp_path / "runs"
    assert run_cli(["train", "--data", cfg["data"], "--cache", cfg["cache"], "--out-runs", str(out), "--quiet",
                    "--config", str(_write(tmp_path / "c.json", cfg))]) == 0
    run = only_run(out)
    assert run_cli(["train", "--resume", run.name, "--epochs", "2", "--out-runs", str(out), "--quiet"]) == 0
    assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] == 2
    assert [r["epoch"] for r in runs.read_history(run) if r["scope"] == "epoch"] == [1, 2]
    assert json.loads((run / "config.json").read_text())["epochs"] == 2
    with pytest.raises(UserError, match="no run 'nope'"):
        run_cli(["train", "--resume", "nope", "--out-runs", str(out)])


def test_a_resume_keeps_the_student_it_was_trained_with_when_config_json_names_part_of_it(tiny, tmp_path):  # noqa: F811
    """A studio run's config.json names only the student's width; resuming it must rebuild the architecture
    in its checkpoint (hidden 16, one block, 32 px: not today's defaults), for the run alone and for a pair."""
    out = tmp_path / "runs"
    cfg = {**base_cfg(tiny, epochs=1), "student": {**TINY, "fine_hidden": 8, "fine_maps": 2}}
    for pair in ([], ["--with-baseline"]):
        assert run_cli(["train", "--out-runs", str(out), "--quiet", *pair, "--config",
                        str(_write(tmp_path / "c.json", cfg))]) == 0
        run = max((p for p in out.iterdir() if not p.name.endswith("-baseline")), key=lambda p: p.stat().st_mtime)
        trained = load_checkpoint(run / "checkpoints" / "last.pt")["student_config"]
        saved = json.loads((run / "config.json").read_text())
        (run / "config.json").write_text(json.dumps({**saved, "student": {"width": TINY["width"]}}))
        assert run_cli(["train", "--resume", run.name, "--epochs", "2", "--out-runs", str(out), "--quiet"]) == 0
        ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
        assert ckpt["epoch"] == 2 and ckpt["student_config"] == trained


def _write(path: Path, cfg: dict) -> Path:
    path.write_text(json.dumps(cfg))
    return path


DDP_SCRIPT = """
import argparse, sys
sys.path.insert(0, {root!r})
import torch
torch.set_num_threads(1)
from engine.cli import train
parser = argparse.ArgumentParser()
train.register(parser.add_subparsers(dest="command", required=True))
args = parser.parse_args(sys.argv[1:])
sys.exit(args.func(args))
"""


def test_two_process_ddp_run_finishes_and_its_rank0_checkpoint_loads(tiny, tmp_path):  # noqa: F811
    script = tmp_path / "entry.py"
    script.write_text(DDP_SCRIPT.format(root=str(ROOT)))
    cfg = base_cfg(tiny, epochs=2, batch_size=1)
    out = tmp_path / "runs"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script),
           "train", "--data", cfg["data"], "--cache", cfg["cache"], "--config", str(_write(tmp_path / "c.json", cfg)),
           "--out-runs", str(out), "--quiet"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = only_run(out)  # only rank 0 created a folder
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ckpt["epoch"] == 2 and "module." not in next(iter(ckpt["state_dict"]))
    model, _ = load_student(run / "checkpoints" / "best.pt")
    assert model(torch.rand(1, 4, 4, 32, 32)).shape == (1, 2562, 3)
    hist = runs.read_history(run)
    # 3 training shoes over 2 ranks (DistributedSampler pads to 4): 2 steps per rank and epoch, logged once
    assert [(r["epoch"], r["step"]) for r in hist if r["scope"] == "step"] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert all(isinstance(r["val_cd_l1"], float) for r in hist if r["scope"] == "epoch")


SAVE_LOOP = """
import sys
sys.path.insert(0, {root!r})
import torch
from engine.students.mesh_student import MeshStudent, StudentConfig
from engine.students.checkpoint import save_checkpoint
torch.manual_seed(0)
model = MeshStudent(StudentConfig(hidden=192, blocks=6, image_size=32))
opt = torch.optim.Adam(model.parameters())
model(torch.rand(1, 4, 4, 32, 32)).sum().backward()
opt.step()
epoch = 0
while True:
    epoch += 1
    save_checkpoint({path!r}, model, opt, {{"lr": 0.001}}, epoch, 0.5, epoch, {{"train": [], "val": []}})
    print(epoch, flush=True)
"""


def test_sigkill_during_a_checkpoint_write_leaves_the_previous_checkpoint_loadable(tmp_path):
    path = tmp_path / "checkpoints" / "last.pt"
    script = tmp_path / "save_loop.py"
    script.write_text(SAVE_LOOP.format(root=str(ROOT), path=str(path)))
    interrupted = 0
    for attempt in range(8):
        proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
        try:
            assert proc.stdout.readline().strip() == "1"  # at least one complete checkpoint
            time.sleep(0.01 + 0.03 * attempt)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        temps = list(path.parent.glob(".last.pt.*.tmp"))
        interrupted += bool(temps)
        ckpt = load_checkpoint(path)  # the previous complete file, never half of one
        assert ckpt["epoch"] >= 1 and ckpt["best_val"] == 0.5
        model, _ = load_student(path)
        for t in temps:
            t.unlink()
        if interrupted:
            break
    assert interrupted >= 1, "no kill landed inside a write; the test proved nothing"


def test_cli_student_size_fast_is_stored_with_the_run_and_the_config_files_fields_win(tiny, tmp_path):  # noqa: F811
    out = tmp_path / "runs"
    cfg = {**base_cfg(tiny, epochs=1), "student": {"width": 4}}
    assert run_cli(["train", "--out-runs", str(out), "--quiet", "--student", "fast", "--config",
                    str(_write(tmp_path / "c.json", cfg))]) == 0
    student = load_checkpoint(only_run(out) / "checkpoints" / "last.pt")["student_config"]
    assert (student["width"], student["hidden"], student["image_size"], student["fine_maps"]) == (4, 32, 80, 1)
    assert json.loads((only_run(out) / "config.json").read_text())["student"] == student
    with pytest.raises(SystemExit):
        run_cli(["train", "--student", "huge"])


def test_cli_student_size_fast_trains_twice_the_epochs_unless_told_otherwise(tmp_path):
    from engine.cli import build_parser
    from engine.cli.train import _config_from_args

    def config(*flags, file=None):
        args = build_parser().parse_args(["train", "--data", str(tmp_path), *flags]
                                         + (["--config", str(_write(tmp_path / "c.json", file))] if file else []))
        return _config_from_args(args)

    assert config("--student", "fast")["epochs"] == 100 and "epochs" not in config()  # the default: 50 (DEFAULTS)
    assert config("--student", "fast", "--epochs", "7")["epochs"] == 7
    assert config("--student", "fast", file={"epochs": 9})["epochs"] == 9
    assert config("--student", "default")["epochs"] == 50
