"""The teacher corpus: families, disjointness from every sample seed, labels, resumable build; the
few-scan sample (``data sample --gt N``)."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from engine.config import UserError
from engine.data.corpus import (FAMILIES, build_corpus, check_families, corpus_params, corpus_shoes, inside,
                                load_corpus, render_shoe)
from engine.data.sample_shoes import ShoeParams, build_sample
from engine.jobs import NULL_CONTEXT


def test_corpus_never_draws_a_sample_shoe():
    """Disjoint by construction (different SeedSequence entropy); checked on 10 sample seeds x 120 shoes
    against every family x 3 corpus seeds x 40 shoes: no parameter set repeats, and no corpus stream's
    first draw equals a sample stream's."""
    sample = {dataclasses.astuple(ShoeParams.sample(seed, i)) for seed in range(10) for i in range(120)}
    corpus = [corpus_params(f, s, i) for f in FAMILIES for s in range(3) for i in range(40)]
    assert not sample & {dataclasses.astuple(p) for p in corpus}
    firsts = {np.random.default_rng([s, i]).uniform() for s in range(10) for i in range(120)}
    from engine.data.corpus import CORPUS_STREAM
    assert not firsts & {np.random.default_rng([CORPUS_STREAM, k, s, i]).uniform()
                         for k in range(len(FAMILIES)) for s in range(3) for i in range(40)}


def test_families_differ_where_they_say():
    shoes = {f: [corpus_params(f, 0, i) for i in range(30)] for f in FAMILIES}
    ratio = {f: np.mean([p.upper_height / p.length for p in ps]) for f, ps in shoes.items()}
    assert ratio["boot"] > ratio["high-top"] > ratio["sneaker"] > ratio["slip-on"]
    assert min(p.heel_height for p in shoes["heel"]) >= 45
    assert min(p.sole_thickness for p in shoes["chunky"]) >= 28
    assert all(2 <= p.openings <= 4 for p in shoes["sandal"]) and all(p.openings == 0 for p in shoes["boot"])
    assert corpus_params("boot", 3, 7) == corpus_params("boot", 3, 7)  # deterministic
    assert [f for f, _ in corpus_shoes(["boot", "heel"], 4, 0)] == ["boot", "heel", "boot", "heel"]
    with pytest.raises(UserError, match="unknown shoe family"):
        check_families("boot,clog")


def test_labels_are_the_fields_sign_and_agree_with_the_mesh():
    """Far from the surface the exact field and the GT mesh (marching cubes of it) agree (>= 99 %)."""
    p = corpus_params("sandal", 0, 1)
    mesh, views = render_shoe(p, 64)
    assert views.shape == (4, 4, 64, 64) and views.dtype == torch.uint8
    rng = np.random.default_rng(0)
    pts = rng.uniform(-0.55, 0.55, (3000, 3))
    labels = inside(p, mesh.metadata["frame"], pts)
    assert 0.02 < labels.mean() < 0.5  # a thin shoe fills a few % of the padded cube
    assert (mesh.contains(pts) == labels).mean() > 0.99


def test_build_is_resumable_and_refuses_other_settings(tmp_path):
    out = tmp_path / "corpus"
    r = build_corpus(NULL_CONTEXT, out, families=["sneaker", "boot"], count=3, seed=5, image_size=32, n_query=64)
    assert r["built"] == 1 and r["parts"] == 1
    settings, paths = load_corpus(out)
    part = torch.load(paths[0], weights_only=True)
    assert part["views"].shape == (3, 4, 4, 32, 32) and part["query"].shape == (3, 64, 3)
    assert part["inside"].dtype == torch.bool and part["surface"].shape[:2] == (3, 4000)
    assert build_corpus(NULL_CONTEXT, out, families=["sneaker", "boot"], count=3, seed=5, image_size=32,
                        n_query=64)["built"] == 0
    with pytest.raises(UserError, match="other settings"):
        build_corpus(NULL_CONTEXT, out, families=["boot"], count=3, seed=5, image_size=32, n_query=64)
    paths[0].unlink()
    with pytest.raises(UserError, match="rerun `teacher corpus`"):
        load_corpus(out)
    with pytest.raises(UserError, match="no complete teacher corpus"):
        load_corpus(tmp_path / "nothing")


def test_few_scan_sample_keeps_gt_for_the_first_n(tmp_path):
    out = tmp_path / "few"
    r = build_sample(NULL_CONTEXT, out, count=5, seed=3, gt=2)
    assert r["gt"] == 2 and r["built"] == 5
    assert sorted(p.name for p in (out / "OBJs").iterdir()) == ["shoe_000.obj", "shoe_001.obj"]
    assert len(list((out / "input_images").iterdir())) == 5
    assert json.loads((out / "sample.json").read_text())["gt"] == 2
    assert build_sample(NULL_CONTEXT, out, count=5, seed=3, gt=2)["skipped"] == 5  # resumes
    with pytest.raises(UserError, match="GT for 2"):
        build_sample(NULL_CONTEXT, out, count=5, seed=3)
    with pytest.raises(UserError, match="--gt must be between"):
        build_sample(NULL_CONTEXT, tmp_path / "bad", count=5, seed=3, gt=9)
