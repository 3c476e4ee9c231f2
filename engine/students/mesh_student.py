"""The 3D student: four shoe photos -> the vertices of a deformed level-4 ico-sphere (2562 vertices).

Pixel2Mesh-style and coarse to fine, kept small, fast on one CPU thread and export-friendly:

1. ``Encoder``: one small CNN shared by the four views (RGBA in, S = ``image_size``). Its maps at
   S/4, S/8 and S/16 are each reduced to ``sampled`` channels by a 1x1 conv; the input image itself
   is a fourth, full-resolution map (its alpha tells a vertex whether it lies inside the silhouette).
   The global feature is the mean-pooled S/16 map of every view (``global_fc``).
2. ``project_features``: the vertices are projected into each view through ``engine.geometry.camera``
   (the same convention the renderer and the teachers use) and bilinearly sample the maps
   (``grid_sample``). The views keep their fixed order, so the per-view features are concatenated
   (not pooled): a coarse stage reads all four maps, the fine stage the first ``fine_maps`` (default 2:
   the image and S/4) — coarse context reaches it through the hidden features of the stage before.
3. ``Stage``: graph-convolution blocks over one ico-sphere level predict a 3D offset per vertex
   (bounded by ``max_offset`` through tanh). A graph convolution is
   ``h' = W_self h + W_nbr mean_{j in N(i)} h_j + b``; the global feature enters every stage's first
   graph convolution as a per-shoe bias (a constant input is its own neighbour mean).
4. ``stages`` stages (default 2) run from level ``level - stages + 1`` up to ``level``: the first on
   the level-3 sphere (642 vertices), then the mesh and its hidden features are unpooled to level 4
   (``unpool_pairs``: every new vertex is the mean of its edge's two endpoints, exactly as trimesh
   subdivides, so the result is in ``icosphere(4)``'s vertex order) and the fine stage re-projects
   the unpooled vertices and refines them with ``fine_blocks`` blocks of ``fine_hidden`` features.

Inside the model per-vertex tensors are vertex-major, (V, B, C), so the neighbour mean is one sparse
CSR matmul on a contiguous (V, B*C) view and unpooling gathers whole rows. This module is plain eager
code with no export branches: the ONNX export swaps in an export form of the model with the same
numbers (~1e-6) at export time (``engine.export.mesh_onnx.export_form``; ONNX has no sparse ops).

Cost of the defaults (S 96, width 12, sampled 8, hidden 48, blocks 3, fine_blocks 0; 232,626
parameters), multiply-adds per shoe: CNN 47 M (4 views), coarse stage 25 M (642 vertices), fine stage
25 M (2562 vertices); bilinear samples 4 views x (642 x 28 + 2562 x 12) channels. The single-resolution
design this replaced (CNN at 128 px, two stages of three blocks on all 2562 vertices with 259 input
channels) needed 573 M multiply-adds and 10x the samples. The ``fast`` preset
(``engine.train.distill_config.STUDENT_PRESETS``: S 80, width 8, hidden 32, blocks 2, a 16-wide fine
stage sampling the image only; 99,174 parameters, ~28 M multiply-adds) takes under half the time in ONNX
Runtime; trained twice the epochs (what it trains by default) it keeps the default's val CD-L1 (README).
``bench/bench_export3d.py`` times both.

Input ``views``: (B, 4, 4, S, S) float in [0, 1] — views in ``camera.VIEW_NAMES`` order, channels
RGBA (alpha = mask), S = ``image_size`` (photos are resized once when loaded). A missing view is all
zeros. Output: (B, 2562, 3) vertices in the normalised frame. Faces are the level-``level``
ico-sphere's (``MeshStudent.faces``), stored beside any exported model.
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from engine.geometry import camera
from engine.geometry.mesh import icosphere, unique_edges

KIND = "mesh-student"
MAX_NEIGHBOURS = 6
N_VIEWS = len(camera.VIEW_NAMES)


@dataclass
class StudentConfig:
    width: int = 12  # channels of the first conv stage; the rest scale from it
    hidden: int = 48  # graph-conv features per vertex
    blocks: int = 3  # residual graph-conv blocks in each stage but the last
    fine_blocks: int = 0  # residual blocks in the last (finest) stage; 0: its input and output convs only
    fine_hidden: int = 0  # graph-conv features per vertex in the last stage; 0: ``hidden``
    fine_maps: int = 2  # maps the last stage samples: the first n of [image, S/4, S/8, S/16]
    sampled: int = 8  # channels each CNN map is reduced to (1x1 conv) before vertex sampling
    stages: int = 2  # coarse-to-fine stages; stage k runs on level ``level - stages + 1 + k``
    level: int = 4  # ico-sphere level of the output (4 = 2562 vertices)
    image_size: int = 96  # views are resized to this before the CNN
    max_offset: float = 0.5  # tanh-bounded offset per stage, world units
    # extent (x, y, z) of the starting mesh: the ico-sphere scaled to an ellipsoid near the mean shoe's
    # normalised box (x 0.37, y 0.41, z 1.0 over the sample shoes); (1, 1, 1) = the plain sphere
    template_axes: tuple = (0.4, 0.4, 1.0)

    def __post_init__(self):
        if isinstance(self.template_axes, list):  # a JSON config gives a list
            self.template_axes = tuple(self.template_axes)

    @classmethod
    def from_dict(cls, d: dict) -> "StudentConfig":
        """The config from a plain dict; ``ValueError`` naming any unknown key (a missing one takes its default)."""
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(f"unknown student config keys: {', '.join(unknown)}")
        return cls(**known)

    def to_dict(self) -> dict:
        d = asdict(self)
        if isinstance(self.template_axes, tuple):
            d["template_axes"] = list(self.template_axes)  # JSON-shaped
        return d


def conv(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1)


class Encoder(nn.Module):
    """Shared per-view CNN: (N, 4, S, S) -> [image, S/4, S/8, S/16 maps] (the last three with
    ``sampled`` channels) and the global feature (N, 8 * width)."""

    def __init__(self, width: int, sampled: int):
        super().__init__()
        w = width
        relu = nn.ReLU(inplace=True)
        self.stem = nn.Sequential(conv(4, w, 2), relu, conv(w, 2 * w, 2), relu)  # S/4
        self.down1 = nn.Sequential(conv(2 * w, 4 * w, 2), relu, conv(4 * w, 4 * w), relu)  # S/8
        self.down2 = nn.Sequential(conv(4 * w, 8 * w, 2), relu, conv(8 * w, 8 * w), relu)  # S/16
        self.reduce = nn.ModuleList(nn.Conv2d(c, sampled, 1) for c in (2 * w, 4 * w, 8 * w))
        self.map_channels = (4, sampled, sampled, sampled)  # image, S/4, S/8, S/16
        self.global_channels = 8 * w

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        f1 = self.stem(x)  # (N, 2w, S/4, S/4)
        f2 = self.down1(f1)  # (N, 4w, S/8, S/8)
        f3 = self.down2(f2)  # (N, 8w, S/16, S/16)
        maps = [x] + [r(f) for r, f in zip(self.reduce, (f1, f2, f3))]  # (N, C_i, H_i, W_i) each
        return maps, f3.mean((2, 3))  # global: (N, 8w)


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


def unpool_pairs(level: int) -> torch.Tensor:
    """(V_fine, 2) parent vertices at ``level`` of every vertex of ``icosphere(level + 1)``.

    A vertex kept from the coarse sphere has the pair (i, i) (they come first, in the coarse order); a
    new one the two endpoints of the edge it subdivides, so ``0.5 * (x[a] + x[b])`` unpools coarse
    vertices (or features) into the fine sphere's vertex order. Built by matching, not assumed:
    ``RuntimeError`` if a fine vertex is neither a coarse vertex nor the (sphere-projected) midpoint of
    a coarse edge, or the kept vertices do not come first.
    """
    from scipy.spatial import cKDTree

    coarse, faces = icosphere(level)
    fine, _ = icosphere(level + 1)
    edges = unique_edges(faces)  # (E, 2)
    mid = coarse[edges[:, 0]].double() + coarse[edges[:, 1]].double()  # (E, 3)
    mid = mid / mid.norm(dim=1, keepdim=True) * coarse[0].double().norm()  # trimesh re-projects to the sphere
    pairs = torch.cat([torch.arange(len(coarse)).unsqueeze(1).repeat(1, 2), edges])  # (V + E, 2)
    cand = torch.cat([coarse.double(), mid]).numpy()  # (V + E, 3)
    dist, which = cKDTree(cand).query(fine.double().numpy())
    bad = len(fine) != len(cand) or float(np.max(dist)) > 1e-5 or len(set(which.tolist())) != len(fine)
    if bad or not np.array_equal(which[: len(coarse)], np.arange(len(coarse))):  # kept first (the ONNX tables)
        raise RuntimeError(f"icosphere({level + 1}) is not the midpoint subdivision of icosphere({level})")
    return pairs[torch.as_tensor(which)]  # (V_fine, 2)


class _AddNeighbourMean(torch.autograd.Function):
    """``base + A @ h`` for a fixed sparse CSR ``A`` (V, V) and dense (V, K) ``base`` / ``h``, with the
    transpose ``A^T`` given (precomputed once): autograd's own backward of a CSR matmul transposes
    ``A`` (a sort) on every call."""

    @staticmethod
    def forward(ctx, base, h, adj, adj_t):
        ctx.adj_t = adj_t
        return torch.addmm(base, adj, h)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        grad = grad.contiguous()
        return grad, (ctx.adj_t @ grad if ctx.needs_input_grad[1] else None), None, None


class MeshGraph(nn.Module):
    """One ico-sphere level: template vertices (the sphere of diameter 1 scaled by ``axes``), faces and
    the neighbour mean over its edges."""

    def __init__(self, level: int, axes=(1.0, 1.0, 1.0)):
        super().__init__()
        verts, faces = icosphere(level)
        verts = verts * torch.tensor([float(a) for a in axes])  # (V, 3)
        nbr_idx, nbr_w = neighbour_table(faces, len(verts))
        self.level, self.num_verts = level, len(verts)
        self.register_buffer("template", verts, persistent=False)  # (V, 3)
        self.register_buffer("faces", faces, persistent=False)  # (F, 3)
        self.register_buffer("nbr_idx", nbr_idx, persistent=False)  # (V, 6)
        self.register_buffer("nbr_w", nbr_w, persistent=False)  # (V, 6)
        rows = torch.arange(len(verts)).repeat_interleave(MAX_NEIGHBOURS)
        # the same averaging as a sparse CSR matrix and its transpose (for the backward); plain
        # attributes, not buffers, so DDP's buffer broadcast never sees a sparse tensor
        with warnings.catch_warnings():  # "sparse CSR is beta" / invariant-check notices, once per model
            warnings.simplefilter("ignore", UserWarning)
            coo = torch.sparse_coo_tensor(torch.stack([rows, nbr_idx.flatten()]), nbr_w.flatten(),
                                          (len(verts), len(verts))).coalesce()
            self._adjacency = (coo.to_sparse_csr(), coo.t().coalesce().to_sparse_csr())

    def _sparse(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        adj, adj_t = self._adjacency
        if adj.device != like.device or adj.dtype != like.dtype:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                self._adjacency = adj, adj_t = (adj.to(like.device, like.dtype), adj_t.to(like.device, like.dtype))
        return adj, adj_t

    def add_mean(self, base: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """``base + mean of each vertex's neighbours' h``: (V, B, C) each -> (V, B, C): one sparse CSR
        ``addmm`` on (V, B*C)."""
        v, b, c = h.shape
        adj, adj_t = self._sparse(h)
        out = _AddNeighbourMean.apply(base.reshape(v, b * c), h.reshape(v, b * c), adj, adj_t)  # (V, B*C)
        return out.view(v, b, c)


class GraphConv(nn.Module):
    """``h' = W_self h + W_nbr · mean of the neighbours' h + b`` on vertex-major (V, B, C_in) input.

    The neighbour mean is taken after the linear map (they commute), on ``c_out`` channels.
    """

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.own = nn.Linear(c_in, c_out)
        self.nbr = nn.Linear(c_in, c_out, bias=False)

    def linear(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W_self h + b, W_nbr h)``, (V, B, C_out) each."""
        return self.own(h), self.nbr(h)

    def forward(self, h: torch.Tensor, graph: MeshGraph, extra: torch.Tensor | None = None) -> torch.Tensor:
        own, nbr = self.linear(h)  # (V, B, C_out) each
        if extra is not None:
            own = own + extra  # a per-shoe bias (1, B, C_out) or another linear term
        return graph.add_mean(own, nbr)


