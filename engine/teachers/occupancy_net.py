"""The learned teacher's network: four calibrated views + 3D query points -> occupancy logits.

A pixel-aligned implicit function in the spirit of Hunyuan3D's shape VAE (and PIFu): every query point
is projected into every view through ``engine.geometry.camera`` (the one convention the renderer, the
visual hull and the student use) and reads the views' feature maps there.

1. ``Encoder`` — one CNN shared by the four views, on the views average-pooled to ``cnn_size`` (64 px):
   a stem and four stride-2 levels (``Block`` = residual pair of 3x3 convs), maps at S, S/2, S/4, S/8,
   S/16 with ``width`` x (1, 2, 4, 8, 16) channels, each reduced to ``sampled`` channels by a 1x1 conv
   before sampling. The S/16 map, mean-pooled, is the view's global feature.
2. ``view_features`` — per point and view: the full-resolution RGBA (the silhouette at the input's own
   precision) and the five reduced maps, bilinear (``grid_sample``); then a per-view linear layer shared
   by the views, the views concatenated in ``VIEW_NAMES`` order, plus the visual-hull cue (the minimum
   alpha over the given views) and a Fourier encoding of the position.
3. ``VolumeNet`` — the same per-view features at the centres of a coarse 8 x 16 x 16 voxel grid (0.075 apart),
   lifted to a 3D feature volume and passed through a small 3D U-Net (Convolutional Occupancy Networks'
   answer to plain per-point MLPs learning slowly); each query reads it trilinearly.
4. ``Decoder`` — an MLP from that feature (the global feature modulating every layer) to one value,
   added to ``hull_gain * (2 hull - 1)``: the net starts from the visual hull's sign and learns its
   corrections. The value is a truncated signed distance in the normalised frame (``engine.train.
   teacher_pretrain``), > 0 inside.

The mesh comes from ``engine.teachers.occupancy`` (hierarchical grid + marching cubes), so its topology
is the shape's own, unlike the student's ico-sphere. ``features_module`` names the module whose output
(the per-view S/8 map, (B*4, 8*width, S/8, S/8)) the cache stores for feature-level distillation; it is
read through a forward hook.

views: (B, 4, 4, H, W) float in [0, 1] (a missing view all zeros); points: (B, Q, 3) normalised frame.
The docstrings say "logits" for the network's output: any value whose sign is inside (> 0) / outside.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from engine.geometry import camera

KIND = "occupancy-teacher"
N_VIEWS = len(camera.VIEW_NAMES)


@dataclass
class OccupancyConfig:
    width: int = 24  # stem channels; level k has width * 2**k
    sampled: int = 32  # channels each map is reduced to before sampling
    view_channels: int = 64  # per-view point feature after the shared linear layer
    hidden: int = 192  # decoder MLP width
    layers: int = 3  # decoder hidden layers
    frequencies: int = 4  # Fourier frequencies of the position encoding
    cnn_size: int = 64  # views are average-pooled to this before the CNN
    volume: tuple = (8, 16, 16)  # cells (x, y, z) of the 3D feature volume (0.075 apart); (0, 0, 0) = none
    volume_half: tuple = (0.3, 0.6, 0.6)  # its half-extents (world units) around the origin
    volume_channels: int = 24

    def __post_init__(self):
        self.volume, self.volume_half = tuple(self.volume), tuple(self.volume_half)  # JSON gives lists

    @classmethod
    def from_dict(cls, d: dict) -> "OccupancyConfig":
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown occupancy config keys: {', '.join(unknown)}")
        return cls(**d)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["volume"], d["volume_half"] = list(self.volume), list(self.volume_half)
        return d


def conv(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1)


class Block(nn.Module):
    """Residual pair of 3x3 convs: x + conv(relu(conv(x)))."""

    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(conv(c, c), nn.ReLU(inplace=True), conv(c, c))

    def forward(self, x):
        return F.relu(x + self.body(x))


class Encoder(nn.Module):
    """(N, 4, S, S) -> five maps (N, sampled, S / 2**k, S / 2**k), k = 0..4, and the global (N, 16 * width)."""

    def __init__(self, width: int, sampled: int):
        super().__init__()
        w = width
        relu = nn.ReLU(inplace=True)
        self.stem = nn.Sequential(conv(4, w), relu)  # S
        self.level1 = nn.Sequential(conv(w, 2 * w, 2), relu)  # S/2
        self.level2 = nn.Sequential(conv(2 * w, 4 * w, 2), relu, Block(4 * w))  # S/4
        self.level3 = nn.Sequential(conv(4 * w, 8 * w, 2), relu, Block(8 * w))  # S/8: the distilled features
        self.level4 = nn.Sequential(conv(8 * w, 16 * w, 2), relu, Block(16 * w))  # S/16
        self.reduce = nn.ModuleList(nn.Conv2d(w * 2 ** k, sampled, 1) for k in range(5))
        self.global_channels = 16 * w

    def forward(self, x):
        f0 = self.stem(x)  # (N, w, S, S)
        f1 = self.level1(f0)  # (N, 2w, S/2, S/2)
        f2 = self.level2(f1)  # (N, 4w, S/4, S/4)
        f3 = self.level3(f2)  # (N, 8w, S/8, S/8)
        f4 = self.level4(f3)  # (N, 16w, S/16, S/16)
        maps = [r(f) for r, f in zip(self.reduce, (f0, f1, f2, f3, f4))]
        return maps, f4.mean((2, 3))  # maps (N, sampled, ., .) each; global (N, 16w)


def fourier(points: torch.Tensor, frequencies: int) -> torch.Tensor:
    """(..., 3) -> (..., 3 + 6 * frequencies): the position and sin / cos at pi * 2**k."""
    bands = [points]
    for k in range(frequencies):
        bands += [torch.sin(math.pi * 2 ** k * points), torch.cos(math.pi * 2 ** k * points)]
    return torch.cat(bands, -1)


def view_grids(points: torch.Tensor) -> torch.Tensor:
    """(B, Q, 3) normalised points -> (B * 4, Q, 1, 2) NDC grids, views in ``VIEW_NAMES`` order."""
    grids = torch.stack([camera.project_ndc(points, name) for name in camera.VIEW_NAMES], 1)  # (B, 4, Q, 2)
    return grids.reshape(-1, points.shape[1], 1, 2)


def sample(maps, grids: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of every (N, C_i, H_i, W_i) map at (N, Q, 1, 2) grids -> (N, Q, sum C_i); zeros
    outside the views."""
    out = [F.grid_sample(m, grids, mode="bilinear", padding_mode="zeros", align_corners=False) for m in maps]
    return torch.cat(out, 1).squeeze(-1).transpose(1, 2)  # (N, Q, C)


