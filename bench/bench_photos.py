"""Benchmark of issue 15: phone-style photos. Masks vs the true alpha, and the student from photos vs
from the clean calibrated renders, side by side in one run.

    .venv/bin/python bench/bench_photos.py                 # trains a GT-only student if none (about 5 min)
    .venv/bin/python bench/bench_photos.py --run ID --runs DIR   # an existing 3D run: its val shoes
    .venv/bin/python bench/bench_photos.py --quick         # 4 val shoes, 1 photo per view (smoke)

For every val shoe of the run and each of its four views, ``engine.data.composites.composite`` makes
``--photos`` phone-style photos (a background family from each of ``BACKGROUNDS`` in turn, a contact
shadow, rotation up to 6 degrees, off-centre, 40-80 % of the frame; generated, not downloaded).

* **Masks**: ``engine.data.photos.mask_photo`` on every photo; IoU vs the true mask, per background
  family and overall, with the mean confidence and the share of masks the studio would ask the user to
  check (confidence < ``segment.MIN_CONFIDENCE``). Bar: mean IoU >= 0.95.
* **Student**: per shoe, the four composited views (one photo each, unsure masks accepted as a user
  would after looking) go through ``engine.infer.views_from_photos`` (mask, check, frame) and the
  student; CD-L1 vs GT (``geometry.metrics.mesh_metrics``, normalised, 10k points) next to the same
  student on the clean renders, and on the same photos given their true masks (what framing and
  levelling alone cost). Bar: photos <= 1.15 x clean.
* ``--compare RUN``: a second run of the same split (e.g. one trained with ``--photo-views``) measured on
  the same photos and masks, side by side.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BAR_IOU, BAR_CD_RATIO = 0.95, 1.15
WORK = Path("/tmp/ds-bench-photos")


def trained_run(epochs: int) -> Path:
    """A GT-only student trained on the sample (``data/sample``, built if missing), reused when present."""
    runs = WORK / "runs"
    run = runs / "photos-student"
    if (run / "checkpoints" / "best.pt").is_file():
        return run
    data = ROOT / "data" / "sample"
    if not (data / "input_images").is_dir():
        subprocess.run([sys.executable, "-m", "engine", "data", "sample", "--out", str(data), "--quiet"], cwd=ROOT, check=True)
    subprocess.run([sys.executable, "-m", "engine", "train", "--data", str(data), "--baseline", "--epochs", str(epochs),
                    "--out-runs", str(runs), "--run-id", run.name, "--quiet"], cwd=ROOT, check=True)
    return run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", help="run ID (default: train one under /tmp/ds-bench-photos)")
    ap.add_argument("--runs", default=str(WORK / "runs"))
    ap.add_argument("--epochs", type=int, default=30, help="epochs of the student trained when no --run")
    ap.add_argument("--photos", type=int, default=2, help="composites per view for the mask table")
    ap.add_argument("--shoes", type=int, default=0, help="only the first N val shoes (0 = all)")
    ap.add_argument("--compare", help="a second run ID (same --runs, same val split) measured on the same photos")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)

    from engine.data.composites import BACKGROUNDS, composite
    from engine.data.layout import load_mesh
    from engine.data.photos import mask_photo
    from engine.data.segment import MIN_CONFIDENCE
    from engine.evaluate.mesh_eval import predict
    from engine.geometry.camera import VIEW_NAMES
    from engine.geometry.metrics import mesh_metrics
    from engine.infer import views_from_photos
    from engine.students.trained_run import open_run

    run_dir = Path(args.runs) / args.run if args.run else trained_run(args.epochs)
    run = open_run(run_dir, "best")
    ids = run.val_ids[: (4 if args.quick else args.shoes or None)]
    other = open_run(Path(args.runs) / args.compare, "best") if args.compare else None
    if other is not None and (list(other.val_ids) != list(run.val_ids)
                              or other.student.config.image_size != run.student.config.image_size):
        raise SystemExit(f"--compare {args.compare}: not the same val split and image size as {run_dir.name}")
    cd_other = {"clean": [], "true": [], "photo": []}
    other_faces = other.student.faces.cpu().numpy() if other is not None else None
    photos_per_view = 1 if args.quick else args.photos
    size = run.student.config.image_size
    faces = run.student.faces.cpu().numpy()
    rng = np.random.default_rng(0)
    ious = {k: [] for k in BACKGROUNDS}
    conf, seg_s, cd_clean, cd_photo, cd_true = [], [], [], [], []
    k = 0
    from PIL import Image

    for sid in ids:
        shoe = run.shoe(sid)
        renders = {v: np.asarray(Image.open(shoe.view_paths[v])) for v in VIEW_NAMES}
        shoot, true_cut = {}, {}
        for v, rgba in renders.items():
            for _ in range(photos_per_view):
                kind = BACKGROUNDS[k % len(BACKGROUNDS)]
                k += 1
                photo, truth = composite(rgba, rng, kind)
                t0 = time.perf_counter()
                m = mask_photo(photo, f"{sid}/{v}")
                seg_s.append(time.perf_counter() - t0)
                mask = m.rgba[:, :, 3] > 0
                ious[kind].append(float((mask & truth).sum() / max((mask | truth).sum(), 1)))
                conf.append(m.confidence)
                shoot[v] = photo
                true_cut[v] = np.concatenate([photo, (truth * 255).astype(np.uint8)[:, :, None]], axis=2)
        gt_v, gt_f = load_mesh(shoe.obj_path)[:2]
        clean = predict(run.student, run.views(shoe)).numpy()
        from_photos, _ = views_from_photos(shoot, size, accept_unsure=True)
        photo_v = predict(run.student, from_photos).numpy()
        true_views = views_from_photos(true_cut, size)[0]  # the same photos with their true masks
        true_v = predict(run.student, true_views).numpy()
        cd_clean.append(mesh_metrics(clean, faces, gt_v, gt_f)["cd_l1"])
        cd_photo.append(mesh_metrics(photo_v, faces, gt_v, gt_f)["cd_l1"])
        cd_true.append(mesh_metrics(true_v, faces, gt_v, gt_f)["cd_l1"])
        if other is not None:
            for key, views in (("clean", other.views(other.shoe(sid))), ("photo", from_photos), ("true", true_views)):
                pred = predict(other.student, views).numpy()
                cd_other[key].append(mesh_metrics(pred, other_faces, gt_v, gt_f)["cd_l1"])
        print(f"  {sid}: CD-L1 clean {cd_clean[-1]:.5f} true masks {cd_true[-1]:.5f} photos {cd_photo[-1]:.5f}",
              file=sys.stderr)

    all_iou = [x for v in ious.values() for x in v]
    mean_iou = statistics.fmean(all_iou)
    ratio = statistics.fmean(cd_photo) / statistics.fmean(cd_clean)
    print(f"\nPhotos benchmark: run {run_dir.name}, {len(ids)} val shoes, {len(all_iou)} composited photos "
          f"({photos_per_view} per view), 2 cores, segmentation {1000 * statistics.median(seg_s):.0f} ms/photo median\n")
    print("| background | photos | mean IoU | min IoU |")
    print("|---|---:|---:|---:|")
    for kind, xs in ious.items():
        if xs:
            print(f"| {kind} | {len(xs)} | {statistics.fmean(xs):.3f} | {min(xs):.3f} |")
    unsure = sum(c < MIN_CONFIDENCE for c in conf) / len(conf)
    print(f"| **all** | {len(all_iou)} | **{mean_iou:.3f}** | {min(all_iou):.3f} |")
    print(f"\nmean confidence {statistics.fmean(conf):.3f}; {100 * unsure:.0f} % of masks under {MIN_CONFIDENCE} "
          "(the studio asks the user to check them)\n")
    print("| check | value | bar | |")
    print("|---|---:|---:|---|")
    print(f"| mask IoU vs true alpha (mean) | {mean_iou:.3f} | >= {BAR_IOU} | {'PASS' if mean_iou >= BAR_IOU else 'MISS'} |")
    print(f"| student CD-L1, clean renders | {statistics.fmean(cd_clean):.5f} | | |")
    print(f"| student CD-L1, the photos with their true masks (framing and levelling only) | "
          f"{statistics.fmean(cd_true):.5f} | | {statistics.fmean(cd_true) / statistics.fmean(cd_clean):.3f}x |")
    print(f"| student CD-L1, composited photos | {statistics.fmean(cd_photo):.5f} | | |")
    print(f"| photos / clean | {ratio:.3f}x | <= {BAR_CD_RATIO}x | {'PASS' if ratio <= BAR_CD_RATIO else 'MISS'} |")
    if other is not None:
        print("\nThe same photos and masks, two students side by side (student CD-L1 vs GT, mean over the shoes):\n")
        print("| run | clean renders | photos, true masks | photos | photos / clean | bar |")
        print("|---|---:|---:|---:|---:|---|")
        for name, c in ((run_dir.name, {"clean": cd_clean, "true": cd_true, "photo": cd_photo}),
                        (args.compare, cd_other)):
            m = {k: statistics.fmean(v) for k, v in c.items()}
            r = m["photo"] / m["clean"]
            print(f"| {name} | {m['clean']:.5f} | {m['true']:.5f} | {m['photo']:.5f} | {r:.3f}x | "
                  f"{'PASS' if r <= BAR_CD_RATIO else 'MISS'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
