"""The TinyVAE report: size, speed, held-out quality, latent alignment and ONNX parity.

``build_report(ctx, checkpoint)`` loads a ``tinyvae_*.pth`` checkpoint and measures, on the held-out
split (the dataset's test split) of the checkpoint's dataset:

* parameters of teacher and student and their ratio;
* latency of encode→decode at batch 64 in torch eager and in ONNX Runtime (encoder and decoder exported
  separately with a dynamic batch axis; time = median over repeats of one encoder + one decoder call,
  ``threads`` intra-op threads for both runtimes, teacher and student measured alternately);
* PSNR (dB, mean over images of ``10·log10(1/MSE)``, images in [0, 1]) and SSIM (Gaussian window 11,
  σ 1.5, per channel, mean) of ``decode(encode(x))`` for teacher and student, and the student's
  retention (% of the teacher's value);
* latent alignment: linear CKA between the projected student latent means and the teacher's;
* ONNX parity: max-abs-error between torch and ONNX Runtime for each exported graph.

It writes ``report.json`` and ``report.md`` (and the ONNX files under ``onnx/``) into ``out_dirs``.
``engine.workflows.distil_and_report(ctx, config)`` is the VAE job of the CLI and the studio: ``engine.train.vae``'s
training, then (config ``report``, default true) this report on its best checkpoint. Training never
imports this module; the checkpoint format is ``engine.students.vae_checkpoint``'s.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from engine import export, storage
from engine.data.image_datasets import grid_png  # noqa: F401 - the recon grid's drawing, kept importable here
from engine.progress import NULL_CONTEXT
from engine.students.vae_checkpoint import load_checkpoint

SPEED_REPEATS = 7  # timed encode→decode calls per model and runtime (median taken)
SPEED_BATCH = 64  # batch size of the latency measurement
SPEED_THREADS = 2  # intra-op threads of torch and ONNX Runtime during the latency measurement


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB for images in [0, 1]: ``10·log10(1 / mean((pred − target)²))``, (B,).

    pred, target: (B, C, H, W). A perfect image gives +inf (MSE floored at 1e-10 → 100 dB). Empty → (0,).
    """
    mse = (pred - target).pow(2).flatten(1).mean(1).clamp_min(1e-10)  # (B,)
    return 10.0 * torch.log10(1.0 / mse)


