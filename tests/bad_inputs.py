"""The bad inputs of ``tests/test_bad_input.py``: files made on disk, and the table of cases.

Each ``Case`` names one bad input, the CLI command that receives it (``{placeholders}`` are the paths
of ``build_inputs``) and, where the studio takes it, the API endpoint and arguments (``upload:PATH`` is
an uploaded file). ``expect`` is a regular expression the message must match.
"""
from __future__ import annotations

import json
import pickle
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from PIL import Image

TINY = {"width": 4, "hidden": 16, "blocks": 1, "sampled": 8, "image_size": 32}
GOOD_SHOE = "shoe_000"


@dataclass
class Case:
    id: str
    expect: str  # regex the CLI error line / report / studio message must match
    cli: list | None = None
    cli_rc: int = 2  # 2: one `error:` line; 1: `data check` reports the problem in its table
    ui: tuple | None = None  # (api_name, args)
    ui_expect: str | None = None
    fault: str | None = None  # "nan" (NaN student output) | "disk-full" (ENOSPC on cache entries) | "disk-full-history"
    check: Callable | None = None  # extra assertions (paths, "cli" | "ui")


class _WritesAMarker:
    """A pickle that runs code on load: ``open(marker, "w")``. Safe loading must refuse it."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _broken_dataset(sample: Path, root: Path) -> None:
    views = sample / "input_images" / GOOD_SHOE
    good_obj = (sample / "OBJs" / f"{GOOD_SHOE}.obj").read_text()
    lines = good_obj.splitlines()
    objs = {
        "obj_truncated": "\n".join(lines[: len(lines) // 2]) + "\nf 12 13",
        "obj_empty": "",
        "obj_nan": "v nan 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n",
        "obj_degenerate": "v 0 0 0\nv 0 0 0\nv 0 0 0\nf 1 2 3\n",
        "obj_bad_index": "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 9\n",
        "obj_index_zero": "v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 0 1 2\nf 1 2 3\n",
        "obj_float32_overflow": "v 0 0 0\nv 1e39 0 0\nv 0 1e39 0\nv 0 0 1e39\nf 1 2 3\nf 1 2 4\n",
        "obj_far_away": "v 1e8 0 0\nv 100000001 0 0\nv 1e8 1 0\nv 1e8 0 1\nf 1 2 3\nf 1 2 4\n",
        "obj_junk": random.Random(1).randbytes(4000),
        # three triangles on one edge: non-manifold, still a surface the metrics can sample
        "obj_nonmanifold": "v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 -1 0\nv 0 0 1\nf 1 2 3\nf 1 2 4\nf 1 2 5\n",
        "views_missing": good_obj, "view_text": good_obj, "obj_only": good_obj,
    }
    (root / "OBJs").mkdir(parents=True)
    for sid, body in objs.items():
        target = root / "OBJs" / f"{sid}.obj"
        target.write_bytes(body) if isinstance(body, bytes) else target.write_text(body)
        if sid == "obj_only":
            continue
        shutil.copytree(views, root / "input_images" / sid)
    for name in ("left", "back", "right"):
        (root / "input_images" / "views_missing" / f"{name}.png").unlink()
    (root / "input_images" / "view_text" / "left.png").write_text("a text file named left.png")
    outside = root.parent.parent / "outside-front.png"  # beside the data root, not in it
    shutil.copy(views / "front.png", outside)
    shutil.copytree(views, root / "input_images" / "link_out")
    (root / "input_images" / "link_out" / "front.png").unlink()
    (root / "input_images" / "link_out" / "front.png").symlink_to(outside)


def _images(folder: Path, sample: Path) -> None:
    folder.mkdir()
    Image.new("RGBA", (1, 1), (255, 0, 0, 255)).save(folder / "one.png")
    Image.new("RGB", (6000, 6000), (255, 255, 255)).save(folder / "huge.png")
    Image.new("1", (20000, 20000)).save(folder / "bomb.png")  # 400 Mpx in ~50 kB
    rng = random.Random(0)
    Image.frombytes("RGB", (128, 128), rng.randbytes(128 * 128 * 3)).save(folder / "busy.png")
    Image.new("RGBA", (64, 64), (0, 0, 0, 0)).save(folder / "transparent.png")
    (folder / "text.png").write_text("hello, I am not an image")
    (folder / "empty.png").write_bytes(b"")
    good = (sample / "input_images" / GOOD_SHOE / "front.png").read_bytes()
    (folder / "truncated.png").write_bytes(good[: len(good) // 2])
    vae = sample.parent / "vae-bomb"  # a VAE image folder (under the data root) with a bomb among good images
    vae.mkdir()
    for i in range(2):
        (vae / f"good{i}.png").write_bytes(good)
    Image.new("1", (20000, 20000)).save(vae / "bomb.png")


def _checkpoints(folder: Path, marker: Path, train_cfg: dict) -> None:
    import torch

    from engine import storage
    from engine.students.mesh_student import MeshStudent, StudentConfig
    from engine.students.checkpoint import save_checkpoint
    from engine.students.vae_checkpoint import build_models, checkpoint_dict
    from engine.train.vae import DEFAULTS

    folder.mkdir()
    torch.manual_seed(0)
    save_checkpoint(folder / "mesh.pt", MeshStudent(StudentConfig.from_dict(TINY)), None, train_cfg, 1, None, None, {})
    t, s, p = build_models({**DEFAULTS, "teacher_latent_dim": 8, "student_latent_dim": 8, "student_base_channels": 4})
    storage.torch_save(folder / "vae.pth", checkpoint_dict({"teacher": t, "student": s, "projector": p}, DEFAULTS))
    (folder / "junk.pt").write_bytes(random.Random(2).randbytes(5000))
    torch.save({"state_dict": _WritesAMarker(marker)}, folder / "evil.pt")
    (folder / "evil_raw.pt").write_bytes(pickle.dumps(_WritesAMarker(marker)))


def _runs(root: Path, ckpts: Path, train_cfg: dict) -> None:
    """Training run folders whose checkpoints are of the wrong model, junk, or pickled code."""
    from engine import runs

    for run_id, source in (("vae_run", "vae.pth"), ("junk_run", "junk.pt"), ("evil_run", "evil.pt")):
        path = runs.create_run("train3d", dict(train_cfg), root=root, run_id=run_id)
        runs.write_status(path, state="failed", message="made by the test", pid=-1)
        (path / "checkpoints").mkdir()
        for name in ("best.pt", "last.pt"):
            shutil.copy(ckpts / source, path / "checkpoints" / name)


def _configs(folder: Path, train_cfg: dict) -> None:
    folder.mkdir()
    files = {
        "train_unknown_key": {**train_cfg, "bogus": 1},
        "train_wrong_type": {**train_cfg, "epochs": "ten"},
        "train_negative_lr": {**train_cfg, "lr": -0.1},
        "train_array": [1, 2, 3],
        "train_ok": {**train_cfg, "epochs": 3},
        "vae_unknown_key": {"bogus": 1},
        "vae_wrong_type": {"epochs": "ten"},
        "vae_negative_lr": {"learning_rate": -0.1},
    }
    for name, obj in files.items():
        (folder / f"{name}.json").write_text(json.dumps(obj))
    (folder / "train_not_json.json").write_text("{epochs: 3,")
    for kind in ("train", "vae"):  # a JSON nested 50k levels deep, a 5000-digit integer
        (folder / f"{kind}_deep.json").write_text('{"epochs": ' + "[" * 50_000 + "]" * 50_000 + "}")
        (folder / f"{kind}_bigint.json").write_text('{"epochs": 1' + "0" * 5000 + "}")


def _caches(paths: dict) -> None:
    """Caches that do not fit: of the first format (no image fingerprints), and one whose shoe_000.pt is a
    copy of shoe_001.pt (its recorded size made to match, so only the file's own ID can tell); and a second
    dataset (same shoe IDs, other pictures) the sample's cache was not built from."""
    from engine.data.sample_shoes import build_sample
    from engine.jobs import NULL_CONTEXT

    build_sample(NULL_CONTEXT, paths["data"] / "other", count=2, seed=7)
    good = paths["cache"] / "sample-vh"
    for name in ("old-format", "swapped"):
        shutil.copytree(good, paths["cache"] / name)
    meta_path = paths["cache"] / "old-format" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta.pop("format")
    for entry in meta["entries"].values():
        entry.pop("images")
    meta_path.write_text(json.dumps(meta))
    shutil.copytree(good, paths["cache"] / "truncated-meta")
    cut = paths["cache"] / "truncated-meta" / "metadata.json"
    cut.write_text(cut.read_text()[:200])
    swapped = paths["cache"] / "swapped"
    shutil.copy(swapped / "shoe_001.pt", swapped / "shoe_000.pt")
    meta = json.loads((swapped / "metadata.json").read_text())
    meta["entries"]["shoe_000"]["bytes"] = (swapped / "shoe_000.pt").stat().st_size
    (swapped / "metadata.json").write_text(json.dumps(meta))


def build_inputs(base: Path) -> dict:
    """Every bad file, a 2-shoe sample with its visual-hull cache, bad run folders; returns the paths."""
    from engine.cache import build_cache
    from engine.data.sample_shoes import build_sample
    from engine.jobs import NULL_CONTEXT
    from engine.teachers.base import TeacherSettings

    paths = {name: base / name for name in ("data", "cache", "runs", "images", "ckpts", "configs")}
    for name in ("data", "cache", "runs"):
        paths[name].mkdir()
    paths.update(base=base, sample=paths["data"] / "sample", broken=paths["data"] / "broken",
                 marker=base / "code-ran.marker", out=base / "out")
    build_sample(NULL_CONTEXT, paths["sample"], count=2, seed=0)
    build_cache(NULL_CONTEXT, paths["sample"], paths["cache"] / "sample-vh", settings=TeacherSettings(preset="fast"))
    train_cfg = {"data": str(paths["sample"]), "baseline": True, "epochs": 1, "batch_size": 1, "n_points": 300,
                 "target_points": 300, "val_fraction": 0.0, "max_nan_steps": 2, "checkpoint_every": 0, "student": TINY}
    _caches(paths)
    (base / "outdir.glb").mkdir()  # a folder where infer --out expects a file
    _broken_dataset(paths["sample"], paths["broken"])
    _images(paths["images"], paths["sample"])
    _checkpoints(paths["ckpts"], paths["marker"], train_cfg)
    _runs(paths["runs"], paths["ckpts"], train_cfg)
    _configs(paths["configs"], train_cfg)
    return paths


# -- the cases --------------------------------------------------------------------------------------
def _no_code_ran(paths: dict, _face: str) -> None:
    assert not Path(paths["marker"]).exists(), "a pickled checkpoint ran code"


def _cache_kept_one_entry(name: str):
    def check(paths: dict, face: str) -> None:
        from tests.integrity import check_cache

        state = check_cache(Path(paths["cache"]) / f"{name}-{face}")
        assert (state["ok"], state["orphans"], state["temps"]) == (1, [], 0), state
    return check


def _teacher_ui(*photos, source="uploaded photos", dataset=None, shoe=None) -> tuple:
    photos = (*photos, None, None, None, None)[:4]
    return ("/teacher_generate", (source, dataset, shoe, "visual-hull", "fast", None, 0, *photos))


def _train_ui(epochs=1, lr=1e-3, dataset="sample", cache="sample-vh") -> tuple:
    """Train 3D tab: dataset, cache, schedule, α start / end, epochs, lr, batch, λ edge / smooth, width, seed,
    baseline, λ feat, photo-style views, student size."""
    return ("/train_start", (dataset, cache, "default", 0.9, 0.3, epochs, lr, 1, 2.0, 1.0, 4, 0, False, 0.0, 0,
                            "default"))


def _vae_ui(dataset, lr=1e-3, batch=8) -> tuple:
    """VAE tab: dataset, first N, teacher / distill / fine-tune epochs, batch, lr, 5 weights, T, seed."""
    return ("/vae_start", (dataset, 16, 1, 1, 0, batch, lr, 0.3, 0.1, 0.3, 0.2, 0.1, 3.0, 0))


def _photo(name: str, expect: str) -> Case:
    return Case(f"photo-{name.split('.')[0]}", expect,
                cli=["teacher", "test", "--images", f"{{images}}/{name}", "--preset", "fast", "--out", "{out}.obj"],
                ui=_teacher_ui(f"upload:{{images}}/{name}"))


def _mesh(sid: str, expect: str, cli_expect: str | None = None) -> Case:
    return Case(sid.replace("_", "-"), cli_expect or rf"^{sid}\s+problem\s.*{expect}",
                cli=["data", "check", "{broken}"], cli_rc=1, ui=("/shoe_preview", ("broken", sid)), ui_expect=expect)


def _cfg(name: str) -> list:
    return ["--config", f"{{configs}}/{name}.json"]


TRAIN = ["train", "--out-runs", "{runs}", "--quiet"]
VAE_CLI = ["vae", "distill", "--dataset", "folder:{sample}/input_images/shoe_000", "--epochs", "1",
           "--teacher-epochs", "1", "--finetune-epochs", "0", "--batch-size", "2", "--checkpoint-dir", "{out}-vae",
           "--quiet", "--no-report"]
TEACHER_CLI = ["teacher", "test", "--out", "{out}.obj"]
CACHE_CLI = ["cache", "build", "--out", "{out}-c", "--data"]
JUNK = r"not a (plain|readable) weights file"

CASES: list[Case] = [
    # meshes (ground truth OBJs)
    _mesh("obj_truncated", r"obj_truncated\.obj: line \d+ is incomplete .*truncated"),
    _mesh("obj_empty", r"obj_empty\.obj: empty file"),
    _mesh("obj_nan", r"obj_nan\.obj: non-finite vertex coordinates"),
    _mesh("obj_degenerate", r"obj_degenerate\.obj: degenerate mesh"),
    _mesh("obj_bad_index", r"obj_bad_index\.obj: not a readable mesh \(IndexError"),
    _mesh("obj_junk", r"obj_junk\.obj: no faces"),
    _mesh("obj_index_zero", r"obj_index_zero\.obj: line 5 has face index 0 \('f 0 1 2'\); OBJ vertex indices start at 1"),
    _mesh("obj_float32_overflow", r"obj_float32_overflow\.obj: vertex coordinates overflow float32 \(largest 1e\+39"),
    _mesh("obj_far_away", r"obj_far_away\.obj: the mesh sits too far from the origin for float32 \(coordinates up "
          r"to 1e\+08, size 1: float32 steps by 8 there\)"),
    # accepted: Chamfer / F-score only sample the surface; the preview says what it loaded
    _mesh("obj_nonmanifold", r"obj_nonmanifold: \d+ vertices, 3 faces", cli_expect=r"^obj_nonmanifold\s+ok\s"),
    # photos
    _photo("one.png", r"image too small \(1x1"),
    _photo("huge.png", r"image too large \(6000x6000"),
    _photo("bomb.png", r"unreadable image \(.*decompression bomb"),
    _photo("busy.png", r"busy\.png\)?: no subject found \(nothing stands out from the background"),
    _photo("transparent.png", r"transparent\.png\)?: no subject found \(its transparency is empty"),
    _photo("text.png", r"text\.png: unreadable image \(cannot identify image file"),
    _photo("empty.png", r"empty\.png: empty file"),
    _photo("truncated.png", r"truncated\.png: unreadable image"),
    Case("photo-none", r"give exactly one input", cli=TEACHER_CLI, ui=_teacher_ui(),
         ui_expect=r"give at least one photo"),
    Case("photo-five", r"--images takes at most 4 files",
         cli=[*TEACHER_CLI, "--images", *["{sample}/input_images/shoe_000/front.png"] * 5]),
    Case("mesh-output-type", r"unknown mesh format",
         cli=["teacher", "test", "--shoe", "shoe_000", "--data", "{sample}", "--out", "{out}.txt"]),
    # views
    Case("views-missing", r"missing views: left\.png, back\.png, right\.png", cli=["data", "check", "{broken}"],
         cli_rc=1, ui=("/validate_dataset", ("broken",))),
    Case("view-unreadable", r"view_text/left\.png: unreadable image",
         cli=[*TEACHER_CLI, "--shoe", "view_text", "--data", "{broken}"],
         ui=("/shoe_preview", ("broken", "view_text"))),
    Case("shoe-without-photos", r"shoe 'obj_only' has no input images",
         cli=[*TEACHER_CLI, "--shoe", "obj_only", "--data", "{broken}"],
         ui=_teacher_ui(source="dataset shoe", dataset="broken", shoe="obj_only"),
         ui_expect=r"give at least one photo"),
    # IDs and names
    Case("id-dotdot-shoe", r"bad shoe ID '\.\./x'", cli=[*TEACHER_CLI, "--shoe", "../x", "--data", "{sample}"],
         ui=("/shoe_preview", ("sample", "../x"))),
    Case("id-dotdot-shoe-ids", r"bad shoe ID '\.\./x'", cli=[*CACHE_CLI, "{sample}", "--ids", "../x"]),
    Case("id-space", r"bad shoe ID 'a b'", cli=[*CACHE_CLI, "{sample}", "--ids", "a b"],
         ui=("/cache_summary", ("a b",)), ui_expect=r"bad cache name 'a b'"),
    Case("id-dotdot-dataset", r"outside the allowed folders", ui=("/shoe_preview", ("../x", "shoe_000"))),
    Case("id-dotdot-cache-name", r"bad cache name '\.\./x'",
         ui=("/build_cache", ("sample", "visual-hull", "fast", 0, "../x"))),
    Case("id-dotdot-run", r"bad run ID '\.\./x'", cli=["runs", "show", "../x"], ui=("/run_detail", ("../x",))),
    Case("id-dotdot-resume", r"bad run ID '\.\./x'", cli=[*TRAIN, "--resume", "../x"], ui=("/train_resume", ("../x",))),
    Case("id-dotdot-evaluate", r"bad run ID '\.\./x'", cli=["evaluate", "--run", "../x"],
         ui=("/train_evaluate", ("../x",))),
    Case("id-dotdot-new-run", r"bad run ID '\.\./x'", cli=[*TRAIN, *_cfg("train_ok"), "--run-id", "../x"]),
    Case("id-long", r"bad run ID", cli=["runs", "show", "r" * 81], ui=("/run_detail", ("r" * 81,))),
    # checkpoints of the wrong model, junk, pickled code
    Case("ckpt-vae-to-evaluate", r"best\.pt: not a mesh-student checkpoint", cli=["evaluate", "--run", "vae_run"],
         ui=("/train_evaluate", ("vae_run",))),
    Case("ckpt-vae-to-resume", r"last\.pt: not a mesh-student checkpoint", cli=[*TRAIN, "--resume", "vae_run"],
         ui=("/train_resume", ("vae_run",))),
    Case("ckpt-junk-to-resume", rf"last\.pt: {JUNK}", cli=[*TRAIN, "--resume", "junk_run"],
         ui=("/train_resume", ("junk_run",))),
    Case("ckpt-junk-to-evaluate", rf"best\.pt: {JUNK}", cli=["evaluate", "--run", "junk_run"],
         ui=("/train_evaluate", ("junk_run",))),
    Case("ckpt-pickled-code", r"best\.pt: not a plain weights file: safe loading \(weights_only\) refused it .*GLOBAL",
         cli=["evaluate", "--run", "evil_run"], ui=("/train_evaluate", ("evil_run",)), check=_no_code_ran),
    Case("ckpt-raw-pickle-to-vae-report", r"evil_raw\.pt: not a plain weights file",
         cli=["vae", "report", "--checkpoint", "{ckpts}/evil_raw.pt"], check=_no_code_ran),
    Case("ckpt-mesh-to-vae-report", r"mesh\.pt: not a TinyVAE distillation checkpoint",
         cli=["vae", "report", "--checkpoint", "{ckpts}/mesh.pt"]),
    Case("ckpt-mesh-as-vae-teacher", r"mesh\.pt: no teacher_state_dict",
         cli=[*VAE_CLI, "--teacher-checkpoint", "{ckpts}/mesh.pt", "--teacher-epochs", "0"]),
    Case("ckpt-junk-to-vae-report", rf"junk\.pt: {JUNK}", cli=["vae", "report", "--checkpoint", "{ckpts}/junk.pt"]),
    Case("ckpt-missing", r"no such file", cli=["vae", "report", "--checkpoint", "{ckpts}/nope.pth"]),
    # configs
    Case("cfg-train-unknown-key", r"unknown training config key\(s\): bogus", cli=[*TRAIN, *_cfg("train_unknown_key")]),
    Case("cfg-train-wrong-type", r"epochs must be an integer .*'ten'", cli=[*TRAIN, *_cfg("train_wrong_type")]),
    Case("cfg-train-negative-lr", r"lr must be a finite number > 0 \(got -0\.1\)",
         cli=[*TRAIN, *_cfg("train_negative_lr")], ui=_train_ui(lr=-0.1)),
    Case("cfg-train-nan-lr", r"lr must be a finite number > 0 \(got nan\)",
         cli=[*TRAIN, *_cfg("train_ok"), "--lr", "nan"]),
    Case("cfg-train-zero-epochs", r"epochs must be an integer in 1\.\.",
         cli=[*TRAIN, *_cfg("train_ok"), "--epochs", "0"],
         ui=_train_ui(epochs=0), ui_expect=r"less than minimum value 1"),
    Case("cfg-train-array", r"expected a JSON object", cli=[*TRAIN, *_cfg("train_array")]),
    Case("cfg-train-not-json", r"not valid JSON", cli=[*TRAIN, *_cfg("train_not_json")]),
    Case("cfg-train-missing-file", r"--config .*nope\.json: no such file", cli=[*TRAIN, *_cfg("nope")]),
    Case("cfg-vae-unknown-key", r"unknown config key 'bogus'", cli=["vae", "distill", *_cfg("vae_unknown_key")]),
    Case("cfg-vae-wrong-type", r"config epochs='ten': expected an integer",
         cli=["vae", "distill", *_cfg("vae_wrong_type")]),
    Case("cfg-vae-negative-lr", r"config learning_rate=-0\.1: expected a number > 0",
         cli=["vae", "distill", *_cfg("vae_negative_lr")], ui=_vae_ui("fashion-mnist", lr=-0.1)),
    *[Case(f"cfg-{kind}-{name}", rf"--config {kind}_{name}\.json: {expect}", cli=[*cmd, *_cfg(f"{kind}_{name}")])
      for kind, cmd in (("train", TRAIN), ("vae", ["vae", "distill"]))
      for name, expect in (("deep", r"nested too deeply to read"),
                           ("bigint", r"not valid JSON \(Exceeds the limit \(4300 digits\)"))],
    Case("cfg-cache-first", r"--first must be at least 1", cli=[*CACHE_CLI, "{sample}", "--first", "0"],
         ui=("/build_cache", ("sample", "visual-hull", "fast", -1, "")), ui_expect=r"less than minimum value 0"),
    # missing folders and paths outside the roots
    Case("missing-dataset", r"nope: dataset folder not found", cli=["data", "check", "{data}/nope"],
         ui=("/validate_dataset", ("nope",))),
    Case("missing-dataset-cache", r"nope: dataset folder not found", cli=[*CACHE_CLI, "{data}/nope"],
         ui=("/build_cache", ("nope", "visual-hull", "fast", 0, ""))),
    Case("missing-dataset-train", r"nope: dataset folder not found",
         cli=[*TRAIN, *_cfg("train_ok"), "--data", "{data}/nope"], ui=_train_ui(dataset="nope")),
    # a cache that is not this dataset's, of the first format, or with an entry file swapped for another's
    Case("cache-of-another-dataset", r"sample-vh: this teacher cache was built from another dataset \(.*/sample\): "
         r"none of its 2 entries matches the images of .*/other; build a cache for it",
         cli=[*TRAIN, "--data", "{data}/other", "--cache", "{cache}/sample-vh", "--epochs", "1"],
         ui=_train_ui(dataset="other")),
    Case("cache-first-format", r"old-format: a teacher cache of the first format \(no image fingerprints\); "
         r"rebuild it: python -m engine cache build --data .*/sample --out .*/old-format",
         cli=[*TRAIN, "--data", "{sample}", "--cache", "{cache}/old-format", "--epochs", "1"],
         ui=_train_ui(cache="old-format")),
    Case("cache-swapped-entry", r"shoe_000: shoe_000\.pt: holds the teacher entry of 'shoe_001', not 'shoe_000' "
         r"\(a file copied over another\); rebuild the cache", cli=["cache", "show", "{cache}/swapped"], cli_rc=0,
         ui=("/cache_summary", ("swapped",)), ui_expect=r"shoe_000\.pt: holds the teacher entry of 'shoe_001'"),
    Case("cache-metadata-truncated", r"truncated-meta/metadata\.json: unreadable \(truncated or not JSON\); remove "
         r"it and build the cache again", cli=["cache", "show", "{cache}/truncated-meta"],
         ui=("/cache_summary", ("truncated-meta",))),
    Case("preview-link-outside", r"file '.*/link_out/front\.png' is outside the allowed folders",
         ui=("/shoe_preview", ("broken", "link_out"))),
    # a folder where a file is expected, a file where a folder is, a number where a name is
    Case("infer-out-folder", r"--out .*outdir\.glb: is a folder; give the mesh file to write",
         cli=["infer", "--checkpoint", "{ckpts}/mesh.pt", "--shoe-dir", "{sample}/input_images/shoe_000",
              "--out", "{base}/outdir.glb"]),
    Case("cache-show-file", r"train_ok\.json: not a folder \(a teacher cache is a folder",
         cli=["cache", "show", "{configs}/train_ok.json"]),
    Case("dataset-name-integer", r"dataset name must be text \(got int 123\)", ui=("/validate_dataset", (123,))),
    Case("missing-cache", r"nocache: no teacher cache here",
         cli=[*TRAIN, "--data", "{sample}", "--cache", "{cache}/nocache"],
         ui=_train_ui(cache="nocache")),
    Case("vae-folder-bomb", r"vae-bomb/bomb\.png: unreadable image \(.*decompression bomb",
         cli=[*VAE_CLI[:2], "--dataset", "folder:{data}/vae-bomb", *VAE_CLI[4:]], ui=_vae_ui("folder:vae-bomb")),
    Case("missing-vae-folder", r"no such folder", cli=[*VAE_CLI[:2], "--dataset", "folder:{data}/nope", *VAE_CLI[4:]],
         ui=_vae_ui("folder:nope")),
    Case("path-outside-roots", r"'/etc' is outside the allowed folders", ui=("/validate_dataset", ("/etc",))),
    Case("vae-folder-outside-roots", r"outside the allowed folders", ui=_vae_ui("folder:/etc")),
    # NaN loss: injected, and from an absurd learning rate
    Case("nan-loss-injected", r"training diverged: 2 non-finite steps in a row at epoch \d+; lower lr",
         cli=[*TRAIN, *_cfg("train_ok")], fault="nan", ui=_train_ui(epochs=3),
         ui_expect=r"training diverged: \d non-finite steps in a row|predicts non-finite vertices"),
    Case("nan-loss-lr-1e30", r"non-finite", cli=[*TRAIN, *_cfg("train_ok"), "--lr", "1e30"], ui=_train_ui(2, 1e30)),
    Case("nan-loss-vae", r"training diverged: .*loss is nan; lower learning_rate", cli=[*VAE_CLI, "--lr", "1e30"],
         ui=_vae_ui("folder:sample/input_images/shoe_000", lr=1e30, batch=2)),
    # a full disk while writing cache entries (the first entry fits, the second does not)
    Case("disk-full-cache", r"no space left on the device while writing .*shoe_001\.pt",
         cli=["cache", "build", "--data", "{sample}", "--out", "{cache}/full-cli", "--preset", "fast"],
         ui=("/build_cache", ("sample", "visual-hull", "fast", 0, "full-ui")), fault="disk-full",
         check=_cache_kept_one_entry("full")),
    # a read-only runs folder (training) or cache folder (cache build)
    Case("runs-read-only", r"cannot write to .*runs \(Read-only file system\); make the folder writable",
         cli=[*TRAIN, *_cfg("train_ok")], ui=_train_ui(), fault="read-only-runs"),
    Case("cache-read-only", r"cannot write to .*cache/ro-(cli|ui) \(Read-only file system\); make the folder writable",
         cli=["cache", "build", "--data", "{sample}", "--out", "{cache}/ro-cli", "--preset", "fast"],
         ui=("/build_cache", ("sample", "visual-hull", "fast", 0, "ro-ui")), fault="read-only-cache"),
    # ... and while appending a training run's history (a plain append, not an atomic write)
    Case("disk-full-history", r"no space left on the device", cli=[*TRAIN, *_cfg("train_ok")], ui=_train_ui(),
         ui_expect=r"No space left on device",
         fault="disk-full-history"),
]
