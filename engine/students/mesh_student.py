"""The 3D student: four shoe photos -> the vertices of a deformed level-4 ico-sphere (2562 vertices).

Pixel2Mesh-style, kept small and export-friendly:

1. ``Encoder``: one small CNN shared by the four views (RGB + alpha in, feature maps at 1/4, 1/8 and
   1/16 of the input size, each reduced to ``sampled`` channels by a 1x1 conv) plus a global feature
   (the mean-pooled last map of every view).
2. ``project_features``: every vertex is projected into each view through ``engine.geometry.camera``
   (the same convention the renderer and the teachers use) and bilinearly samples the three maps
   (``grid_sample``); per vertex the features are pooled over the views (mean and max).
3. ``Deformer``: graph-convolution blocks over the mesh graph predict a 3D offset per vertex. A
   graph convolution is ``h' = W_self h + W_nbr mean_{j in N(i)} h_j``; neighbours are gathered from a
   fixed (V, 6) index table (ico-sphere vertices have 5 or 6 neighbours), so the model needs no sparse
   ops and exports to ONNX as is.
4. ``stages`` deformations in sequence (default 2): stage 2 re-projects the moved vertices and refines.

Input ``views``: (B, 4, 4, S, S) float in [0, 1] — views in ``camera.VIEW_NAMES`` order, channels
RGBA (alpha = mask), S = ``image_size`` (default 128; photos are resized once when loaded). A missing
view is all zeros. Output: (B, 2562, 3) vertices in the normalised frame. Faces are the ico-sphere's
(``MeshStudent.faces``), stored beside any exported model.
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from engine.geometry import camera
from engine.geometry.mesh import icosphere

KIND = "mesh-student"
MAX_NEIGHBOURS = 6


@dataclass
class StudentConfig:
    width: int = 16  # channels of the first conv stage; the rest scale from it
    hidden: int = 64  # graph-conv features per vertex
    blocks: int = 3  # residual graph-conv blocks per stage
    sampled: int = 32  # channels each feature map is reduced to (1x1 conv) before vertex sampling
    stages: int = 2  # deform, re-project, refine
    level: int = 4  # ico-sphere level (4 = 2562 vertices)
    image_size: int = 128  # views are resized to this before the CNN
    max_offset: float = 0.5  # tanh-bounded offset per stage, world units

    @classmethod
    def from_dict(cls, d: dict) -> "StudentConfig":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(f"unknown student config keys: {', '.join(unknown)}")
        return cls(**known)

    def to_dict(self) -> dict:
        return asdict(self)


def conv(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1)


class Encoder(nn.Module):
    """Shared per-view CNN: (N, 4, S, S) -> maps at S/4 (2w), S/8 (4w), S/16 (8w) channels."""

    def __init__(self, width: int, sampled: int):
        super().__init__()
        w = width
        self.stem = nn.Sequential(conv(4, w, 2), nn.ReLU(), conv(w, 2 * w, 2), nn.ReLU())  # S/4
        self.down1 = nn.Sequential(conv(2 * w, 4 * w, 2), nn.ReLU(), conv(4 * w, 4 * w), nn.ReLU())  # S/8
        self.down2 = nn.Sequential(conv(4 * w, 8 * w, 2), nn.ReLU(), conv(8 * w, 8 * w), nn.ReLU())  # S/16
        self.reduce = nn.ModuleList(nn.Conv2d(c, sampled, 1) for c in (2 * w, 4 * w, 8 * w))
        self.channels = 3 * sampled  # sampled per vertex and view
        self.global_channels = 8 * w

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        f1 = self.stem(x)  # (N, 2w, S/4, S/4)
        f2 = self.down1(f1)  # (N, 4w, S/8, S/8)
        f3 = self.down2(f2)  # (N, 8w, S/16, S/16)
        maps = [r(f) for r, f in zip(self.reduce, (f1, f2, f3))]  # each (N, sampled, H_i, W_i)
        return maps, f3.mean((2, 3))  # global: (N, 8w)


class GraphConv(nn.Module):
    """``h' = W_self h + W_nbr · mean of the neighbours' h`` (padding slots weigh 0).

    Computed as one matmul to ``[W_self h, W_nbr h]`` followed by the neighbour mean of the second half
    (the mean commutes with the linear map), so the gather runs on ``c_out`` channels, not ``c_in``.
    """

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.c_out = c_out
        self.lin = nn.Linear(c_in, 2 * c_out)

    def forward(self, h: torch.Tensor, neighbour_mean) -> torch.Tensor:
        # h (B, V, C_in); neighbour_mean: (B, V, C) -> (B, V, C)
        own, nbr = self.lin(h).split(self.c_out, dim=-1)  # (B, V, C_out) each
        return own + neighbour_mean(nbr)


class Block(nn.Module):
    """Residual graph-conv block: two graph convolutions with ReLU."""

    def __init__(self, c: int):
        super().__init__()
        self.g1, self.g2 = GraphConv(c, c), GraphConv(c, c)

    def forward(self, h, neighbour_mean):
        return h + self.g2(F.relu(self.g1(h, neighbour_mean)), neighbour_mean)


class Deformer(nn.Module):
    """Per-vertex features -> (B, V, 3) offsets, bounded by ``max_offset`` through tanh."""

    def __init__(self, c_in: int, hidden: int, blocks: int, max_offset: float):
        super().__init__()
        self.inp = GraphConv(c_in, hidden)
        self.blocks = nn.ModuleList(Block(hidden) for _ in range(blocks))
        self.out = GraphConv(hidden, 3)
        self.max_offset = max_offset

    def forward(self, h, neighbour_mean):
        h = F.relu(self.inp(h, neighbour_mean))
        for block in self.blocks:
            h = block(h, neighbour_mean)
        return self.max_offset * torch.tanh(self.out(h, neighbour_mean))


def neighbour_table(faces: torch.Tensor, num_verts: int, k: int = MAX_NEIGHBOURS) -> tuple[torch.Tensor, torch.Tensor]:
    """(V, k) neighbour indices (padded with the vertex itself) and (V, k) weights 1/deg (0 on padding)."""
    nbrs: list[set[int]] = [set() for _ in range(num_verts)]
    for a, b, c in faces.tolist():
        nbrs[a].update((b, c)), nbrs[b].update((a, c)), nbrs[c].update((a, b))
    idx = torch.arange(num_verts).unsqueeze(1).repeat(1, k)
    w = torch.zeros(num_verts, k)
    for v, ns in enumerate(nbrs):
        ns = sorted(ns)[:k]
        idx[v, : len(ns)] = torch.tensor(ns)
        w[v, : len(ns)] = 1.0 / max(len(ns), 1)
    return idx, w


def project_features(maps: list[torch.Tensor], verts: torch.Tensor, n_views: int) -> torch.Tensor:
    """Sample every map at every vertex's projection in every view; pool over views (mean, max).

    maps: list of (B*n_views, C_i, H_i, W_i); verts: (B, V, 3). Returns (B, V, 2 * sum C_i).
    """
    b, v, _ = verts.shape
    grids = torch.stack([camera.project_ndc(verts, name) for name in camera.VIEW_NAMES[:n_views]], 1)  # (B, n, V, 2)
    grids = grids.reshape(b * n_views, v, 1, 2)  # (B*n, V, 1, 2)
    sampled = [F.grid_sample(m, grids, mode="bilinear", padding_mode="border", align_corners=False)[..., 0]
               for m in maps]  # each (B*n, C_i, V)
    feats = torch.cat(sampled, 1).reshape(b, n_views, -1, v)  # (B, n, C, V)
    return torch.cat([feats.mean(1), feats.amax(1)], 1).transpose(1, 2)  # (B, V, 2C)


class MeshStudent(nn.Module):
    """Views (B, 4, 4, S, S) -> vertices (B, V, 3) of a deformed ico-sphere."""

    def __init__(self, config: StudentConfig | None = None):
        super().__init__()
        self.config = config or StudentConfig()
        c = self.config
        verts, faces = icosphere(c.level)
        nbr_idx, nbr_w = neighbour_table(faces, len(verts))
        self.register_buffer("template", verts, persistent=False)  # (V, 3)
        self.register_buffer("faces", faces, persistent=False)  # (F, 3)
        self.register_buffer("nbr_idx", nbr_idx, persistent=False)  # (V, 6)
        self.register_buffer("nbr_w", nbr_w, persistent=False)  # (V, 6)
        rows = torch.arange(len(verts)).repeat_interleave(MAX_NEIGHBOURS)
        # the same averaging as a sparse CSR matrix (25x faster than the gather in eager mode); a plain
        # attribute, not a buffer, so DDP's buffer broadcast never sees a sparse tensor
        with warnings.catch_warnings():  # "sparse CSR is beta" / invariant-check notices, once per model
            warnings.simplefilter("ignore", UserWarning)
            self._adjacency = torch.sparse_coo_tensor(torch.stack([rows, nbr_idx.flatten()]), nbr_w.flatten(),
                                                      (len(verts), len(verts))).coalesce().to_sparse_csr()
        self.encoder = Encoder(c.width, c.sampled)
        glob = self.encoder.global_channels * len(camera.VIEW_NAMES)
        self.global_fc = nn.Sequential(nn.Linear(glob, c.hidden), nn.ReLU())
        c_in = 2 * self.encoder.channels + c.hidden + 3  # view-pooled features, global, position
        self.stages = nn.ModuleList(Deformer(c_in, c.hidden, c.blocks, c.max_offset) for _ in range(c.stages))

    def neighbour_mean(self, h: torch.Tensor) -> torch.Tensor:
        """Mean of each vertex's neighbours' features: (B, V, C) -> (B, V, C).

        Eager: one sparse CSR matmul. ONNX export: a gather over the (V, 6) neighbour table with the same
        weights (ONNX has no sparse ops); both give the same numbers.
        """
        b, v, c = h.shape
        if torch.onnx.is_in_onnx_export():
            gathered = h.index_select(1, self.nbr_idx.flatten()).view(b, v, MAX_NEIGHBOURS, c)  # (B, V, 6, C)
            return (self.nbr_w[None, :, None, :] @ gathered).squeeze(2)
        if self._adjacency.device != h.device:
            self._adjacency = self._adjacency.to(h.device)
        flat = h.transpose(0, 1).reshape(v, b * c)  # (V, B*C)
        return (self._adjacency @ flat).reshape(v, b, c).transpose(0, 1)

    def forward(self, views: torch.Tensor) -> torch.Tensor:
        b, n, ch, s, _ = views.shape  # (B, 4, 4, S, S)
        maps, pooled = self.encoder(views.reshape(b * n, ch, s, s))
        glob = self.global_fc(pooled.reshape(b, -1))  # (B, hidden)
        verts = self.template.unsqueeze(0).expand(b, -1, -1)  # (B, V, 3)
        for stage in self.stages:
            feats = project_features(maps, verts, n)  # (B, V, 2C)
            h = torch.cat([feats, glob.unsqueeze(1).expand(-1, verts.shape[1], -1), verts], -1)
            verts = verts + stage(h, self.neighbour_mean)
        return verts  # (B, V, 3)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
