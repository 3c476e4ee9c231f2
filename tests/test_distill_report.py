"""The distillation report and the one student + baseline workflow (CLI ``train --with-baseline``), on a
tiny pair of runs; a stop during the baseline loses nothing on resume."""
from __future__ import annotations

import json

import pytest
import torch

from engine import runs
from engine.cli import CliProgress, main
from engine.evaluate.distill_report import build_report, reach_epoch, val_curve, verdict
from engine.jobs import JobCancelled
from engine.workflows import distill_with_baseline

torch.set_num_threads(1)
STUDENT = {"width": 4, "hidden": 16, "blocks": 1, "sampled": 8, "image_size": 32}


def test_pure_parts():
    assert reach_epoch([[1, 0.05], [2, 0.03], [3, 0.01]], 0.03) == 2
    assert reach_epoch([[1, 0.05]], 0.01) is None
    assert verdict(0.008, 0.010).startswith("distillation helped: -20.0 % CD-L1 vs GT-only")
    assert verdict(0.012, 0.010).startswith("distillation did not help: +20.0 %")


@pytest.fixture(scope="module")
def pair_data(tiny_vh):
    return tiny_vh


def _args(root, runs_dir, *extra):
    return ["train", "--data", str(root / "data"), "--cache", str(root / "cache"), "--epochs", "2",
            "--batch-size", "2", "--seed", "3", "--out-runs", str(runs_dir), "--config", str(root / "cfg.json"),
            "--quiet", *extra]


def test_with_baseline_trains_both_evaluates_and_reports(pair_data, tmp_path, capsys):
    (pair_data / "cfg.json").write_text(json.dumps({"n_points": 400, "target_points": 400, "val_fraction": 0.4,
                                                    "student": STUDENT}))
    assert main(_args(pair_data, tmp_path, "--with-baseline", "--run-id", "pair1")) == 0
    out = capsys.readouterr().out
    assert "distillation " in out and "baseline pair1-baseline" in out
    report = json.loads((tmp_path / "pair1" / "distillation.json").read_text())
    assert [e for e, _ in report["curves"]["student"]] == [1, 2] == [e for e, _ in report["curves"]["baseline"]]
    assert set(report["table"]) == {"student", "baseline", "teacher"}
    assert report["table"]["student"]["cd_l1"] > 0 and report["teacher_cd_l1"] > 0
    assert "Normalisation" in (tmp_path / "pair1" / "distillation.md").read_text()
    assert runs.load_run("pair1-baseline", tmp_path)["status"]["state"] == "succeeded"
    assert runs.load_run("pair1", tmp_path)["config"]["with_baseline"] is True


def test_stop_during_the_baseline_then_resume_keeps_both(pair_data, tmp_path):
    (pair_data / "cfg.json").write_text(json.dumps({"n_points": 400, "target_points": 400, "val_fraction": 0.4,
                                                    "student": STUDENT}))
    cfg = {"data": str(pair_data / "data"), "cache": str(pair_data / "cache"), "epochs": 2, "batch_size": 2,
           "seed": 3, "n_points": 400, "target_points": 400, "val_fraction": 0.4, "student": STUDENT}
    run = runs.create_run("train3d", {**cfg, "with_baseline": True}, root=tmp_path, run_id="pair2")

    class StopInBaseline(CliProgress):
        def cancelled(self):
            return "2 of 2" in getattr(self, "last", "")

        def progress(self, fraction, message=""):
            self.last = message
            super().progress(fraction, message)

        def check_cancelled(self):
            if self.cancelled():
                raise JobCancelled("stopped by the test")

    with pytest.raises(JobCancelled):
        distill_with_baseline(StopInBaseline(quiet=True, run_dir=run), cfg)
    assert runs.load_run("pair2-baseline", tmp_path)["status"]["state"] == "cancelled"
    student_history = val_curve(run)
    assert len(student_history) == 2  # the student had finished
    assert main(_args(pair_data, tmp_path, "--resume", "pair2")) == 0  # resumes the pair, not only the student
    report = json.loads((run / "distillation.json").read_text())
    assert len(report["curves"]["baseline"]) == 2 and val_curve(run) == student_history  # not retrained
    with pytest.raises(Exception, match="no baseline"):
        build_report(run, run, {"summary": {"student": report["table"]["student"]}})
