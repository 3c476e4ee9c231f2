"""``teacher corpus`` / ``teacher pretrain`` through the CLI in subprocesses: a SIGKILL mid-run, then
``--resume``, ends with the weights of an uninterrupted run; a bad corpus is one error line."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT, TINY_TEACHER


def _cli(*args, env=None, **kw):
    return subprocess.Popen([sys.executable, "-m", "engine", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    base = tmp_path_factory.mktemp("pretrain-cli")
    out = subprocess.run([sys.executable, "-m", "engine", "teacher", "corpus", "--out", str(base / "corpus"),
                          "--count", "6", "--seed", "4", "--families", "sneaker,heel", "--image-size", "64",
                          "--queries", "512", "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    (base / "cfg.json").write_text(json.dumps({"model": TINY_TEACHER, "queries": 256, "val_shoes": 2,
                                               "batch_size": 2, "val_resolution": 16}))
    return base


def test_kill_then_resume_gives_the_uninterrupted_weights(corpus, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DS_RUNS": str(tmp_path / "runs")}
    common = ["teacher", "pretrain", "--corpus", str(corpus / "corpus"), "--config", str(corpus / "cfg.json"),
              "--epochs", "12", "--quiet"]
    whole = _cli(*common, "--out", str(tmp_path / "whole.pt"), "--run-id", "whole", env=env)
    assert whole.wait(timeout=600) == 0, whole.stderr.read()
    killed = _cli(*common, "--out", str(tmp_path / "killed.pt"), "--run-id", "killed", env=env)
    last = tmp_path / "runs" / "killed" / "checkpoints" / "last.pt"
    deadline = time.time() + 300
    while not last.is_file() and time.time() < deadline and killed.poll() is None:
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=60)
    assert last.is_file() and not (tmp_path / "killed.pt").exists(), "the kill came too late to test anything"
    epoch = torch.load(last, weights_only=True)["epoch"]
    assert 1 <= epoch < 12
    resumed = _cli("teacher", "pretrain", "--resume", "killed", "--quiet", env=env)
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    a = torch.load(tmp_path / "whole.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "killed.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    epochs = [json.loads(line)["epoch"] for line in (tmp_path / "runs" / "killed" / "history.jsonl").read_text().splitlines()
              if json.loads(line).get("scope") == "epoch"]
    assert epochs[-1] == 12


def test_pretrain_without_a_corpus_is_one_error_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "engine", "teacher", "pretrain", "--corpus", str(tmp_path / "none"),
                          "--out", str(tmp_path / "w.pt"), "--quiet"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, env={**os.environ, "DS_RUNS": str(tmp_path / "runs")})
    assert out.returncode == 2
    assert out.stderr.strip().startswith("error:") and "teacher corpus" in out.stderr and "\n" not in out.stderr.strip()