def ssim(pred: torch.Tensor, target: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-image SSIM (Wang et al. 2004) with a Gaussian window, data range 1, per channel then averaged.

    Constants C1 = 0.01², C2 = 0.03²; 'valid' windows only. pred, target: (B, C, H, W) → (B,). Empty → (0,).
    """
    c = pred.shape[1]
    g = torch.exp(-((torch.arange(window, dtype=pred.dtype) - (window - 1) / 2) ** 2) / (2 * sigma ** 2))
    g = (g / g.sum()).to(pred.device)
    kernel = (g[:, None] * g[None, :]).expand(c, 1, window, window).contiguous()  # (C, 1, k, k)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, kernel, groups=c)  # (B, C, H-k+1, W-k+1)

    mu_p, mu_t = blur(pred), blur(target)
    var_p = blur(pred * pred) - mu_p ** 2
    var_t = blur(target * target) - mu_t ** 2
    cov = blur(pred * target) - mu_p * mu_t
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mu_p * mu_t + c1) * (2 * cov + c2)) / ((mu_p ** 2 + mu_t ** 2 + c1) * (var_p + var_t + c2))
    return s.flatten(1).mean(1)


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA (Kornblith et al. 2019) between representations x (N, D1) and y (N, D2), in [0, 1].

    ``‖Yᶜᵀ Xᶜ‖_F² / (‖Xᶜᵀ Xᶜ‖_F · ‖Yᶜᵀ Yᶜ‖_F)`` on column-centred float64 copies. Fewer than 2 rows or a
    constant representation → nan.
    """
    x = x.double().flatten(1)
    y = y.double().flatten(1)
    if x.shape[0] < 2:
        return float("nan")
    x, y = x - x.mean(0), y - y.mean(0)
    den = torch.linalg.norm(x.T @ x) * torch.linalg.norm(y.T @ y)
    return float(torch.linalg.norm(y.T @ x) ** 2 / den) if den > 0 else float("nan")


class _AutoEncode(torch.nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, x):
        return self.vae.decode(self.vae.encode(x))


class _Encode(_AutoEncode):
    def forward(self, x):
        return self.vae.encode(x)


@torch.no_grad()
def quality(teacher, student, projector, images: torch.Tensor, batch_size: int = 256, ctx=None) -> dict[str, float]:
    """PSNR / SSIM of teacher and student (eval, decode(encode(x))) and latent CKA over ``images``;
    stops at the next batch when ``ctx`` (a job context) is cancelled. Progress: 5-45 % of the report."""
    ctx = ctx or NULL_CONTEXT
    sums = {"teacher_psnr": 0.0, "student_psnr": 0.0, "teacher_ssim": 0.0, "student_ssim": 0.0}
    t_lat, s_lat = [], []
    for i in range(0, len(images), batch_size):
        ctx.check_cancelled()
        x = images[i:i + batch_size]
        for name, vae in (("teacher", teacher), ("student", student)):
            mu = vae.encode(x)
            rec = vae.decode(mu)
            sums[f"{name}_psnr"] += float(psnr(rec, x).sum())
            sums[f"{name}_ssim"] += float(ssim(rec, x).sum())
            (t_lat if name == "teacher" else s_lat).append(projector(mu) if name == "student" else mu)
        done = min(i + batch_size, len(images))
        ctx.progress(0.05 + 0.4 * done / len(images), f"report: PSNR / SSIM, image {done}/{len(images)}")
    out = {k: v / len(images) for k, v in sums.items()}
    out["psnr_retention_pct"] = 100.0 * out["student_psnr"] / out["teacher_psnr"]
    out["ssim_retention_pct"] = 100.0 * out["student_ssim"] / out["teacher_ssim"]
    out["latent_cka"] = linear_cka(torch.cat(s_lat), torch.cat(t_lat))
    return out


def speed(teacher, student, folder: Path, batch: int = 64, threads: int = 2, repeats: int = 7,
          ctx=None) -> dict[str, Any]:
    """Export encoders/decoders to ``folder`` and time both models in torch and ONNX Runtime at ``batch``;
    stops between rounds when ``ctx`` (a job context) is cancelled. Progress: 45-65 % of the report for
    the exports, 65-100 % for the timing rounds."""
    ctx = ctx or NULL_CONTEXT
    x = torch.rand(batch, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    res: dict[str, Any] = {"batch": batch, "threads": threads, "onnx": {}}
    sessions = {}
    for k, (name, vae) in enumerate((("teacher", teacher), ("student", student))):
        ctx.progress(0.45 + 0.1 * k, f"report: ONNX export of the {name}")
        z = vae.encode(x).detach()
        enc = export.export_onnx(_Encode(vae), x, folder / f"{name}_encoder.onnx", ("image",), ("latent",))
        dec = export.export_onnx(vae.decoder, z, folder / f"{name}_decoder.onnx", ("latent",), ("image",))
        sessions[name] = (export.ort_session(enc, threads), export.ort_session(dec, threads), z)
        res["onnx"][name] = {"encoder": str(enc), "decoder": str(dec),
                             "encoder_max_abs_err": export.parity(_Encode(vae), sessions[name][0], x),
                             "decoder_max_abs_err": export.parity(vae.decoder, sessions[name][1], z)}
    times: dict[str, list[float]] = {k: [] for k in ("teacher_torch", "student_torch", "teacher_ort", "student_ort")}
    for r in range(repeats):  # alternate the models so that machine noise hits both alike
        ctx.check_cancelled()
        ctx.progress(0.65 + 0.35 * r / repeats, f"report: timing round {r + 1}/{repeats}")
        for name, vae in (("teacher", teacher), ("student", student)):
            times[f"{name}_torch"].append(export.latency_torch(_AutoEncode(vae), x, warmup=1, repeats=1, threads=threads))
            enc_s, dec_s, z = sessions[name]
            times[f"{name}_ort"].append(export.latency_ort(enc_s, x, warmup=1, repeats=1)
                                        + export.latency_ort(dec_s, z, warmup=1, repeats=1))
    for key, values in times.items():
        res[f"{key}_ms"] = 1000.0 * float(np.median(values))
    res["speedup_torch"] = res["teacher_torch_ms"] / res["student_torch_ms"]
    res["speedup_ort"] = res["teacher_ort_ms"] / res["student_ort_ms"]
    return res


def build_report(ctx, checkpoint: Path, eval_limit: int | None = None, out_dirs: list[Path] | None = None,
                 batch: int | None = None, threads: int | None = None, repeats: int | None = None) -> dict[str, Any]:
    """Measure everything listed in the module docstring for ``checkpoint``; write report.json/.md into
    ``out_dirs`` (default: the checkpoint's folder) and return the report dict."""
    from engine.data.image_datasets import load_images
    from engine.students.vae import count_parameters

    ctx = ctx or NULL_CONTEXT
    checkpoint = Path(checkpoint)
    out_dirs = out_dirs or [checkpoint.parent]
    cfg, teacher, student, projector = load_checkpoint(checkpoint)
    t0 = time.time()
    images = load_images(cfg["dataset"], "test", limit=eval_limit, cifar10_root=cfg.get("cifar10_root"))
    ctx.log(f"report: {len(images)} held-out images ({cfg['dataset']} test split)")
    report: dict[str, Any] = {
        "checkpoint": str(checkpoint), "dataset": cfg["dataset"], "split": "test", "images": len(images),
        "params": {"teacher": count_parameters(teacher), "student": count_parameters(student),
                   "projector": count_parameters(projector)},
    }
    report["params"]["ratio"] = report["params"]["teacher"] / report["params"]["student"]
    report["quality"] = quality(teacher, student, projector, images, ctx=ctx)
    ctx.check_cancelled()
    report["speed"] = speed(teacher, student, Path(out_dirs[0]) / "onnx", batch or SPEED_BATCH, threads or SPEED_THREADS,
                            repeats or SPEED_REPEATS, ctx=ctx)
    report["seconds"] = round(time.time() - t0, 1)
    for folder in out_dirs:
        storage.write_json(Path(folder) / "report.json", report)
        storage.write_text(Path(folder) / "report.md", format_markdown(report))
    return report


def format_markdown(r: dict[str, Any]) -> str:
    """The report as a Markdown table (the CLI prints it; report.md holds it)."""
    q, s, p = r["quality"], r["speed"], r["params"]

    def f(v: float, nd: int = 2) -> str:
        return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:,.{nd}f}"

    onnx_err = max(v for m in s["onnx"].values() for k, v in m.items() if k.endswith("max_abs_err"))
    lines = [
        f"# TinyVAE report — {r['dataset']} ({r['split']} split, {r['images']} images)", "",
        f"checkpoint: `{r['checkpoint']}`", "",
        "| metric | teacher | student | student vs teacher |", "|---|---:|---:|---:|",
        f"| parameters | {p['teacher']:,} | {p['student']:,} | 1/{f(p['ratio'])} |",
        f"| torch eager, batch {s['batch']} ({s['threads']} threads), ms | {f(s['teacher_torch_ms'], 1)} | "
        f"{f(s['student_torch_ms'], 1)} | {f(s['speedup_torch'])}× faster |",
        f"| ONNX Runtime, batch {s['batch']} ({s['threads']} threads), ms | {f(s['teacher_ort_ms'], 1)} | "
        f"{f(s['student_ort_ms'], 1)} | {f(s['speedup_ort'])}× faster |",
        f"| PSNR, dB | {f(q['teacher_psnr'])} | {f(q['student_psnr'])} | {f(q['psnr_retention_pct'], 1)} % |",
        f"| SSIM | {f(q['teacher_ssim'], 4)} | {f(q['student_ssim'], 4)} | {f(q['ssim_retention_pct'], 1)} % |",
        f"| latent alignment (linear CKA, projected student vs teacher) | | | {f(q['latent_cka'], 3)} |",
        f"| ONNX parity (max abs error, encoders and decoders) | | | {onnx_err:.2e} |", "",
        "Latency: median of encode→decode calls (teacher and student measured alternately).",
        "PSNR/SSIM: decode(encode(x)) with the latent mean, images in [0, 1]; retention = student / teacher.",
    ]
    return "\n".join(lines) + "\n"