class Block(nn.Module):
    """Residual graph-conv block: two graph convolutions with ReLU."""

    def __init__(self, c: int):
        super().__init__()
        self.g1, self.g2 = GraphConv(c, c), GraphConv(c, c)

    def forward(self, h, graph):
        return h + self.g2(F.relu(self.g1(h, graph)), graph)


class Stage(nn.Module):
    """Image features (V, B, F) (+ the previous stage's hidden features) -> offsets (V, B, 3) and the
    hidden features (V, B, hidden) handed to the next stage."""

    def __init__(self, c_feat: int, c_prev: int, hidden: int, blocks: int, max_offset: float, c_glob: int = 0):
        super().__init__()
        self.inp = GraphConv(c_feat, hidden)
        self.prev = GraphConv(c_prev, hidden) if c_prev else None
        self.glob = nn.Linear(c_glob or hidden, hidden)  # the global feature (c_glob channels) as a per-shoe bias
        self.blocks = nn.ModuleList(Block(hidden) for _ in range(blocks))
        self.out = GraphConv(hidden, 3)
        self.max_offset = max_offset

    def forward(self, feats, prev, glob, graph):  # feats (V, B, F), prev (V, B, P) | None, glob (B, hidden)
        extra = self.glob(glob).unsqueeze(0)  # (1, B, hidden)
        if self.prev is not None:  # the GraphConv of the concatenation [feats, prev], without concatenating
            (own_f, nbr_f), (own_p, nbr_p) = self.inp.linear(feats), self.prev.linear(prev)
            h = graph.add_mean(own_f + own_p + extra, nbr_f + nbr_p)
        else:
            h = self.inp(feats, graph, extra)
        h = F.relu(h)
        for block in self.blocks:
            h = block(h, graph)
        return self.max_offset * torch.tanh(self.out(h, graph)), h  # (V, B, 3), (V, B, hidden)


