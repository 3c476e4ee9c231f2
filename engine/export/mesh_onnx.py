"""The mesh student's ONNX form: an export-time module with the same numbers as the eager model.

``export_form(model, small_tables)`` (called by ``onnx_tools.export_onnx``) returns, for a ``MeshStudent``,
a module sharing every weight of ``model`` whose forward traces into a lean graph for ONNX Runtime on a
CPU; ``engine.students.mesh_student`` itself stays plain eager code. What differs from the eager forward
(same numbers, ~1e-6), each chosen by timing ONNX Runtime's kernels one by one (issue 17 item 6:
``bench/bench_export3d.py`` times the whole model, ``--profile`` per operator):

* Neighbour means and unpooling gather rows through index tables (ONNX has no sparse ops):
  ``mesh_tables.SlotTable`` (fast, ``student.onnx``) or ``mesh_tables.EdgeTable`` (``small_tables``:
  half the bytes, for the INT8 file).
* Linear maps run on 2-D (V*B, C) views so that they export as ``Gemm`` with the bias inside: a
  broadcast bias ``Add`` after a 3-D MatMul costs 2-3x an add of equal shapes. A graph convolution is
  two ``Gemm``s and no ``Add``: the bias joins the neighbour term (the mean of rows plus a constant is
  their mean plus that constant) and the neighbour mean is the second ``Gemm``'s C input.
* A fine stage's first graph convolution reads [image features, unpooled previous hidden features].
  Unpooling averages rows, so it commutes with a linear map: the previous-features half runs on the
  coarse vertices (a quarter of its multiply-adds) and is unpooled after (``unpooled_input_conv``).
* The projection into the views and ``verts + max_offset * tanh(...)`` are one ``Gemm`` each.
* Shapes are Python ints, so the graph computes none but the batch.
* ``grid_sample`` reads grids clamped to the outermost pixel centres ±(1 - 1/S) with "zeros" padding
  (the same values as "border"; ONNX Runtime's "border" is 3-6x slower).

Default student, ONNX Runtime 1.31, batch 1, 1 thread, side by side on one machine: 7.1 ms (the form this
replaced) -> 4.5 ms per shoe; the ``fast`` size (99k parameters, issue 17 item 6) 2.1 ms.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from engine.export.mesh_tables import EdgeTable, SlotTable, edge_table
from engine.students.mesh_student import N_VIEWS, GraphConv, MeshStudent, Stage, stack_features

Table = SlotTable | EdgeTable


def linear(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, v: int) -> torch.Tensor:
    """``h @ weight.T + bias`` on the 2-D view (V*B, C_in), so that it exports as one ``Gemm``:
    (V, B, C_in) -> (V, B, C_out)."""
    return F.linear(h.reshape(-1, weight.shape[1]), weight, bias).reshape(v, -1, weight.shape[0])


def graph_conv(conv: GraphConv, h: torch.Tensor, table: Table, extra: torch.Tensor | None = None) -> torch.Tensor:
    """``GraphConv.forward`` through the level's tables: (V, B, C_in) -> (V, B, C_out) in two ``Gemm``s.

    The bias joins the neighbour term (a mean of rows plus a constant is the mean plus that constant)
    and the neighbour mean is the second ``Gemm``'s C input, so no ``Add`` is left but ``extra``'s."""
    v, c = table.num_verts, conv.own.out_features
    mean = table.mean(linear(h, conv.nbr.weight, conv.own.bias, v), c)  # (V, B, C_out): mean of (W_nbr h + b)
    if extra is not None:
        mean = mean + extra  # (1, B, C_out): the per-shoe global bias
    out = torch.addmm(mean.reshape(-1, c), h.reshape(-1, conv.own.in_features), conv.own.weight.t())  # (V*B, C_out)
    return out.reshape(v, -1, c)


def unpooled_input_conv(stage: Stage, feats: torch.Tensor, prev: torch.Tensor, table: Table,
                        extra: torch.Tensor, coarse: int) -> torch.Tensor:
    """A fine stage's first graph convolution of [feats, unpooled prev]: (V, B, F), coarse (V_c, B, P) ->
    (V, B, C). Unpooling averages rows, so it commutes with a linear map: the ``prev`` half of both
    linear maps runs on the ``coarse`` vertices (a quarter of the multiply-adds) and is unpooled after."""
    v, c, f = table.num_verts, stage.inp.own.out_features, stage.inp.own.in_features
    bias = stage.inp.own.bias + stage.prev.own.bias  # both convolutions' biases, on the neighbour side
    nbr_prev = table.unpool(linear(prev, stage.prev.nbr.weight, bias, coarse), c)  # (V, B, C)
    own_prev = table.unpool(linear(prev, stage.prev.own.weight, None, coarse) + extra, c)  # (V, B, C)
    flat = feats.reshape(-1, f)  # (V*B, F)
    nbr = torch.addmm(nbr_prev.reshape(-1, c), flat, stage.inp.nbr.weight.t())  # (V*B, C)
    mean = table.mean(nbr.reshape(v, -1, c), c)  # (V, B, C)
    own = torch.addmm(mean.reshape(-1, c), flat, stage.inp.own.weight.t())  # (V*B, C)
    return own.reshape(v, -1, c) + own_prev


def stage_forward(stage: Stage, feats: torch.Tensor, prev: torch.Tensor | None, glob: torch.Tensor,
                  table: Table, verts: torch.Tensor, coarse: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``Stage.forward`` through the level's tables, its offsets added to ``verts`` (V, B, 3): the moved
    vertices (V, B, 3) and the hidden features (V, B, hidden). ``prev``: the previous stage's hidden
    features on its ``coarse`` vertices (unpooled here), None for the first stage."""
    extra = stage.glob(glob).unsqueeze(0)  # (1, B, hidden)
    if prev is None:
        h = graph_conv(stage.inp, feats, table, extra)
    else:
        h = unpooled_input_conv(stage, feats, prev, table, extra, coarse)
    h = F.relu(h)
    for block in stage.blocks:
        h = h + graph_conv(block.g2, F.relu(graph_conv(block.g1, h, table)), table)
    offset = torch.tanh(graph_conv(stage.out, h, table)).reshape(-1, 3)  # (V*B, 3), before the max_offset scale
    scale = torch.eye(3, device=verts.device) * stage.max_offset  # (3, 3)
    moved = torch.addmm(verts.reshape(-1, 3), offset, scale)  # one Gemm: verts + max_offset * tanh(...)
    return moved.reshape(table.num_verts, -1, 3), h


