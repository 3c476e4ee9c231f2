"""The real Hunyuan3D-2mv adapter on a tiny random-weight pipeline (CPU), and its missing-weights message.

The tiny config (~110k parameters) is the project's reference ``hy3dgen-tiny-multiview.yaml``; the
weights are random (seeded) and written in the layout ``from_pretrained`` reads:
``$HY3DGEN_MODELS/tencent/Hunyuan3D-2mv/<subfolder>/{config.yaml, model.fp16.safetensors}``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
import yaml

from engine.data.render import render_views
from engine.teachers import hunyuan
from engine.teachers.base import TeacherFailed, TeacherSettings, TeacherUnavailable, get_teacher

TINY = dict(steps=3, octree_resolution=32, device="cpu")
# = the project's reference hy3dgen-tiny-multiview.yaml (~110k parameters), kept here so tests are self-contained
TINY_CONFIG = """
model:
  target: hy3dgen.shapegen.models.Hunyuan3DDiT
  params: {in_channels: 8, context_in_dim: 32, hidden_size: 32, mlp_ratio: 2.0, num_heads: 2, depth: 1,
           depth_single_blocks: 1, axes_dim: [16], theta: 10000, qkv_bias: true, guidance_embed: false}
vae:
  target: hy3dgen.shapegen.models.ShapeVAE
  params: {num_latents: 16, embed_dim: 8, num_freqs: 4, include_pi: false, heads: 2, width: 32,
           num_decoder_layers: 1, qkv_bias: false, qk_norm: true, scale_factor: 1.0}
conditioner:
  target: hy3dgen.shapegen.models.SingleImageEncoder
  params:
    main_image_encoder:
      type: DinoImageEncoderMV
      kwargs:
        config: {hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, mlp_ratio: 2, image_size: 56, patch_size: 14}
        view_num: 4
        image_size: 56
        use_cls_token: true
image_processor:
  target: hy3dgen.shapegen.preprocessors.MVImageProcessorV2
  params: {size: 64, border_ratio: 0.15}
scheduler:
  target: hy3dgen.shapegen.schedulers.FlowMatchEulerDiscreteScheduler
  params: {num_train_timesteps: 1000}
