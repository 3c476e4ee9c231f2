"""bench/bench_distill.py's bookkeeping: which finished run it may reuse, and its run names (issue 17's size
comparisons train a size and a seed in runs of their own)."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import bench_distill  # noqa: E402

from engine.students.checkpoint import save_checkpoint  # noqa: E402
from engine.students.mesh_student import MeshStudent, StudentConfig  # noqa: E402
from engine.train.distill_config import STUDENT_PRESETS  # noqa: E402


def test_a_run_is_reused_only_for_the_student_its_checkpoint_trained(tmp_path):
    """A config.json written when the default student was another may name no student at all; the
    checkpoint's ``student_config`` is what that run trained."""
    run = tmp_path / "runs" / "sample-points"
    fast = MeshStudent(StudentConfig(**STUDENT_PRESETS["fast"]))
    split = {"train": [], "val": []}
    save_checkpoint(run / "checkpoints" / "last.pt", fast, None, {"student": {}}, 50, 0.01, 50, split)
    saved = bench_distill.trained_student(run)
    assert bench_distill.same_student(saved, STUDENT_PRESETS["fast"])
    assert not bench_distill.same_student(saved, {})  # not the default student, whatever config.json says
    assert not bench_distill.same_student(bench_distill.trained_student(tmp_path / "none"), {})  # no checkpoint
    (run / "evaluation.json").write_text('{"summary": {"student": {"cd_l1": 0.0102}}}')
    assert bench_distill.default_cd_l1(tmp_path, "sample", "points") is None  # so no default figure from it
    default = MeshStudent(StudentConfig())
    save_checkpoint(run / "checkpoints" / "last.pt", default, None, {"student": {}}, 50, 0.01, 50, split)
    assert bench_distill.default_cd_l1(tmp_path, "sample", "points") == 0.0102


def test_run_names_keep_sizes_and_seeds_apart():
    names = {bench_distill.run_id("sample", "points"), bench_distill.run_id("sample", "points", "fast"),
             bench_distill.run_id("sample", "points", seed=1), bench_distill.run_id("sample", "points", "fast", 1),
             bench_distill.run_id("sample", "points+feat"), bench_distill.run_id("sample", "points", "fast", 1, 100),
             bench_distill.run_id("fewscan", "points", "fast", 0, 80), bench_distill.run_id("sample", "points", epochs=50)}
    assert names == {"sample-points", "sample-points-fast", "sample-points-s1", "sample-points-fast-s1", "sample-feat",
                     "sample-points-fast-e100-s1", "fewscan-points-fast-e80"}  # the set's own epochs: no suffix


def test_a_size_trained_longer_is_compared_with_todays_default_and_the_default_trained_as_long(tmp_path):
    default = MeshStudent(StudentConfig())
    for name, cd in (("sample-points-s1", 0.00939), ("sample-points-e100-s1", 0.00850)):
        run = tmp_path / "runs" / name
        save_checkpoint(run / "checkpoints" / "last.pt", default, None, {"student": {}}, 50, 0.01, 50,
                        {"train": [], "val": []})
        (run / "evaluation.json").write_text('{"summary": {"student": {"cd_l1": %s}}}' % cd)
    results = {"sample": {"arms": {"points": {"cd_l1": 0.00800, "f1": 0.77}}, "seed": 1, "epochs": 100}}
    row = bench_distill.size_table(tmp_path, results, "fast")[2]
    assert row.split(" | ")[2:] == ["100 (default 50)", "0.00800", "0.770", "0.00939", "0.852", "PASS", "0.00850 |"]
