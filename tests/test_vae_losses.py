"""The five loss terms: finite, zero where they should be, weights act linearly, T softens targets."""
import math

import pytest
import torch

from engine.students.vgg import VGG16Features
from engine.train import vae_losses as L


@pytest.fixture(scope="module")
def tiny_vgg():
    torch.manual_seed(0)
    model = VGG16Features(("relu1_2", "relu2_2"))
    for conv in model.convs.values():  # random but fixed: the loss function is what is tested here
        torch.nn.init.normal_(conv.weight, std=0.05)
    return model


def _batch(seed=0, b=4):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 3, 32, 32, generator=g)
    recon = torch.rand(b, 3, 32, 32, generator=g)
    mu, logvar = torch.randn(b, 128, 4, 4, generator=g), torch.randn(b, 128, 4, 4, generator=g) * 0.1
    s, t = torch.randn(b, 512, generator=g), torch.randn(b, 512, generator=g)
    return x, recon, mu, logvar, s, t


def _terms(vgg, seed=0):
    x, recon, mu, logvar, s, t = _batch(seed)
    return {"recon": L.reconstruction_loss(recon, x), "kl": L.kl_divergence(mu, logvar, 3072),
            "latent": L.latent_distillation_loss(s, t, 3.0), "output": L.output_distillation_loss(recon, x.flip(0)),
            "perceptual": L.perceptual_loss(vgg, recon, x)}


def test_every_term_finite_and_positive(tiny_vgg):
    for name, value in _terms(tiny_vgg).items():
        assert value.dim() == 0 and math.isfinite(float(value)) and float(value) > 0, name


def test_terms_vanish_on_matching_inputs(tiny_vgg):
    x, _, _, _, s, _ = _batch()
    assert float(L.reconstruction_loss(x, x)) == 0
    assert float(L.output_distillation_loss(x, x)) == 0
    assert float(L.kl_divergence(torch.zeros(2, 8), torch.zeros(2, 8), 3072)) == 0
    # float32 softmax vs log-softmax over 512 channels, times T² = 9: rounding alone reaches ~1e-6
    assert float(L.latent_distillation_loss(s, s, 3.0)) == pytest.approx(0, abs=1e-5)
    assert float(L.perceptual_loss(tiny_vgg, x, x)) == pytest.approx(0, abs=1e-6)


def test_known_values():
    x = torch.zeros(2, 3, 4, 4)
    assert float(L.reconstruction_loss(x + 0.5, x)) == pytest.approx(0.25)
    mu, logvar = torch.ones(2, 10), torch.zeros(2, 10)  # KL per sample = 0.5·Σ mu² = 5 nats
    assert float(L.kl_divergence(mu, logvar, 5)) == pytest.approx(1.0)


def test_empty_batch_gives_zero(tiny_vgg):
    e = torch.zeros(0, 3, 32, 32)
    assert float(L.reconstruction_loss(e, e)) == 0
    assert float(L.output_distillation_loss(e, e)) == 0
    assert float(L.kl_divergence(torch.zeros(0, 8), torch.zeros(0, 8), 3072)) == 0
    assert float(L.latent_distillation_loss(torch.zeros(0, 5), torch.zeros(0, 5), 3.0)) == 0
    assert float(L.perceptual_loss(tiny_vgg, e, e)) == 0


def test_each_weight_changes_total_by_its_term(tiny_vgg):
    terms = _terms(tiny_vgg)
    weights = {"recon": 0.3, "kl": 0.1, "latent": 0.3, "output": 0.2, "perceptual": 0.1}
    base = float(L.weighted_total(terms, weights))
    assert base == pytest.approx(sum(w * float(terms[k]) for k, w in weights.items()), rel=1e-6)
    for key in weights:
        bumped = dict(weights, **{key: weights[key] + 0.5})
        assert float(L.weighted_total(terms, bumped)) - base == pytest.approx(0.5 * float(terms[key]), rel=1e-4)
        zeroed = dict(weights, **{key: 0.0})
        assert float(L.weighted_total(terms, zeroed)) == pytest.approx(base - weights[key] * float(terms[key]), rel=1e-5)
    assert float(L.weighted_total({k: v for k, v in terms.items() if k != "perceptual"},
                                  dict(weights, perceptual=0))) > 0  # a zero weight needs no term


def test_larger_temperature_gives_softer_targets():
    t = torch.randn(6, 512, generator=torch.Generator().manual_seed(3)) * 2

    def entropy(p):
        return float(-(p * p.clamp_min(1e-30).log()).sum(1).mean())

    ents = [entropy(L.softened(t, T)) for T in (1.0, 3.0, 10.0)]
    assert ents[0] < ents[1] < ents[2] < math.log(512) + 1e-6
    maxes = [float(L.softened(t, T).max(1).values.mean()) for T in (1.0, 3.0, 10.0)]
    assert maxes[0] > maxes[1] > maxes[2]


def test_latent_distillation_is_t_squared_scaled_kl():
    s, t = torch.randn(3, 7), torch.randn(3, 7)
    T = 2.5
    p = torch.softmax(t / T, 1)
    q = torch.softmax(s / T, 1)
    expected = (p * (p.log() - q.log())).sum(1).mean() * T * T
    assert float(L.latent_distillation_loss(s, t, T)) == pytest.approx(float(expected), rel=1e-5)


def test_gradients_flow_only_to_the_student_side(tiny_vgg):
    x, recon, *_ = _batch()
    recon.requires_grad_(True)
    teacher_recon = x.clone().requires_grad_(True)
    (L.output_distillation_loss(recon, teacher_recon) + L.perceptual_loss(tiny_vgg, recon, x)).backward()
    assert recon.grad is not None and float(recon.grad.abs().sum()) > 0
    assert teacher_recon.grad is None