def view_projection() -> tuple[torch.Tensor, torch.Tensor]:
    """``(P, o)``, (3, 8) and (8,) float32, with ``x @ P + o`` = the NDC of point ``x`` in each view of
    ``camera.VIEW_NAMES``, concatenated (x, y per view). Built from ``camera.project_ndc`` applied to
    the basis vectors and the origin: the views are orthographic, so the projection is affine and
    this is exact; one matmul then projects into all four views."""
    eye, zero = torch.eye(3, dtype=torch.float64), torch.zeros(1, 3, dtype=torch.float64)
    offset = torch.cat([camera.project_ndc(zero, name)[0] for name in camera.VIEW_NAMES])  # (8,)
    proj = torch.cat([camera.project_ndc(eye, name) for name in camera.VIEW_NAMES], 1) - offset  # (3, 8)
    return proj.float(), offset.float()


def vertex_grids(verts: torch.Tensor, proj: torch.Tensor, offset: torch.Tensor, v: int, b: int) -> torch.Tensor:
    """``grid_sample`` grids (B*4, V, 1, 2) of every vertex (V, B, 3) in every view (``view_projection``)."""
    grids = (verts.transpose(0, 1) @ proj + offset).view(b, v, N_VIEWS, 2).transpose(1, 2)  # (B, 4, V, 2)
    return grids.reshape(-1, v, 1, 2).contiguous()  # a strided grid is 20x slower


