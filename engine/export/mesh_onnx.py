"""The mesh student's ONNX form: an export-time module swap with the same numbers as the eager model.

``export_form(model)`` (called by ``onnx_tools.export_onnx``) returns, for a ``MeshStudent``, a module
sharing every weight of ``model`` whose forward traces into a lean graph; ``engine.students.mesh_student``
itself stays plain eager code. Four things differ from the eager forward (same numbers, ~1e-6):

* the neighbour mean gathers through small shared tables (``NeighbourSum``, below) instead of a sparse
  CSR matmul (ONNX has no sparse ops), and unpooling is ``pair_sum`` over the same table;
* each graph convolution computes its own and neighbour linear maps in one MatMul (the weights
  concatenated into one constant: half the MatMuls, each quantised in the INT8 file) — ``FusedGraphConv``;
* shapes are Python ints, so the exported graph computes none;
* ``grid_sample`` reads grids clamped to the outermost pixel centres ±(1 - 1/S) with "zeros" padding
  (the same values; ONNX Runtime's "border" is 3-6x slower).

The neighbour tables:

ONNX has no sparse ops. A gather over a (V, 6) neighbour table with a (V, 6) weight table stores 12
numbers per vertex (level 4: 30,744). ``NeighbourSum`` gathers through three tables that a coarse-to-fine
student's two levels share (E: the coarse level's edges, one new vertex each at the fine level):

* ``ends`` (2E,): both endpoints of every edge, row s * E + e = end s of edge e. The unpooling and a
  new vertex's two parents are ``pair_sum`` over it.
* ``ring{k}`` (d, n) per run of vertices with the same degree d (an ico-sphere's 12 original vertices,
  degree 5, come first): every vertex's edges in cyclic order around it, each as the row of ``ends``
  holding the edge's other end. Rows of ``x[ends]`` through a ring are the vertex's neighbours at the
  coarse level; rows of the new vertices taken twice over (row s * E + e: the vertex on edge e) are a
  kept vertex's neighbours at the fine level.
* ``wings`` (2E,), the fine level: for each end of each edge, the ring slot holding that edge. The other
  four neighbours of edge e's new vertex lie on the edges beside e in the rings of both its ends.

Means divide by the degree per run; every table is (slots, rows), so each sum runs over the leading axis.
Default student: 3 x 3,840 indices, stored as uint16 by ``onnx_tools.compact_model``.
``ScatterND`` (reduction "add") over the edges would need fewer, but ONNX Runtime splits it over threads
without guarding repeated rows: wrong sums at 2 threads. The tables are checked against the mesh when
built (``RuntimeError`` if they do not give its neighbours).
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from engine.geometry.mesh import icosphere, unique_edges
from engine.students.mesh_student import (N_VIEWS, GraphConv, MeshGraph, MeshStudent, stack_features,
                                          vertex_grids)


def degree_runs(degree: list[int]) -> list[tuple[int, int, int]]:
    """``(start, stop, d)`` for every run of consecutive vertices with the same degree d."""
    runs, start = [], 0
    for v in range(1, len(degree) + 1):
        if v == len(degree) or degree[v] != degree[start]:
            runs.append((start, v, degree[start]))
            start = v
    return runs


def rings(faces: torch.Tensor, num_verts: int) -> list[list[int]]:
    """Every vertex's neighbours in cyclic order around it (consecutive ones share a face with it), each
    ring starting at its smallest neighbour; ``RuntimeError`` if a vertex's faces do not close a ring."""
    succ: list[dict[int, int]] = [{} for _ in range(num_verts)]
    for f in faces.tolist():
        for k in range(3):
            succ[f[k]][f[(k + 1) % 3]] = f[(k + 2) % 3]
    out = []
    for nxt in succ:
        ring = [min(nxt)]
        while nxt[ring[-1]] != ring[0] and len(ring) <= len(nxt):
            ring.append(nxt[ring[-1]])
        if len(ring) != len(nxt) or nxt[ring[-1]] != ring[0]:
            raise RuntimeError("a vertex's faces do not close a ring around it")
        out.append(ring)
    return out


