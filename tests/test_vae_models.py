"""TeacherVAE / MinimalVAE: sizes, shapes, the encode/decode/forward contract."""
import pytest
import torch

from engine.students.vae import LatentProjector, MinimalVAE, TeacherVAE, count_parameters


def test_parameter_counts_within_15_percent():
    teacher, student = TeacherVAE(512), MinimalVAE(latent_dim=128, base_channels=32)
    assert count_parameters(teacher) == pytest.approx(10_000_000, rel=0.15)
    assert count_parameters(student) == pytest.approx(1_100_000, rel=0.15)
    assert count_parameters(teacher) >= 9 * count_parameters(student)  # the benchmark's size target


def test_shapes_and_modes():
    x = torch.rand(3, 3, 32, 32)
    teacher, student = TeacherVAE(512), MinimalVAE(128, 32)
    assert teacher.encode(x).shape == (3, 512)
    assert student.encode(x).shape == (3, 128, 4, 4)
    assert student.latent_shape == (128, 4, 4)
    for vae in (teacher, student):
        recon, mu, logvar = vae(x)
        assert recon.shape == x.shape and mu.shape == logvar.shape
        assert float(recon.detach().min()) >= 0.0 and float(recon.detach().max()) <= 1.0
        vae.eval()
        with torch.no_grad():
            recon_eval, mu_eval, _ = vae(x)
            assert torch.allclose(recon_eval, vae.decode(vae.encode(x)))  # eval: decode(mean)
        vae.train()
        torch.manual_seed(0)
        r1 = vae(x)[0]
        torch.manual_seed(1)
        r2 = vae(x)[0]
        assert not torch.allclose(r1, r2)  # train: sampled latent
    proj = LatentProjector(student.latent_shape, 512)
    assert proj(student.encode(x)).shape == (3, 512)


def test_base_channels_changes_size():
    assert count_parameters(MinimalVAE(128, 16)) < count_parameters(MinimalVAE(128, 32))
