"""Pure parts of 3D distillation: alpha schedules, per-shoe weights, the loss mix, config validation."""
from __future__ import annotations

import pytest
import torch

from engine.config import UserError
from engine.geometry.chamfer import PointTree, chamfer_distance
from engine.train.distill_config import DEFAULTS, resume_mismatch, validate_config
from engine.train.distill_loss import masked_chamfer, mix_chamfer
from engine.train.schedules import SCHEDULES, alpha_at, item_alphas, resolve_schedule, training_progress

torch.set_num_threads(1)


def test_default_schedule_over_50_epochs_runs_from_090_to_030_monotone():
    start, end = resolve_schedule("default")
    alphas = [alpha_at(e, 50, start, end) for e in range(1, 51)]
    assert alphas[0] == pytest.approx(0.90, abs=1e-12)
    assert alphas[-1] == 0.30  # exactly the end value
    assert all(a > b for a, b in zip(alphas, alphas[1:]))  # strictly decreasing
    assert all(0.3 <= a <= 0.9 for a in alphas)
    assert alphas[24] == pytest.approx(0.9 - 0.6 * 24 / 49)  # linear in progress


@pytest.mark.parametrize("name,ends", [("conservative", (0.95, 0.5)), ("aggressive", (0.8, 0.2)), ("default", (0.9, 0.3))])
def test_named_schedules_hit_their_ends_and_stay_within_0_1(name, ends):
    start, end = resolve_schedule(name)
    assert (start, end) == ends == SCHEDULES[name]
    assert alpha_at(1, 30, start, end) == start and alpha_at(30, 30, start, end) == end
    assert all(0 <= alpha_at(e, 30, start, end) <= 1 for e in range(1, 31))


def test_custom_schedule_and_its_errors():
    assert resolve_schedule("custom", 0.7, 0.1) == (0.7, 0.1)
    assert alpha_at(1, 1, 0.7, 0.1) == 0.7  # a one-epoch run uses the start value
    assert training_progress(1, 1) == 0.0
    with pytest.raises(UserError, match="alpha_start and alpha_end"):
        resolve_schedule("custom", 0.7)
    with pytest.raises(UserError, match="alpha_end"):
        resolve_schedule("custom", 0.7, 1.2)
    with pytest.raises(UserError, match="schedule"):
        resolve_schedule("linear")
    with pytest.raises(ValueError):
        training_progress(0, 10)


def test_item_alphas_photo_only_is_teacher_alone_and_failed_teacher_is_gt_alone():
    has_t = torch.tensor([True, True, False])
    has_g = torch.tensor([True, False, True])
    assert item_alphas(0.6, has_t, has_g).tolist() == pytest.approx([0.6, 1.0, 0.0])
    with pytest.raises(ValueError):
        item_alphas(0.6, torch.tensor([False]), torch.tensor([False]))


def test_masked_chamfer_equals_chamfer_distance_on_the_kept_items():
    g = torch.Generator().manual_seed(0)
    pred = torch.rand(3, 200, 3, generator=g, requires_grad=True)
    tgt = torch.rand(3, 300, 3, generator=g)
    mask = torch.tensor([True, False, True])
    trees = [PointTree(tgt[0]), None, PointTree(tgt[2])]
    got = masked_chamfer(pred, tgt, mask, trees, norm=1)
    want = chamfer_distance(pred[[0, 2]], tgt[[0, 2]], norm=1, batch_reduction=None)
    assert got[1] == 0
    torch.testing.assert_close(got[[0, 2]], want)
    got.sum().backward()
    assert pred.grad[1].abs().sum() == 0 and pred.grad[0].abs().sum() > 0