def stack_features(sampled: list[torch.Tensor], verts: torch.Tensor, channels: int, v: int, b: int) -> torch.Tensor:
    """Sampled maps (B*4, C_i, V, 1) + the vertices (V, B, 3) -> (V, B, 4 * sum C_i + 3), contiguous."""
    feats = torch.cat(sampled, 1).reshape(b, N_VIEWS * channels, v)  # (B, 4 * C, V)
    # positions join here, channel-major (concatenating permuted tensors along the last dim is slow);
    # one copy to vertex-major keeps the following matmuls on contiguous rows
    return torch.cat([feats, verts.permute(1, 2, 0)], 1).permute(2, 0, 1).contiguous()  # (V, B, 4 * C + 3)


def project_features(maps: list[torch.Tensor], verts: torch.Tensor, proj: torch.Tensor,
                     offset: torch.Tensor) -> torch.Tensor:
    """Sample every map at every vertex's projection in every view; views concatenated.

    maps: list of (B * 4, C_i, H_i, W_i) (views in ``VIEW_NAMES`` order); verts: (V, B, 3); ``proj``,
    ``offset``: ``view_projection()``. Returns (V, B, 4 * sum C_i + 3), contiguous: view-major, then
    map, then channel; the vertex position last. Bilinear, "border" padding.
    """
    v, b, _ = verts.shape
    grids = vertex_grids(verts, proj, offset, v, b)  # (B*4, V, 1, 2)
    sampled = [F.grid_sample(m, grids, mode="bilinear", padding_mode="border", align_corners=False)
               for m in maps]  # each (B*4, C_i, V, 1)
    return stack_features(sampled, verts, sum(m.shape[1] for m in maps), v, b)