"""


def _tiny_config() -> dict:
    return yaml.safe_load(TINY_CONFIG)


def write_tiny_weights(root: Path, subfolder: str = "hunyuan3d-dit-v2-mv", dead: bool = False) -> Path:
    """Random weights for the tiny config under ``root`` (a HY3DGEN_MODELS folder).

    ``dead=True`` zeroes the VAE's occupancy head (bias -1): the decoded field is constant, has no
    zero crossing, and hy3dgen returns no mesh.
    """
    import torch
    from safetensors.torch import save_file

    hunyuan.import_pipeline_class()  # torchvision compatibility + hy3dgen import
    from hy3dgen.shapegen.pipelines import instantiate_from_config

    cfg = _tiny_config()
    torch.manual_seed(0)
    state = {}
    for part in ("model", "vae", "conditioner"):
        for k, v in instantiate_from_config(cfg[part]).state_dict().items():
            state[f"{part}.{k}"] = v.detach().clone().contiguous()
    if dead:
        state["vae.geo_decoder.output_proj.weight"].zero_()
        state["vae.geo_decoder.output_proj.bias"].fill_(-1.0)
    folder = root / "tencent" / "Hunyuan3D-2mv" / subfolder
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    save_file(state, str(folder / "model.fp16.safetensors"))
    return folder


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The tiny model is dominated by thread overhead on a shared 2-core machine: run it on one."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _box_views(size: int = 64) -> dict:
    box = trimesh.creation.box(extents=(0.4, 0.3, 1.0))
    return render_views(box.vertices, box.faces, size=size)


def test_missing_weights_message_names_folder_and_files(tmp_path, monkeypatch):
    monkeypatch.setenv("HY3DGEN_MODELS", str(tmp_path / "nothing"))
    teacher = get_teacher("hunyuan3d-2mv")
    with pytest.raises(TeacherUnavailable) as err:
        teacher.predict(_box_views(), TeacherSettings(**TINY))
    msg = str(err.value)
    folder = tmp_path / "nothing" / "tencent" / "Hunyuan3D-2mv" / "hunyuan3d-dit-v2-mv"
    assert str(folder) in msg and "config.yaml" in msg and "model.fp16.safetensors" in msg
    assert "\n" not in msg
    ok, reason = hunyuan.availability("2mv")
    assert not ok and str(folder) in reason


def test_tiny_pipeline_runs_through_the_adapter(tmp_path, monkeypatch):
    monkeypatch.setenv("HY3DGEN_MODELS", str(tmp_path))
    write_tiny_weights(tmp_path)
    assert hunyuan.availability("2mv")[0] is True
    teacher = get_teacher("hunyuan3d-2mv")
    views = _box_views()
    a = teacher.predict(views, TeacherSettings(**TINY, seed=1))
    assert a.vertices.dtype == np.float32 and a.faces.dtype == np.int64 and len(a.faces) > 100
    extent = a.vertices.max(0) - a.vertices.min(0)
    assert abs(extent.max() - 1.0) < 1e-5 and np.abs(a.vertices.max(0) + a.vertices.min(0)).max() < 1e-5
    s = a.stats
    assert s["teacher"] == "hunyuan3d-2mv" and s["device"] == "cpu" and s["dtype"] == "float32"
    assert s["settings"]["steps"] == 3 and s["settings"]["octree_resolution"] == 32
    assert np.allclose(np.abs(np.linalg.det(np.array(s["orientation"]))), 1.0)
    b = teacher.predict(views, TeacherSettings(**TINY, seed=1))
    np.testing.assert_array_equal(a.vertices, b.vertices)  # same seed, same mesh
    # the conditioner's image tokens, read through a forward hook (no hook is left behind)
    assert a.features.dtype == np.float16 and a.features.ndim == 2 and np.isfinite(a.features).all()
    np.testing.assert_array_equal(a.features, b.features)
    assert not hunyuan.load_pipeline("2mv", *hunyuan.resolve_device("cpu")).conditioner._forward_hooks
    fp = teacher.fingerprint_settings(TeacherSettings(preset="high"))
    assert fp["steps"] == 30 and fp["octree_resolution"] == 256 and fp["subfolder"] == "hunyuan3d-dit-v2-mv"
    assert teacher.fingerprint_settings(TeacherSettings(device="cpu")) == teacher.fingerprint_settings(TeacherSettings())


def test_no_zero_crossing_is_a_clear_failure(tmp_path, monkeypatch):
    monkeypatch.setenv("HY3DGEN_MODELS", str(tmp_path))
    write_tiny_weights(tmp_path, "hunyuan3d-dit-v2-mv-turbo", dead=True)
    with pytest.raises(TeacherFailed, match="returned no mesh.*no zero crossing"):
        get_teacher("hunyuan3d-2mv-turbo").predict(_box_views(), TeacherSettings(**TINY))


def test_orient_to_views_undoes_an_axis_rotation(tmp_path):
    """hy3dgen's output frame is brought into the engine's by silhouettes: rotate a sample shoe by a
    quarter turn about +Y and the orientation step must turn it back."""
    from engine.data.layout import find_shoe, load_mesh, load_views
    from engine.data.sample_shoes import build_sample
    from engine.geometry.normalise import normalise_vertices
    from engine.jobs import NULL_CONTEXT

    build_sample(NULL_CONTEXT, tmp_path, count=1, seed=0)
    shoe = find_shoe(tmp_path, "shoe_000")
    gv, gf = load_mesh(shoe.obj_path)
    v = normalise_vertices(gv.astype(np.float64))[0]
    quarter = np.array([[0, 0, 1], [0, 1, 0], [-1, 0, 0]], float)  # about +Y
    back, rot, iou = hunyuan.orient_to_views(v @ quarter.T, gf, load_views(shoe))
    np.testing.assert_allclose(back, v, atol=1e-9)
    assert iou > 0.9 and len(hunyuan.axis_rotations()) == 24


def test_torchvision_compat_is_idempotent():
    from engine.teachers.torchvision_compat import ensure_torchvision_importable

    first = ensure_torchvision_importable()
    import torchvision.transforms  # noqa: F401  (must import after the compatibility step)

    assert ensure_torchvision_importable() == first


def test_tiny_pipeline_through_the_cache(tmp_path, monkeypatch):
    """Good weights: entries ok and loadable; dead weights: every shoe a recorded failure, no crash."""
    from engine.cache import build_cache, cache_summary, load_entry
    from engine.data.sample_shoes import build_sample
    from engine.jobs import NULL_CONTEXT

    data = tmp_path / "data"
    build_sample(NULL_CONTEXT, data, count=2, seed=0)
    monkeypatch.setenv("HY3DGEN_MODELS", str(tmp_path / "models"))
    write_tiny_weights(tmp_path / "models", "hunyuan3d-dit-v2-mv-fast")
    write_tiny_weights(tmp_path / "models", "hunyuan3d-dit-v2-mv-turbo", dead=True)
    settings = TeacherSettings(**TINY)
    good = build_cache(NULL_CONTEXT, data, tmp_path / "good", teacher="hunyuan3d-2mv-fast", settings=settings)
    assert (good["done"], good["failed"]) == (2, 0)
    entry = load_entry(tmp_path / "good", "shoe_001")
    assert entry["points"].shape == (10000, 3)
    assert entry["features"].dtype == torch.float16 and entry["features"].dim() == 2  # the image tokens
    assert cache_summary(tmp_path / "good")["teacher"] == "hunyuan3d-2mv-fast"
    dead = build_cache(NULL_CONTEXT, data, tmp_path / "dead", teacher="hunyuan3d-2mv-turbo", settings=settings)
    assert (dead["done"], dead["failed"]) == (0, 2)
    failures = cache_summary(tmp_path / "dead")["failures"]
    assert [f["id"] for f in failures] == ["shoe_000", "shoe_001"]
    assert all("returned no mesh" in f["error"] for f in failures)
    with pytest.raises(TeacherUnavailable, match="weights not found"):
        build_cache(NULL_CONTEXT, data, tmp_path / "none", teacher="hunyuan3d-2mv", settings=settings)