class ExportStudent(nn.Module):
    """``MeshStudent``'s export form (see the module docstring): views (B, 4, 4, S, S) -> (B, V, 3)."""

    def __init__(self, student: MeshStudent, small_tables: bool = False):
        super().__init__()
        g = student.graphs
        if small_tables:  # each level's tables in the order of the next level's new vertices (stored once)
            new = [getattr(student, f"unpool{k}")[g[k].num_verts:] for k in range(len(g) - 1)] + [None]  # (E_k, 2)
            tables = [edge_table(graph, edges=new[k], parents=new[k - 1] if k else None) for k, graph in enumerate(g)]
        else:
            tables = [SlotTable(graph, getattr(student, f"unpool{k - 1}") if k else None) for k, graph in enumerate(g)]
        self.tables = nn.ModuleList(tables)
        self.encoder, self.global_fc, self.stages = student.encoder, student.global_fc, student.stages
        self.register_buffer("proj", student.proj, persistent=False)  # (3, 8)
        self.register_buffer("proj_offset", student.proj_offset, persistent=False)  # (8,)
        self.image_size, self.map_shapes, self.maps_of = student.config.image_size, student.map_shapes, student.maps_of

    def project(self, maps: list[torch.Tensor], verts: torch.Tensor, v: int) -> torch.Tensor:
        """``mesh_student.project_features`` with Python-int shapes and clamped "zeros"-padded grids."""
        shapes = self.map_shapes[: len(maps)]  # (C_i, S_i) per map, square
        ndc = torch.addmm(self.proj_offset, verts.reshape(-1, 3), self.proj)  # (V*B, 8): one Gemm, every view
        grids = ndc.reshape(v, -1, N_VIEWS, 2).permute(1, 2, 0, 3).reshape(-1, v, 1, 2)  # (B*4, V, 1, 2)
        sampled = [F.grid_sample(m, grids.clamp(-1 + 1 / size, 1 - 1 / size), mode="bilinear",
                                 padding_mode="zeros", align_corners=False) for m, (_, size) in zip(maps, shapes)]
        return stack_features(sampled, verts, sum(c for c, _ in shapes), v, -1)

    def forward(self, views: torch.Tensor) -> torch.Tensor:
        b = views.shape[0]
        s, ch = self.image_size, self.encoder.map_channels[0]  # Python ints: the graph computes no shapes
        maps, pooled = self.encoder(views.reshape(-1, ch, s, s))
        glob = self.global_fc(pooled.reshape(-1, N_VIEWS * self.encoder.global_channels))  # (B, hidden)
        verts = self.tables[0].template.unsqueeze(1).expand(-1, b, -1)  # (V0, B, 3)
        hidden = None
        for k, (stage, table) in enumerate(zip(self.stages, self.tables)):
            if k:  # hidden stays on the coarse vertices: ``unpooled_input_conv`` unpools after its linear maps
                verts = table.unpool(verts, 3)  # (V, B, 3)
            feats = self.project(self.maps_of(k, maps), verts, table.num_verts)  # (V, B, F)
            coarse = self.tables[k - 1].num_verts if k else 0
            verts, hidden = stage_forward(stage, feats, hidden, glob, table, verts, coarse)  # (V, B, 3), (V, B, hidden)
        return verts.transpose(0, 1).contiguous()  # (B, V, 3)


def export_form(module: nn.Module, small_tables: bool = False) -> nn.Module:
    """What ``onnx_tools.export_onnx`` traces: ``ExportStudent(module, small_tables)`` for a mesh student (in
    ``module``'s train / eval mode), any other module itself."""
    if not isinstance(module, MeshStudent):
        return module
    return ExportStudent(module, small_tables).train(module.training)