def conv3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv3d:
    return nn.Conv3d(c_in, c_out, 3, stride=stride, padding=1)


class VolumeNet(nn.Module):
    """A small 3D U-Net over the lifted feature volume (B, C, Z, Y, X): two stride-2 levels down, skip
    connections up; the same spatial size out, ``c`` channels (Convolutional Occupancy Networks)."""

    def __init__(self, c: int):
        super().__init__()
        relu = nn.ReLU(inplace=True)
        self.level0 = nn.Sequential(conv3(c, c), relu)
        self.level1 = nn.Sequential(conv3(c, 2 * c, 2), relu, conv3(2 * c, 2 * c), relu)
        self.level2 = nn.Sequential(conv3(2 * c, 4 * c, 2), relu, conv3(4 * c, 4 * c), relu)
        self.up1 = conv3(6 * c, 2 * c)
        self.up0 = conv3(3 * c, c)

    def forward(self, x):
        x0 = self.level0(x)  # (B, c, Z, Y, X)
        x1 = self.level1(x0)  # (B, 2c, Z/2, Y/2, X/2)
        x2 = self.level2(x1)  # (B, 4c, Z/4, Y/4, X/4)
        u1 = F.relu(self.up1(torch.cat([F.interpolate(x2, size=x1.shape[2:], mode="trilinear"), x1], 1)))
        return F.relu(self.up0(torch.cat([F.interpolate(u1, size=x0.shape[2:], mode="trilinear"), x0], 1)))


def voxel_centres(cells, half) -> torch.Tensor:
    """(Z * Y * X, 3) xyz centres of a (x, y, z) = ``cells`` grid spanning ``[-half, half]``, z-major."""
    axes = [(torch.arange(n) + 0.5) / n * 2 * h - h for n, h in zip(cells, half)]  # x, y, z
    z, y, x = torch.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    return torch.stack([x, y, z], -1).reshape(-1, 3)


class Decoder(nn.Module):
    """Per-point features (B, Q, F) + global (B, hidden) -> values (B, Q). The global feature enters every
    layer (FiLM, as Occupancy Networks' conditional batch norm does): h <- relu(h + (1 + g) * W h + b_g)."""

    def __init__(self, c_in: int, hidden: int, layers: int):
        super().__init__()
        self.inp = nn.Linear(c_in, hidden)
        self.hidden = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers - 1))
        self.film = nn.Linear(hidden, 2 * hidden * (layers - 1))
        self.out = nn.Linear(hidden, 1)

    def forward(self, feats, glob):
        h = F.relu(self.inp(feats) + glob.unsqueeze(1))  # (B, Q, hidden)
        films = self.film(glob).unsqueeze(1).chunk(2 * len(self.hidden), -1)  # each (B, 1, hidden)
        for k, layer in enumerate(self.hidden):
            h = F.relu(h + (1 + films[2 * k]) * layer(h) + films[2 * k + 1])
        return self.out(h).squeeze(-1)  # (B, Q)


