"""The two VAEs of the TinyVAE distillation (seed 003): a ~10 M-parameter teacher and the ~1.1 M TinyVAE.

Images are ``(B, 3, 32, 32)`` floats in [0, 1]; decoders end in a sigmoid, so reconstructions are too.

``TeacherVAE(latent_dim=512)``
    The "standard" VAE: a 4-layer conv encoder (32 → 16 → 8 → 4) and a flat latent vector of 512,
    a 4-layer conv decoder (4 → 8 → 16 → 32). Wide convolutions at high resolution: the reference for
    quality, and deliberately the slow one.
``MinimalVAE(latent_dim=128, base_channels=32)``  — the TinyVAE (student)
    A spatial latent of 4×4×128, three down stages and three up stages with one residual ``Block``
    each, ~1.1 M parameters.

Both have ``encode(x)`` → the latent mean, ``decode(z)`` → the image and ``forward(x)`` →
``(recon, mu, logvar)`` where ``recon = decode(mu + eps·exp(logvar/2))`` in training mode and
``decode(mu)`` in eval mode.

``LatentProjector`` maps the student's latent onto the teacher's (used by latent distillation only; it
is not part of the deployed student).

Deployment (the seed's snippet; only the import path changed). A checkpoint written by
``engine.train.vae`` (``tinyvae_best.pth`` / ``tinyvae_last.pth`` / ``tinyvae_epoch_005.pth`` …) holds
``student_state_dict``, ``teacher_state_dict``, ``projector_state_dict`` and a plain ``config`` dict::

    import torch
    from engine.students.vae import MinimalVAE

    # Load the trained model
    model = MinimalVAE(latent_dim=128, base_channels=32)
    checkpoint = torch.load('checkpoints/tinyvae_best.pth', weights_only=True)
    model.load_state_dict(checkpoint['student_state_dict'])
    model.eval()

    # Use for inference
    with torch.no_grad():
        latent = model.encode(image)          # image: (B, 3, 32, 32) in [0, 1]
        reconstruction = model.decode(latent)
"""
from __future__ import annotations

import torch
import torch.nn as nn

IMAGE_SIZE = 32


def conv(n_in: int, n_out: int, stride: int = 1, kernel: int = 3, **kwargs) -> nn.Conv2d:
    """A 'same'-padded convolution (``stride=2`` halves the size)."""
    return nn.Conv2d(n_in, n_out, kernel, stride=stride, padding=kernel // 2, **kwargs)


class Block(nn.Module):
    """Residual block: ``relu(conv(relu(conv(x))) + x)``; keeps channels and size."""

    def __init__(self, n: int):
        super().__init__()
        self.conv = nn.Sequential(conv(n, n), nn.ReLU(), conv(n, n))
        self.fuse = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(self.conv(x) + x)  # (B, n, H, W)


# --------------------------------------------------------------------------------------- student
def Encoder(latent_dim: int = 128, c: int = 32) -> nn.Sequential:
    """(B, 3, 32, 32) → (B, 2·latent_dim, 4, 4): mean and log-variance stacked on the channels."""
    return nn.Sequential(
        conv(3, c, stride=2), nn.ReLU(),                          # 16×16
        conv(c, 2 * c, stride=2), nn.ReLU(), Block(2 * c),        # 8×8
        conv(2 * c, 4 * c, stride=2), nn.ReLU(), Block(4 * c),    # 4×4
        conv(4 * c, 2 * latent_dim, kernel=1),
    )


def Decoder(latent_dim: int = 128, c: int = 32) -> nn.Sequential:
    """(B, latent_dim, 4, 4) → (B, 3, 32, 32) in [0, 1]."""
    return nn.Sequential(
        conv(latent_dim, 4 * c), nn.ReLU(), Block(4 * c),                              # 4×4
        nn.Upsample(scale_factor=2), conv(4 * c, 2 * c), nn.ReLU(), Block(2 * c),      # 8×8
        nn.Upsample(scale_factor=2), conv(2 * c, c), nn.ReLU(),                        # 16×16
        nn.Upsample(scale_factor=2), conv(c, 3), nn.Sigmoid(),                         # 32×32
    )


# --------------------------------------------------------------------------------------- teacher
TEACHER_CHANNELS = (96, 192, 384, 288)


def TeacherEncoder(latent_dim: int = 512, ch: tuple[int, ...] = TEACHER_CHANNELS) -> nn.Sequential:
    """(B, 3, 32, 32) → (B, 2·latent_dim): mean and log-variance."""
    return nn.Sequential(
        conv(3, ch[0]), nn.ReLU(),                          # 32×32
        conv(ch[0], ch[1], stride=2), nn.ReLU(),            # 16×16
        conv(ch[1], ch[2], stride=2), nn.ReLU(),            # 8×8
        conv(ch[2], ch[3], stride=2), nn.ReLU(),            # 4×4
        nn.Flatten(), nn.Linear(ch[3] * 16, 2 * latent_dim),
    )


def TeacherDecoder(latent_dim: int = 512, ch: tuple[int, ...] = TEACHER_CHANNELS) -> nn.Sequential:
    """(B, latent_dim) → (B, 3, 32, 32) in [0, 1]."""
    return nn.Sequential(
        nn.Linear(latent_dim, ch[3] * 16), nn.ReLU(), nn.Unflatten(1, (ch[3], 4, 4)),
        conv(ch[3], ch[2]), nn.ReLU(),                                  # 4×4
        nn.Upsample(scale_factor=2), conv(ch[2], ch[1]), nn.ReLU(),     # 8×8
        nn.Upsample(scale_factor=2), conv(ch[1], ch[0]), nn.ReLU(),     # 16×16
        nn.Upsample(scale_factor=2), conv(ch[0], 3), nn.Sigmoid(),      # 32×32
    )


# --------------------------------------------------------------------------------------- VAEs
class _VAE(nn.Module):
    """Shared encode / decode / forward over an ``encoder`` giving mean ‖ log-variance on dim 1."""

    encoder: nn.Module
    decoder: nn.Module

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(x).chunk(2, dim=1)  # latent-shaped each
        return mu, logvar.clamp(-30.0, 20.0)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The latent mean of ``x`` (B, 3, 32, 32)."""
        return self.posterior(x)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The image (B, 3, 32, 32) of latent ``z``."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.posterior(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        return self.decode(z), mu, logvar


class TeacherVAE(_VAE):
    """The teacher: flat latent of ``latent_dim`` (default 512), ~10 M parameters."""

    def __init__(self, latent_dim: int = 512):
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = TeacherEncoder(latent_dim)
        self.decoder = TeacherDecoder(latent_dim)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (self.latent_dim,)


class MinimalVAE(_VAE):
    """The TinyVAE: spatial latent ``latent_dim``×4×4 (default 128×4×4), ~1.1 M parameters."""

    def __init__(self, latent_dim: int = 128, base_channels: int = 32):
        super().__init__()
        self.latent_dim, self.base_channels = latent_dim, base_channels
        self.encoder = Encoder(latent_dim, base_channels)
        self.decoder = Decoder(latent_dim, base_channels)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (self.latent_dim, IMAGE_SIZE // 8, IMAGE_SIZE // 8)


class LatentProjector(nn.Module):
    """Learned map from the student's latent (B, C_s, 4, 4) to the teacher's (B, D_t): flatten + linear."""

    def __init__(self, student_shape: tuple[int, ...], teacher_dim: int):
        super().__init__()
        n_in = 1
        for s in student_shape:
            n_in *= int(s)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(n_in, teacher_dim))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)  # (B, D_t)


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not)."""
    return sum(p.numel() for p in model.parameters())
