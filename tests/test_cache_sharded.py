"""A 2-rank gloo build (torchrun, CPU) produces the same cache as one process."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from engine.cache import build_cache, load_entry, read_metadata
from engine.jobs import NULL_CONTEXT
from engine.teachers.base import TeacherSettings

ROOT = Path(__file__).resolve().parent.parent
SAME = ("status", "fingerprint", "config", "vertices", "faces", "bytes", "cd_l1", "fscore@1%", "error")


def test_two_rank_build_equals_single_process(tmp_path):
    from engine.data.sample_shoes import build_sample

    data = tmp_path / "data"
    build_sample(NULL_CONTEXT, data, count=3, seed=1)
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    build_cache(NULL_CONTEXT, data, single, settings=TeacherSettings(preset="fast"))
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "engine", "cache", "build", "--data", str(data), "--out", str(sharded), "--preset", "fast"]
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("MB written") == 1  # only rank 0 prints the totals table
    assert "entries  3: 3 ok, 0 failed" in run.stdout
    assert not list(sharded.glob("metadata.rank*.json"))  # shards merged and removed
    a, b = read_metadata(single), read_metadata(sharded)
    assert sorted(a["entries"]) == sorted(b["entries"]) == ["shoe_000", "shoe_001", "shoe_002"]
    for sid in a["entries"]:
        assert {k: a["entries"][sid][k] for k in SAME} == {k: b["entries"][sid][k] for k in SAME}
        ea, eb = load_entry(single, sid), load_entry(sharded, sid)
        assert set(ea) == set(eb)
        for key in ea:  # tensors bit for bit; the entry's shoe ID and fingerprint strings equal
            same = torch.equal(ea[key], eb[key]) if torch.is_tensor(ea[key]) else ea[key] == eb[key]
            assert same, (sid, key)
    assert a["config"] == b["config"] and a["teacher_settings"] == b["teacher_settings"]
    again = build_cache(NULL_CONTEXT, data, sharded, settings=TeacherSettings(preset="fast"))
    assert again["skipped"] == 3  # the merged metadata is a valid cache for a single-process run