class OccupancyNet(nn.Module):
    """views (B, 4, 4, H, W) + points (B, Q, 3) -> occupancy logits (B, Q) (see the module docstring)."""

    features_module = "encoder.level3"

    def __init__(self, config: OccupancyConfig | None = None):
        super().__init__()
        self.config = c = config or OccupancyConfig()
        self.encoder = Encoder(c.width, c.sampled)
        self.view_fc = nn.Linear(4 + 5 * c.sampled, c.view_channels)
        self.global_fc = nn.Sequential(nn.Linear(N_VIEWS * self.encoder.global_channels, c.hidden), nn.ReLU())
        c_point = N_VIEWS * c.view_channels + 1 + 3 + 6 * c.frequencies
        self.has_volume = all(n > 0 for n in c.volume)
        if self.has_volume:  # lift the per-view point features of every voxel centre, then a 3D U-Net
            self.register_buffer("voxels", voxel_centres(c.volume, c.volume_half), persistent=False)
            self.lift = nn.Linear(N_VIEWS * c.view_channels + 1, c.volume_channels)
            self.volume_net = VolumeNet(c.volume_channels)
            c_point += c.volume_channels
        self.decoder = Decoder(c_point, c.hidden, c.layers)
        # value = decoder + hull_gain * (2 hull - 1): the network starts from the visual hull's sign and
        # learns what silhouettes cannot show (tops, the collar's recess, the arch) as a correction
        self.hull_gain = nn.Parameter(torch.tensor(0.02))

    def encode(self, views: torch.Tensor):
        """The per-shoe part: (full-resolution views (B*4, 4, H, W), maps, global (B, hidden), feature
        volume (B, C_v, Z, Y, X) or None)."""
        b, n, ch, h, w = views.shape
        full = views.reshape(b * n, ch, h, w)
        small = F.adaptive_avg_pool2d(full, self.config.cnn_size)
        maps, pooled = self.encoder(small)
        volume = None
        if self.has_volume:
            per_view, hull = self.view_features(full, maps, self.voxels.unsqueeze(0).expand(b, -1, -1))
            lifted = F.relu(self.lift(torch.cat([per_view, hull], -1)))  # (B, Z*Y*X, C_v)
            cx, cy, cz = self.config.volume
            volume = self.volume_net(lifted.transpose(1, 2).reshape(b, -1, cz, cy, cx))  # (B, C_v, Z, Y, X)
        return full, maps, self.global_fc(pooled.reshape(b, -1)), volume

    def view_features(self, full, maps, points):
        """Per point: the four views' features concatenated (B, Q, 4 * view_channels) and the visual-hull
        cue (B, Q, 1) — the minimum alpha over the views that have a silhouette."""
        b, q, _ = points.shape
        grids = view_grids(points)  # (B*4, Q, 1, 2)
        raw = sample([full], grids)  # (B*4, Q, 4)
        per_view = self.view_fc(torch.cat([raw, sample(maps, grids)], -1))  # (B*4, Q, view_channels)
        per_view = per_view.reshape(b, N_VIEWS, q, -1).permute(0, 2, 1, 3).reshape(b, q, -1)  # (B, Q, 4*vc)
        given = (full[:, 3].flatten(1).amax(1) > 0).reshape(b, N_VIEWS, 1)  # (B, 4, 1) views with a silhouette
        alpha = raw[..., 3].reshape(b, N_VIEWS, q)  # (B, 4, Q)
        hull = torch.where(given, alpha, torch.ones_like(alpha)).amin(1, keepdim=True).transpose(1, 2)  # (B, Q, 1)
        return per_view, hull

    def decode(self, encoded, points: torch.Tensor) -> torch.Tensor:
        """Logits (B, Q) at points (B, Q, 3) from ``encode``'s output (call it in chunks of Q)."""
        full, maps, glob, volume = encoded
        per_view, hull = self.view_features(full, maps, points)
        parts = [per_view, hull]
        if volume is not None:  # trilinear read of the volume; zeros outside it
            half = torch.as_tensor(self.config.volume_half, dtype=points.dtype, device=points.device)
            g = (points / half).reshape(points.shape[0], -1, 1, 1, 3)  # (B, Q, 1, 1, 3) x, y, z in [-1, 1]
            vol = F.grid_sample(volume, g, mode="bilinear", padding_mode="zeros", align_corners=False)
            parts.append(vol.flatten(2).transpose(1, 2))  # (B, Q, C_v)
        feats = torch.cat(parts + [fourier(points, self.config.frequencies)], -1)
        return self.decoder(feats, glob) + self.hull_gain * (2 * hull.squeeze(-1) - 1)  # (B, Q)

    def forward(self, views: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(views), points)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
