"""The mesh student itself: coarse-to-fine unpooling order, the two neighbour-mean paths, config rules,
ONNX export parity (the contract ``engine.export`` builds on)."""
from __future__ import annotations

import onnx
import pytest
import torch

from engine.export import export_onnx, ort_session, parity
from engine.export.mesh_tables import EdgeTable, SlotTable, edge_table
from engine.geometry import camera
from engine.geometry.mesh import icosphere
from engine.students.mesh_student import (MeshGraph, MeshStudent, StudentConfig, count_parameters,
                                          unpool_pairs, view_projection)

torch.set_num_threads(1)
TINY = StudentConfig(width=4, hidden=16, blocks=1, sampled=8, image_size=32)


def test_unpooling_level_3_gives_icosphere_4_in_its_vertex_order():
    coarse, _ = icosphere(3)
    fine, _ = icosphere(4)
    pairs = unpool_pairs(3)  # (2562, 2)
    assert pairs.shape == (2562, 2) and int(pairs.max()) < 642
    assert torch.equal(pairs[:642], torch.arange(642).unsqueeze(1).repeat(1, 2))  # kept vertices first
    mid = 0.5 * (coarse[pairs[:, 0]] + coarse[pairs[:, 1]])  # (2562, 3) edge midpoints, inside the sphere
    torch.testing.assert_close(mid / mid.norm(dim=1, keepdim=True) * 0.5, fine, atol=1e-6, rtol=0)
    # every new vertex sits on an edge of the coarse sphere: its parents are neighbours
    graph = MeshGraph(3)
    assert all(int(b) in graph.nbr_idx[int(a)].tolist() for a, b in pairs[642:].tolist())


def test_forward_shape_faces_and_template_are_the_level_4_icosphere():
    torch.manual_seed(0)
    model = MeshStudent(TINY)
    out = model(torch.rand(2, 4, 4, 32, 32))
    assert out.shape == (2, 2562, 3) and out.is_contiguous() and bool(torch.isfinite(out).all())
    verts, faces = icosphere(4)
    axes = torch.tensor(TINY.template_axes)
    assert torch.equal(model.faces, faces) and torch.equal(model.template, verts * axes)
    extent = model.template.amax(0) - model.template.amin(0)
    torch.testing.assert_close(extent, axes)  # the ellipsoid spans template_axes
    maps, _ = model.encoder(torch.rand(4, 4, 30, 30))  # the export's static map shapes: odd sizes round up
    assert [(m.shape[1], m.shape[-1]) for m in maps] == MeshStudent(StudentConfig(**{**TINY.to_dict(),
                                                                                     "image_size": 30})).map_shapes
    single = MeshStudent(StudentConfig(**{**TINY.to_dict(), "stages": 1}))
    assert single(torch.rand(1, 4, 4, 32, 32)).shape == (1, 2562, 3)
    assert count_parameters(MeshStudent()) < 2_000_000  # "a few million parameters at most"


def test_one_matmul_projects_into_every_view_as_the_camera_module_does():
    proj, offset = view_projection()
    pts = torch.rand(50, 3, generator=torch.Generator().manual_seed(0)) - 0.5
    want = torch.cat([camera.project_ndc(pts, name) for name in camera.VIEW_NAMES], 1)  # (50, 8)
    torch.testing.assert_close(pts @ proj + offset, want)


