"""Neighbour tables for the mesh student's ONNX form (``mesh_onnx``): one level's neighbour means and unpooling.

ONNX has no sparse ops, so the export gathers rows through index tables. Two kinds, one interface
(``mean(h, channels)``: (V, B, C) -> (V, B, C); ``unpool(x, channels)``: coarse (V_c, B, C) -> (V, B, C);
``num_verts``; ``template``). ``SlotTable`` is read straight from the level's neighbour lists;
``EdgeTable`` is checked against the mesh when built (``RuntimeError`` if its tables do not give the
mesh's neighbours):

* ``SlotTable`` — the fast one (``student.onnx``). Per run of consecutive vertices with the same degree d
  (an ico-sphere: its 12 original vertices, degree 5, then the rest, degree 6) a slot-major (d, n)
  table of their neighbours: one ``Gather``, one ``MatMul`` by a (1, d) row of 1/d (the slots summed),
  the runs concatenated. Unpooling gathers both parents of every vertex through a (2, V) table (a kept
  vertex is its own parent twice) and averages them with one ``MatMul`` by (1, 2) halves. Timed kernel
  by kernel in ONNX Runtime: a leading-axis ``ReduceMean`` / ``ReduceSum`` is 2-4x slower than that
  MatMul, a broadcast ``Mul`` by 1/degree 2-3x slower than a same-shape one (hence the runs), and
  ``ScatterND`` (reduction "add") splits over threads without guarding repeated rows (wrong sums at 2
  threads). Default student: 6 x 642 + 6 x 2562 + 2 x 2562 indices (48 KB as uint16).
* ``EdgeTable`` — the small one (``student.int8.onnx``, whose time ``ConvInteger`` dominates): three
  tables of 2E indices that a coarse-to-fine student's two levels share (E: the coarse level's edges,
  one new vertex each at the fine level), 3 x 3,840 for the default student (23 KB):

  * ``ends`` (2E,): both endpoints of every edge, row s * E + e = end s of edge e. The unpooling and a
    new vertex's two parents are ``pair_sum`` over it.
  * ``ring{k}`` (d, n) per run of vertices with the same degree d: every vertex's edges in cyclic order
    around it, each as the row of ``ends`` holding the edge's other end. Rows of ``x[ends]`` through a
    ring are the vertex's neighbours at the coarse level; rows of the new vertices taken twice over
    (row s * E + e: the vertex on edge e) are a kept vertex's neighbours at the fine level.
  * ``wings`` (2E,), the fine level: for each end of each edge, the ring slot holding that edge. The other
    four neighbours of edge e's new vertex lie on the edges beside e in the rings of both its ends.

  Means divide by the degree per run; every table is (slots, rows), so each sum runs over the leading axis.

Both are stored as uint16 by ``onnx_tools.compact_model``.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from engine.geometry.mesh import icosphere, unique_edges
from engine.students.mesh_student import MeshGraph


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


class EdgeTable(nn.Module):
    """The small tables (see the module doc): one level's neighbour means and unpooling.

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

    def unpool(self, x: torch.Tensor, channels: int) -> torch.Tensor:
        """Coarse (V_c, B, C) -> this subdivided level's (V, B, C): the kept vertices, then each new vertex
        the mean of its edge's ends."""
        return torch.cat([x, 0.5 * self.pair_sum(x)])

    def mean(self, h: torch.Tensor, channels: int) -> torch.Tensor:
        """Mean of every vertex's neighbours' rows: (V, B, C) -> (V, B, C)."""
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


def edge_table(graph: MeshGraph, edges: torch.Tensor | None = None, parents: torch.Tensor | None = None) -> EdgeTable:
    """The ``EdgeTable`` of one level: ``edges`` (E, 2), the level's edges in the next level's order
    (default: ``unique_edges``), or ``parents`` (V - V_c, 2), the coarse edge each new vertex splits when
    the level is unpooled from ``level - 1``."""
    sets = [set(row[w > 0].tolist()) for row, w in zip(graph.nbr_idx, graph.nbr_w)]
    faces = graph.faces.cpu() if parents is None else icosphere(graph.level - 1)[1]
    table = EdgeTable(sets, faces, unique_edges(faces) if edges is None and parents is None else edges, parents)
    table.num_verts = graph.num_verts
    table.register_buffer("template", graph.template, persistent=False)  # (V, 3)
    return table


class SlotTable(nn.Module):
    """The fast tables (see the module doc). ``graph``: the level; ``parents`` (V, 2): the coarse vertices
    each vertex of this level is the mean of (``MeshStudent.unpool{k}``), None for the first level."""

    def __init__(self, graph: MeshGraph, parents: torch.Tensor | None = None):
        super().__init__()
        v = graph.num_verts
        rows = [row[w > 0].tolist() for row, w in zip(graph.nbr_idx, graph.nbr_w)]  # each vertex's neighbours
        if min(map(len, rows)) < 1 or len({x for r in rows for x in r} - set(range(v))):
            raise RuntimeError("the ONNX neighbour tables need at least one neighbour at every vertex, all in the mesh")
        self.num_verts, self.runs = v, degree_runs([len(r) for r in rows])
        for k, (start, stop, d) in enumerate(self.runs):
            self.register_buffer(f"slots{k}", torch.tensor(rows[start:stop]).t().contiguous(), persistent=False)  # (d, n)
            self.register_buffer(f"weights{k}", torch.full((1, d), 1.0 / d), persistent=False)  # (1, d)
        self.register_buffer("template", graph.template, persistent=False)  # (V, 3)
        if parents is not None:
            if parents.shape != (v, 2):
                raise RuntimeError(f"unpooling parents must be ({v}, 2), got {tuple(parents.shape)}")
            self.register_buffer("parents", parents.t().contiguous(), persistent=False)  # (2, V)
            self.register_buffer("halves", torch.full((1, 2), 0.5), persistent=False)  # (1, 2)

    def mean(self, h: torch.Tensor, channels: int) -> torch.Tensor:
        """Mean of every vertex's neighbours' rows: (V, B, C) -> (V, B, C), C = ``channels``: per degree
        run one Gather and one MatMul by 1/d (the slots summed), the runs concatenated."""
        runs = []
        for k, (_, _, d) in enumerate(self.runs):
            slots, weights = getattr(self, f"slots{k}"), getattr(self, f"weights{k}")  # (d, n), (1, d)
            runs.append(weights @ h[slots].reshape(d, -1))  # (1, n*B*C)
        return torch.cat(runs, 1).reshape(self.num_verts, -1, channels)  # (V, B, C)

    def unpool(self, x: torch.Tensor, channels: int) -> torch.Tensor:
        """Coarse (V_c, B, C) -> this level's (V, B, C): each vertex the mean of its two parents."""
        both = x[self.parents].reshape(2, -1)  # (2, V*B*C)
        return (self.halves @ both).reshape(self.num_verts, -1, channels)  # (V, B, C)