class NeighbourSum(nn.Module):
    """Neighbour means (V, B, C) -> (V, B, C) over one level from shared tables (see the module doc).

    ``neighbours``: every vertex's neighbour set. A plain level: ``edges`` (E, 2), its edges (in the
    order of the next level's new vertices, so that the tables are the ones the next level uses), and
    ``faces`` its faces. A subdivided level: ``parents`` (E, 2), the coarse edge each new vertex splits
    (the kept vertices come first), and ``faces`` the coarse faces.
    """

    def __init__(self, neighbours: list[set[int]], faces: torch.Tensor, edges: torch.Tensor | None = None,
                 parents: torch.Tensor | None = None):
        super().__init__()
        ends = edges if parents is None else parents  # (E, 2)
        n_edges, flat = len(ends), ends.t().reshape(-1).tolist()  # flat[s * E + e]: end s of edge e
        self.kept, self.n_edges = 0 if parents is None else len(neighbours) - n_edges, n_edges
        row = {(a, b): n_edges + e for e, (a, b) in enumerate(ends.tolist())}  # (vertex, neighbour) -> row
        row.update({(b, a): e for e, (a, b) in enumerate(ends.tolist())})
        n_ring = len(neighbours) - n_edges if parents is not None else len(neighbours)  # the vertices of ``faces``
        cyc = [[row.get((v, x), -1) for x in ring] for v, ring in enumerate(rings(faces, n_ring))]  # ring order
        if any(-1 in r for r in cyc):
            raise RuntimeError("the ONNX neighbour tables do not give the mesh's neighbours (an edge is missing)")
        self.runs = degree_runs([len(r) for r in cyc])
        self.register_buffer("ends", torch.tensor(flat), persistent=False)  # (2E,)
        for k, (start, stop, _) in enumerate(self.runs):
            self.register_buffer(f"ring{k}", torch.tensor(cyc[start:stop]).t().contiguous(), persistent=False)
        if parents is None:
            got = [{flat[r] for r in ring} for ring in cyc]
        else:  # slot (k, v) of a run, slot-major as ``forward`` lays them out; the slot of each edge end
            slots = [(k, v) for start, stop, d in self.runs for k in range(d) for v in range(start, stop)]
            where = {(v, cyc[v][k] % n_edges): j for j, (k, v) in enumerate(slots)}
            wings = [where[flat[s * n_edges + e], e] for s in (0, 1) for e in range(n_edges)]
            self.register_buffer("wings", torch.tensor(wings), persistent=False)  # (2E,) slots of both ends
            got = [{self.kept + r % n_edges for r in ring} for ring in cyc]
            for e in range(n_edges):  # a new vertex: its parents and the ring neighbours of its edge at both
                nb = {flat[e], flat[n_edges + e]}
                for j in (wings[e], wings[n_edges + e]):
                    k, v = slots[j]
                    nb |= {self.kept + cyc[v][(k + step) % len(cyc[v])] % n_edges for step in (-1, 1)}
                got.append(nb)
        if got != [set(s) for s in neighbours]:
            raise RuntimeError("the ONNX neighbour tables do not give the mesh's neighbours")

    def pair_sum(self, x: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """``x[a] + x[b]`` for every edge (a, b) (a subdivided level: every new vertex's parents):
        (V, B, C) -> (E, B, C). ``index``: another (2E,) table of rows of ``x`` in place of ``ends``."""
        both = x[self.ends if index is None else index]  # (2E, B, C)
        return both[: self.n_edges] + both[self.n_edges:]

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        rings = [getattr(self, f"ring{k}") for k in range(len(self.runs))]  # (d, n) each
        if not self.kept:  # the other ends of each vertex's edges
            both = h[self.ends]  # (2E, B, C)
            return torch.cat([both[ring].mean(0) for ring in rings])  # (V, B, C)
        new = h[self.kept:]  # (E, B, C): the vertex on each coarse edge
        twice = torch.cat([new, new])  # (2E, B, C): row s * E + e is edge e's new vertex
        around = [twice[ring] for ring in rings]  # (d, n, B, C): a kept vertex's new neighbours, in ring order
        beside = torch.cat([(x[[d - 1, *range(d - 1)]] + x[[*range(1, d), 0]]).flatten(0, 1)  # slot-major
                            for x, (_, _, d) in zip(around, self.runs)])  # (2E, B, C): each slot's ring neighbours
        news = self.pair_sum(h) + self.pair_sum(beside, self.wings)  # parents + 4 wings (checked): (E, B, C)
        return torch.cat([x.mean(0) for x in around] + [news / 6])  # (V, B, C)


def neighbour_tables(graph: MeshGraph, edges: torch.Tensor | None = None,
                     parents: torch.Tensor | None = None) -> NeighbourSum:
    """The ``NeighbourSum`` of one level: ``edges`` (E, 2), the level's edges in the next level's order
    (default: ``unique_edges``), or ``parents`` (V - V_c, 2), the coarse edge each new vertex splits when
    the level is unpooled from ``level - 1``."""
    sets = [set(row[w > 0].tolist()) for row, w in zip(graph.nbr_idx, graph.nbr_w)]
    faces = graph.faces.cpu() if parents is None else icosphere(graph.level - 1)[1]
    return NeighbourSum(sets, faces, unique_edges(faces) if edges is None and parents is None else edges, parents)


class TableGraph(nn.Module):
    """A ``MeshGraph``'s export form: ``add_mean`` through its ``NeighbourSum`` tables."""

    def __init__(self, graph: MeshGraph, tables: NeighbourSum):
        super().__init__()
        self.num_verts, self.tables = graph.num_verts, tables
        self.register_buffer("template", graph.template, persistent=False)  # (V, 3)

    def add_mean(self, base: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return base + self.tables(h)


class FusedGraphConv(GraphConv):
    """A ``GraphConv`` (its own weights, shared) whose two linear maps run as one MatMul."""

    def __init__(self, conv: GraphConv):
        nn.Module.__init__(self)
        self.own, self.nbr = conv.own, conv.nbr

    def linear(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        own, nbr = F.linear(h, torch.cat([self.own.weight, self.nbr.weight])).split(self.own.out_features, -1)
        return own + self.own.bias, nbr


def _fused(module: nn.Module) -> nn.Module:
    """A shallow copy of ``module`` with every ``GraphConv`` below it fused; the weights stay shared."""
    if isinstance(module, GraphConv):
        return FusedGraphConv(module)
    new = copy.copy(module)
    new._modules = {name: None if child is None else _fused(child) for name, child in module._modules.items()}
    return new


class ExportStudent(nn.Module):
    """``MeshStudent``'s export form (see the module docstring): views (B, 4, 4, S, S) -> (B, V, 3)."""

    def __init__(self, student: MeshStudent):
        super().__init__()
        g = student.graphs
        new = [getattr(student, f"unpool{k}")[g[k].num_verts:] for k in range(len(g) - 1)] + [None]  # (E_k, 2)
        self.graphs = nn.ModuleList(TableGraph(graph, neighbour_tables(graph, edges=new[k],
                                                                      parents=new[k - 1] if k else None))
                                    for k, graph in enumerate(g))
        self.encoder, self.global_fc, self.stages = student.encoder, student.global_fc, _fused(student.stages)
        self.register_buffer("proj", student.proj, persistent=False)  # (3, 8)
        self.register_buffer("proj_offset", student.proj_offset, persistent=False)  # (8,)
        self.image_size, self.map_shapes, self.maps_of = student.config.image_size, student.map_shapes, student.maps_of

    def project(self, maps: list[torch.Tensor], verts: torch.Tensor, v: int) -> torch.Tensor:
        """``mesh_student.project_features`` with Python-int shapes and clamped "zeros"-padded grids."""
        shapes = self.map_shapes[: len(maps)]  # (C_i, S_i) per map, square
        grids = vertex_grids(verts, self.proj, self.proj_offset, v, -1)  # (B*4, V, 1, 2)
        sampled = [F.grid_sample(m, grids.clamp(-1 + 1 / size, 1 - 1 / size), mode="bilinear",
                                 padding_mode="zeros", align_corners=False) for m, (_, size) in zip(maps, shapes)]
        return stack_features(sampled, verts, sum(c for c, _ in shapes), v, -1)

    def forward(self, views: torch.Tensor) -> torch.Tensor:
        b = views.shape[0]
        s, ch = self.image_size, self.encoder.map_channels[0]  # Python ints: the graph computes no shapes
        maps, pooled = self.encoder(views.reshape(-1, ch, s, s))
        glob = self.global_fc(pooled.reshape(-1, N_VIEWS * self.encoder.global_channels))  # (B, hidden)
        verts = self.graphs[0].template.unsqueeze(1).expand(-1, b, -1)  # (V0, B, 3)
        hidden = None
        for k, (stage, graph) in enumerate(zip(self.stages, self.graphs)):
            if k:  # unpooling from the table graph k's neighbour sums use (kept vertices first)
                verts, hidden = (torch.cat([x, 0.5 * graph.tables.pair_sum(x)]) for x in (verts, hidden))
            feats = self.project(self.maps_of(k, maps), verts, graph.num_verts)  # (V, B, F)
            offset, hidden = stage(feats, hidden, glob, graph)
            verts = verts + offset  # (V, B, 3)
        return verts.transpose(0, 1).contiguous()  # (B, V, 3)


def export_form(module: nn.Module) -> nn.Module:
    """What ``onnx_tools.export_onnx`` traces: ``ExportStudent(module)`` for a mesh student (in ``module``'s
    train / eval mode), any other module itself."""
    if not isinstance(module, MeshStudent):
        return module
    return ExportStudent(module).train(module.training)