def test_sparse_neighbour_mean_and_the_onnx_paths_tables_match_the_dense_mean():
    parents = unpool_pairs(1)[42:]  # (120, 2): level 2 as the subdivision of level 1
    graph = MeshGraph(2).double()
    coarse_h = torch.randn(42, 2, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    for tables in (edge_table(MeshGraph(2)), edge_table(MeshGraph(2), parents=parents),
                   SlotTable(MeshGraph(2)), SlotTable(MeshGraph(2), unpool_pairs(1))):
        tables = tables.double()
        v = graph.template.shape[0]
        g = torch.Generator().manual_seed(1)
        base = torch.randn(v, 2, 5, dtype=torch.float64, generator=g, requires_grad=True)
        h = torch.randn(v, 2, 5, dtype=torch.float64, generator=g, requires_grad=True)
        dense = torch.zeros(v, v, dtype=torch.float64)
        dense.scatter_add_(1, graph.nbr_idx, graph.nbr_w.double())  # (V, V) row-stochastic
        assert torch.allclose(dense.sum(1), torch.ones(v, dtype=torch.float64))
        want = base + torch.einsum("uv,vbc->ubc", dense, h)
        torch.testing.assert_close(graph.add_mean(base, h), want)
        torch.testing.assert_close(base + tables.mean(h, 5), want)  # the export form's tables, run eagerly
        if isinstance(tables, EdgeTable) and tables.kept or hasattr(tables, "parents"):  # unpooling from level 1
            pairs = unpool_pairs(1)
            want_up = 0.5 * (coarse_h[pairs[:, 0]] + coarse_h[pairs[:, 1]])
            torch.testing.assert_close(tables.unpool(coarse_h, 5), want_up)
    assert torch.autograd.gradcheck(graph.add_mean, (base, h))
    fine = edge_table(MeshGraph(2), parents=parents)
    coarse = edge_table(MeshGraph(1), edges=parents)  # level 1's tables are the ones level 2 uses: stored once
    assert fine.kept == 42 and torch.equal(coarse.ends, fine.ends)
    assert all(torch.equal(getattr(coarse, f"ring{k}"), getattr(fine, f"ring{k}")) for k in range(2))
    assert [d for _, _, d in fine.runs] == [5, 6] and fine.ends.shape == fine.wings.shape == (240,)
    slots = SlotTable(MeshGraph(2))  # per degree run a (d, n) table: 12 vertices of degree 5, then degree 6
    assert [d for _, _, d in slots.runs] == [5, 6] and slots.slots0.shape == (5, 12) and slots.slots1.shape == (6, 150)
    sets = [set(r[w > 0].tolist()) for r, w in zip(graph.nbr_idx, graph.nbr_w)]
    with pytest.raises(RuntimeError, match="do not give the mesh's neighbours"):
        EdgeTable(sets, icosphere(1)[1], parents=parents.flip(0))  # the new vertices in the wrong order
    with pytest.raises(RuntimeError, match="an edge is missing"):
        edge_table(MeshGraph(2), edges=unpool_pairs(2)[162:][1:])
    with pytest.raises(RuntimeError, match="unpooling parents must be"):
        SlotTable(MeshGraph(2), parents)  # the new vertices' parents only: every vertex needs its pair


def test_config_rejects_unknown_keys_by_name_and_impossible_stages():
    with pytest.raises(ValueError, match="unknown student config keys: hiden"):
        StudentConfig.from_dict({"hiden": 8})
    assert StudentConfig.from_dict(StudentConfig().to_dict()) == StudentConfig()
    with pytest.raises(ValueError, match="cannot end at ico-sphere level"):
        MeshStudent(StudentConfig(level=1, stages=3))


def test_the_fast_size_is_a_valid_smaller_student_and_fine_maps_is_bounded():
    from engine.train.distill_config import STUDENT_PRESETS, validate_config

    fast = MeshStudent(StudentConfig(**STUDENT_PRESETS["fast"]))
    assert count_parameters(fast) == 99_174 and count_parameters(MeshStudent()) == 232_626
    assert fast.stages[-1].out.own.in_features == 16 and fast.fine_maps == 1
    assert validate_config({"data": "d", "cache": "c", "student": STUDENT_PRESETS["fast"]})["student"]["width"] == 8
    with pytest.raises(ValueError, match="fine_maps must be 1 to 4"):
        MeshStudent(StudentConfig(**{**TINY.to_dict(), "fine_maps": 5}))


@pytest.mark.parametrize("fine", [{"fine_hidden": 0, "fine_maps": 2}, {"fine_hidden": 8, "fine_maps": 1}])
def test_onnx_export_matches_torch_at_batch_1_and_3(tmp_path, fine):
    torch.manual_seed(0)
    model = MeshStudent(StudentConfig(**{**TINY.to_dict(), **fine}))
    assert model.stages[-1].out.own.in_features == (fine["fine_hidden"] or TINY.hidden)
    s = model.config.image_size
    path = export_onnx(model, torch.rand(1, 4, 4, s, s), tmp_path / "student.onnx", input_names=("views",),
                       output_names=("vertices",))
    session = ort_session(path, threads=1)
    g = torch.Generator().manual_seed(2)
    for batch in (1, 3):
        views = torch.rand(batch, 4, 4, s, s, generator=g)
        assert parity(model, session, views) <= 1e-5
    nodes = onnx.load(str(path)).graph.node
    assert not any(n.op_type.startswith("Sparse") for n in nodes)
    pads = {a.s for n in nodes if n.op_type == "GridSample" for a in n.attribute if a.name == "padding_mode"}
    small = export_onnx(model, torch.rand(1, 4, 4, s, s), tmp_path / "small.onnx", input_names=("views",),
                        output_names=("vertices",), small_tables=True)  # the INT8 file's graph
    assert parity(model, ort_session(small, threads=1), torch.rand(3, 4, 4, s, s, generator=g)) <= 1e-5
    assert pads == {b"zeros"}  # on clamped grids: ONNX Runtime's "border" is several times slower