class MeshStudent(nn.Module):
    """Views (B, 4, 4, S, S) -> vertices (B, V, 3) of a deformed ico-sphere (see the module docstring)."""

    def __init__(self, config: StudentConfig | None = None):
        super().__init__()
        self.config = config or StudentConfig()
        c = self.config
        first = c.level - c.stages + 1
        if c.stages < 1 or first < 0:
            raise ValueError(f"{c.stages} stage(s) cannot end at ico-sphere level {c.level}")
        if not 1 <= c.fine_maps <= 4:
            raise ValueError(f"fine_maps must be 1 to 4, the CNN's maps (got {c.fine_maps})")
        if len(c.template_axes) != 3 or not all(float(a) > 0 for a in c.template_axes):
            raise ValueError(f"template_axes must be three positive extents (got {list(c.template_axes)})")
        pairs = [unpool_pairs(lv) for lv in range(first, c.level)]  # (V_{k+1}, 2) parents of level k+1's vertices
        self.graphs = nn.ModuleList(MeshGraph(lv, c.template_axes) for lv in range(first, c.level + 1))
        for k, p in enumerate(pairs):
            self.register_buffer(f"unpool{k}", p, persistent=False)
        proj, offset = view_projection()
        self.register_buffer("proj", proj, persistent=False)  # (3, 8)
        self.register_buffer("proj_offset", offset, persistent=False)  # (8,)
        self.encoder = Encoder(c.width, c.sampled)
        self.global_fc = nn.Sequential(nn.Linear(self.encoder.global_channels * N_VIEWS, c.hidden), nn.ReLU())
        chans = self.encoder.map_channels
        # (C_i, S_i) of the image, S/4, S/8, S/16 maps: each stride-2 3x3 conv (padding 1) halves, rounding up
        self.map_shapes = [(ch, -(-c.image_size // 2 ** k)) for ch, k in zip(chans, (0, 2, 3, 4))]
        self.coarse_maps, self.fine_maps = len(chans), c.fine_maps
        stages = []
        for k in range(c.stages):
            fine = k and k == c.stages - 1
            c_feat = N_VIEWS * sum(chans[: self.fine_maps if fine else self.coarse_maps]) + 3  # + position
            stages.append(Stage(c_feat, c.hidden if k else 0, (c.fine_hidden or c.hidden) if fine else c.hidden,
                                c.fine_blocks if k == c.stages - 1 else c.blocks, c.max_offset, c.hidden))
        self.stages = nn.ModuleList(stages)

    @property
    def template(self) -> torch.Tensor:
        """(V, 3) vertices of the output-level starting mesh (the ico-sphere scaled by ``template_axes``)."""
        return self.graphs[-1].template

    @property
    def faces(self) -> torch.Tensor:
        """(F, 3) faces of the output-level ico-sphere (level 4: 5120)."""
        return self.graphs[-1].faces

    def forward(self, views: torch.Tensor) -> torch.Tensor:
        b, n, ch, s, _ = views.shape  # (B, 4, 4, S, S)
        maps, pooled = self.encoder(views.reshape(-1, ch, s, s))
        glob = self.global_fc(pooled.reshape(-1, n * self.encoder.global_channels))  # (B, hidden)
        verts = self.graphs[0].template.unsqueeze(1).expand(-1, b, -1)  # (V0, B, 3)
        hidden = None
        for k, (stage, graph) in enumerate(zip(self.stages, self.graphs)):
            if k:
                pairs = getattr(self, f"unpool{k - 1}")  # (V_k, 2)
                verts = 0.5 * (verts.index_select(0, pairs[:, 0]) + verts.index_select(0, pairs[:, 1]))
                hidden = 0.5 * (hidden.index_select(0, pairs[:, 0]) + hidden.index_select(0, pairs[:, 1]))
            used = self.maps_of(k, maps)
            feats = project_features(used, verts, self.proj, self.proj_offset)  # (V, B, F)
            offset, hidden = stage(feats, hidden, glob, graph)
            verts = verts + offset  # (V, B, 3)
        return verts.transpose(0, 1).contiguous()  # (B, V, 3)

    def maps_of(self, k: int, maps: list) -> list:
        """The maps stage ``k`` reads: all of them, the fine (last, k > 0) stage the first ``fine_maps``."""
        return maps[: self.fine_maps] if k and k == len(self.stages) - 1 else maps


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