def test_mix_chamfer_photo_only_item_uses_the_teacher_term_alone():
    ct = torch.tensor([0.2, 0.4, 0.0], requires_grad=True)
    cg = torch.tensor([0.1, float("nan"), 0.3], requires_grad=True)  # photo-only item: no GT (garbage here)
    alphas = item_alphas(0.75, torch.tensor([True, True, False]), torch.tensor([True, False, True]))
    loss = mix_chamfer(ct, cg, alphas)
    assert loss.item() == pytest.approx((0.75 * 0.2 + 0.25 * 0.1 + 0.4 + 0.3) / 3)
    loss.backward()
    assert ct.grad.tolist() == pytest.approx([0.25, 1 / 3, 0.0])
    assert cg.grad.tolist() == pytest.approx([0.25 / 3, 0.0, 1 / 3])


def _cfg(**kw):
    return {"data": "/tmp/d", "cache": "/tmp/c", **kw}


def test_validate_config_fills_defaults_and_checks_keys():
    cfg = validate_config(_cfg())
    assert set(cfg) == set(DEFAULTS)
    assert cfg["lambda_edge"] == 2.0 and cfg["lambda_smooth"] == 1.0 and cfg["target_points"] == 10000
    assert cfg["n_points"] == 10000 and cfg["threads"] == 2
    assert cfg["student"]["level"] == 4
    assert validate_config(_cfg(cache=None, baseline=True))["cache"] is None


@pytest.mark.parametrize("bad,match", [
    ({"learning_rate": 0.1}, "unknown training config key.*learning_rate"),
    ({"lr": -1e-3}, "^lr must be"),
    ({"lr": float("nan")}, "^lr must be"),
    ({"epochs": 0}, "^epochs must be"),
    ({"batch_size": 2.5}, "^batch_size must be"),
    ({"val_fraction": 1.0}, "^val_fraction must be"),
    ({"lambda_edge": -1}, "^lambda_edge must be"),
    ({"schedule": "custom", "alpha_start": 0.5}, "alpha_start and alpha_end"),
    ({"alpha_start": 1.5}, "^alpha_start must be"),
    ({"chamfer_norm": 3}, "^chamfer_norm"),
    ({"device": "tpu"}, "^device must be"),
    ({"baseline": "yes"}, "^baseline must be"),
    ({"student": {"widht": 8}}, "^student: unknown student config keys: widht"),
    ({"student": {"width": 0}}, "^student.width must be"),
    ({"student": {"fine_maps": 0}}, "^student.fine_maps must be"),
    ({"student": {"fine_maps": 5}}, "^student.fine_maps must be at most 4"),
    ({"student": {"fine_hidden": -1}}, "^student.fine_hidden must be"),
    ({"cache": None}, "^cache: the teacher cache folder is required"),
    ({"data": None}, "^data: the dataset folder is required"),
])
def test_validate_config_rejects_bad_values_with_one_line_naming_the_key(bad, match):
    with pytest.raises(UserError, match=match) as exc:
        validate_config(_cfg(**bad))
    assert "\n" not in str(exc.value)


def test_resume_mismatch_ignores_epochs_and_device_only():
    a = validate_config(_cfg())
    assert resume_mismatch(a, {**a, "epochs": 80, "device": "cpu", "resume": True}) == []
    assert resume_mismatch(a, {**a, "lr": 0.5}) == ["lr"]


def test_resume_mismatch_reads_a_student_saved_before_its_newer_fields_as_trained():
    """A run saved before ``fine_hidden`` / ``fine_maps`` existed resumes (its student keeps its 48-wide,
    two-map fine stage: the fields' defaults); changing one of them is a mismatch."""
    old = {"width": 12, "hidden": 48, "blocks": 3, "fine_blocks": 0, "sampled": 8, "stages": 2, "level": 4,
           "image_size": 96, "max_offset": 0.5, "template_axes": [0.4, 0.4, 1.0]}
    saved = {**validate_config(_cfg()), "student": old}
    resumed = validate_config({**saved, "resume": True})
    assert (resumed["student"]["fine_hidden"], resumed["student"]["fine_maps"]) == (0, 2)
    assert resume_mismatch(saved, resumed) == []
    assert resume_mismatch(saved, {**resumed, "student": {**resumed["student"], "fine_maps": 1}}) == ["student"]
