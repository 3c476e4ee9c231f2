"""Generic ONNX helpers and the report's metrics."""
import math

import pytest
import torch

from engine import export
from engine.config import UserError
from engine.evaluate import vae_report as R


def test_export_dynamic_batch_parity_and_latency(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Upsample(scale_factor=2))
    path = export.export_onnx(net, torch.rand(2, 3, 8, 8), tmp_path / "net.onnx")
    sess = export.ort_session(path, threads=1)
    for batch in (1, 5):
        x = torch.rand(batch, 3, 8, 8)
        (out,) = export.run_ort(sess, x)
        assert out.shape == (batch, 4, 16, 16)
        assert export.parity(net, sess, x) < 1e-5
    assert export.latency_ort(sess, torch.rand(4, 3, 8, 8), warmup=1, repeats=3) > 0
    assert export.latency_torch(net, torch.rand(4, 3, 8, 8), warmup=1, repeats=3, threads=1) > 0
    with pytest.raises(UserError, match="no such ONNX file"):
        export.ort_session(tmp_path / "missing.onnx")


def test_psnr_ssim_cka():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 32, 32, generator=g)
    assert torch.allclose(R.ssim(x, x), torch.ones(4))
    assert float(R.psnr(x, x).min()) == pytest.approx(100.0)
    noisy = (x + 0.1 * torch.randn(4, 3, 32, 32, generator=g)).clamp(0, 1)
    assert float(R.ssim(noisy, x).max()) < 1
    assert float(R.psnr(x * 0 + 0.5, x * 0)[0]) == pytest.approx(10 * math.log10(4), rel=1e-5)
    a = torch.randn(50, 8, generator=g)
    q, _ = torch.linalg.qr(torch.randn(8, 8, generator=g))
    assert R.linear_cka(a, a) == pytest.approx(1.0)
    assert R.linear_cka(a, 3 * a @ q + 1) == pytest.approx(1.0, abs=1e-6)  # invariant to rotation, scale, shift
    assert R.linear_cka(a, torch.randn(50, 8, generator=g)) < 0.5
    assert math.isnan(R.linear_cka(a[:1], a[:1]))


def test_grid_png_size():
    png = R.grid_png([torch.rand(2, 3, 32, 32)] * 3, scale=1, gap=2)
    from io import BytesIO

    from PIL import Image

    assert Image.open(BytesIO(png)).size == (2 * 34 + 2, 3 * 34 + 2)
