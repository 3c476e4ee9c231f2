"""The five loss terms of TinyVAE distillation (seed 003) as small pure functions, and their weighted sum.

    total = w_recon·recon + w_kl·kl + w_latent·latent + w_out·output + w_perc·perceptual
            (defaults 0.3 / 0.1 / 0.3 / 0.2 / 0.1)

Images are in [0, 1]; every term is a 0-dim tensor. An empty batch (B = 0) gives 0 for every term, so
it adds nothing to a sum.
"""
from __future__ import annotations

from typing import Callable, Mapping

import torch
import torch.nn.functional as F

TERMS = ("recon", "kl", "latent", "output", "perceptual")


def _empty(x: torch.Tensor) -> bool:
    return x.shape[0] == 0


def reconstruction_loss(recon: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``mean((recon − x)²)`` over batch, channels and pixels (squared intensity units, images in [0, 1]).

    recon, x: (B, 3, H, W). Empty batch → 0.
    """
    if _empty(x):
        return x.new_zeros(())
    return F.mse_loss(recon, x, reduction="mean")


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor, n_elements: int) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) ‖ N(0, I)) in nats per input element.

    ``−½ Σ_latent (1 + logvar − mu² − exp(logvar))`` per sample, averaged over the batch and divided by
    ``n_elements`` (the number of values of one input image, 3·32·32 = 3072), so it is on the same
    per-element scale as the mean-squared reconstruction error (the per-pixel ELBO).
    mu, logvar: (B, ...) any latent shape. Empty batch → 0.
    """
    if _empty(mu):
        return mu.new_zeros(())
    per_sample = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).flatten(1).sum(1)  # (B,)
    return per_sample.mean() / float(n_elements)


def softened(latent: torch.Tensor, temperature: float) -> torch.Tensor:
    """``softmax(latent / T)`` over the latent channels (dim 1): the soft targets of latent distillation.

    latent: (B, D). A larger T gives a flatter (higher-entropy) distribution. Empty batch → (0, D).
    """
    return F.softmax(latent / temperature, dim=1)  # (B, D)


def latent_distillation_loss(projected_student: torch.Tensor, teacher_latent: torch.Tensor,
                             temperature: float) -> torch.Tensor:
    """Temperature-softened KL between teacher and projected-student latents (Hinton et al.), in nats.

    ``T² · mean_B KL(softmax(t/T) ‖ softmax(s/T))`` where ``s = projector(student_mu)`` and
    ``t = teacher_mu``, both (B, D) with D = the teacher's latent size; the softmax runs over the D latent
    channels. ``T²`` keeps gradient magnitudes comparable across temperatures. Empty batch → 0.
    """
    if _empty(teacher_latent):
        return teacher_latent.new_zeros(())
    target = softened(teacher_latent, temperature)  # (B, D)
    log_student = F.log_softmax(projected_student / temperature, dim=1)  # (B, D)
    return F.kl_div(log_student, target, reduction="batchmean") * temperature ** 2


def output_distillation_loss(student_recon: torch.Tensor, teacher_recon: torch.Tensor) -> torch.Tensor:
    """``mean((student_recon − teacher_recon)²)`` over all elements (squared intensity units).

    Both (B, 3, H, W) in [0, 1]; the teacher's side carries no gradient. Empty batch → 0.
    """
    if _empty(student_recon):
        return student_recon.new_zeros(())
    return F.mse_loss(student_recon, teacher_recon.detach(), reduction="mean")


def perceptual_loss(features: Callable[[torch.Tensor], Mapping[str, torch.Tensor]], recon: torch.Tensor,
                    x: torch.Tensor) -> torch.Tensor:
    """VGG16 feature distance between ``recon`` and ``x`` (both (B, 3, H, W) in [0, 1]).

    For each layer l returned by ``features`` (e.g. relu1_2, relu2_2), the feature vectors at every
    position are scaled to unit L2 norm over the channels (as in LPIPS, without learned weights), and
    ``Σ_c (f̂(recon) − f̂(x))²`` is averaged over positions and batch; the layers are then averaged.
    Each position contributes a value in [0, 4] (dimensionless). ``x``'s features carry no gradient.
    Empty batch → 0.
    """
    if _empty(x):
        return x.new_zeros(())
    with torch.no_grad():
        target = features(x)
    pred = features(recon)
    per_layer = []
    for name, f_pred in pred.items():
        a = F.normalize(f_pred, dim=1, eps=1e-10)  # (B, C_l, H_l, W_l)
        b = F.normalize(target[name], dim=1, eps=1e-10)  # (B, C_l, H_l, W_l)
        per_layer.append((a - b).pow(2).sum(1).mean())
    return torch.stack(per_layer).mean()


def weighted_total(terms: Mapping[str, torch.Tensor], weights: Mapping[str, float]) -> torch.Tensor:
    """``Σ_k weights[k] · terms[k]`` over the keys of ``weights`` (a key with weight 0 is skipped, so its
    term may be missing). Raises KeyError when a weighted term is missing. No weights → 0."""
    total = None
    for key, w in weights.items():
        if w == 0:
            continue
        part = float(w) * terms[key]
        total = part if total is None else total + part
    if total is None:
        ref = next(iter(terms.values()), None)
        return ref.new_zeros(()) if ref is not None else torch.zeros(())
    return total
