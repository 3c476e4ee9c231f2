"""Image datasets the VAEs learn from, as float tensors ``(N, 3, 32, 32)`` in [0, 1]. Nothing is downloaded.

Dataset specs (the ``dataset`` config key):

``fashion-mnist``
    The Debian package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist/``, or
    ``$DS_FASHION_MNIST``): ``{train,t10k}-images-idx3-ubyte[.gz]``. 28×28 grey images are padded by
    2 black pixels on every side to 32×32 and the grey channel is repeated 3 times.
``cifar10`` or ``cifar10:PATH``
    A local folder in the standard python-pickle format (``data_batch_1..5``, ``test_batch``):
    ``PATH``, else ``$DS_CIFAR10``, else ``$DS_DATA/cifar-10-batches-py``. The pickles are read with
    an unpickler that only admits plain containers and numpy arrays (never arbitrary code).
``folder:PATH``
    Any images under ``PATH`` (png, jpg, jpeg, bmp, webp, gif; recursive, sorted by path). Each is
    converted to RGB (transparency composited on white), centre-cropped to a square and resized to
    32×32 (bicubic). Test split: ``PATH/test/`` when ``PATH/train/`` and ``PATH/test/`` exist, else every
    10th image in sorted order (the others are the train split).

Splits: ``train`` and ``test`` (the held-out split). ``limit`` keeps the first N images of a split.
``split_train_val`` carves a validation slice off the end of the train split (used for best-checkpoint
selection so the test split stays untouched until the report); ``epoch_order`` is the deterministic
shuffle of one epoch. ``grid_png`` draws rows of images (a reconstruction grid) as one PNG.
"""
from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import torch

from engine.config import UserError, data_root

IMAGE_SIZE = 32
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif")
SPLITS = ("train", "test")


def describe_datasets() -> str:
    return "fashion-mnist, cifar10, cifar10:PATH or folder:PATH"


def load_images(dataset: str, split: str = "train", limit: int | None = None,
                cifar10_root: str | None = None) -> torch.Tensor:
    """Images of ``dataset``/``split`` as ``(N, 3, 32, 32)`` float32 in [0, 1] (first ``limit`` if given)."""
    if split not in SPLITS:
        raise UserError(f"split {split!r}: expected one of {', '.join(SPLITS)}")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise UserError(f"limit {limit!r}: expected a positive integer")
    if not isinstance(dataset, str):
        raise UserError(f"dataset {dataset!r}: expected {describe_datasets()}")
    if dataset == "fashion-mnist":
        images = _fashion_mnist(split, limit)
    elif dataset == "cifar10" or dataset.startswith("cifar10:"):
        root = dataset.split(":", 1)[1] if ":" in dataset else cifar10_root
        images = _cifar10(split, limit, root)
    elif dataset.startswith("folder:") and len(dataset) > len("folder:"):
        images = _folder(Path(dataset[len("folder:"):]).expanduser(), split, limit)
    else:
        raise UserError(f"dataset {dataset!r}: expected {describe_datasets()}")
    if images.shape[0] == 0:
        raise UserError(f"dataset {dataset!r} has no {split} images")
    return images


# ----------------------------------------------------------------------------- Fashion-MNIST (idx)
def read_idx_images(path: Path) -> np.ndarray:
    """An idx3-ubyte file (optionally gzipped) as a uint8 array (N, rows, cols)."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise UserError(f"{path}: cannot read ({exc})") from None
    if len(raw) < 16 or raw[:4] != b"\x00\x00\x08\x03":
        raise UserError(f"{path.name}: not an idx3-ubyte image file (bad magic number)")
    n, rows, cols = (int.from_bytes(raw[i:i + 4], "big") for i in (4, 8, 12))
    if len(raw) != 16 + n * rows * cols:
        raise UserError(f"{path.name}: truncated ({len(raw) - 16} pixel bytes for {n}×{rows}×{cols})")
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, rows, cols)


def _fashion_mnist(split: str, limit: int | None) -> torch.Tensor:
    root = Path(os.environ.get("DS_FASHION_MNIST", FASHION_MNIST_DIR))
    stem = "train" if split == "train" else "t10k"
    candidates = [root / f"{stem}-images-idx3-ubyte.gz", root / f"{stem}-images-idx3-ubyte"]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise UserError(f"Fashion-MNIST not found ({candidates[0]}): install the Debian package "
                        "dataset-fashion-mnist (make run does it) or set DS_FASHION_MNIST")
    grey = read_idx_images(path)[:limit]  # (N, 28, 28) uint8
    pad_h, pad_w = IMAGE_SIZE - grey.shape[1], IMAGE_SIZE - grey.shape[2]
    if pad_h < 0 or pad_w < 0:
        raise UserError(f"{path.name}: images are {grey.shape[1]}×{grey.shape[2]}, larger than 32×32")
    grey = np.pad(grey, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2)))
    x = torch.from_numpy(grey.astype(np.float32) / 255.0)  # (N, 32, 32)
    return x[:, None].repeat(1, 3, 1, 1).contiguous()  # (N, 3, 32, 32)


# ----------------------------------------------------------------------------- CIFAR-10 (pickle)
class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("builtins", "dict"), ("builtins", "list"),
               ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
               ("_codecs", "encode")}  # bytes written by Python 3 under protocol 2

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def read_cifar_batch(path: Path) -> np.ndarray:
    """One CIFAR-10 python batch file as uint8 (N, 3, 32, 32)."""
    try:
        with open(path, "rb") as f:
            batch = _ArrayUnpickler(f, encoding="bytes").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError) as exc:
        raise UserError(f"{path}: not a CIFAR-10 python batch ({str(exc)[:120]})") from None
    data = batch.get(b"data", batch.get("data")) if isinstance(batch, dict) else None
    if data is None:
        raise UserError(f"{path.name}: not a CIFAR-10 python batch (no 'data' entry)")
    data = np.asarray(data, dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3 * IMAGE_SIZE * IMAGE_SIZE:
        raise UserError(f"{path.name}: 'data' has shape {data.shape}, expected (N, 3072)")
    return data.reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE)


def _cifar10(split: str, limit: int | None, root: str | None) -> torch.Tensor:
    folder = Path(root or os.environ.get("DS_CIFAR10") or data_root() / "cifar-10-batches-py").expanduser()
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise UserError(f"CIFAR-10 not found: {folder / missing[0]} is missing (put the python-pickle "
                        "version in that folder, or set cifar10_root / DS_CIFAR10)")
    parts, total = [], 0
    for name in names:
        if limit is not None and total >= limit:
            break
        part = read_cifar_batch(folder / name)
        parts.append(part)
        total += len(part)
    data = np.concatenate(parts)[:limit]
    return torch.from_numpy(data.astype(np.float32) / 255.0)


# ----------------------------------------------------------------------------- image folder
def _folder(root: Path, split: str, limit: int | None) -> torch.Tensor:
    if not root.is_dir():
        raise UserError(f"folder:{root}: no such folder")
    if (root / "train").is_dir() and (root / "test").is_dir():
        files = _image_files(root / split)
    else:
        files = _image_files(root)
        files = [f for i, f in enumerate(files) if (i % 10 == 9) == (split == "test")]
    files = files[:limit]
    if not files:
        raise UserError(f"folder:{root}: no {split} images ({', '.join(IMAGE_SUFFIXES)})")
    return torch.stack([_load_image(f) for f in files])


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _load_image(path: Path) -> torch.Tensor:
    """One image of a ``folder:`` dataset as (3, 32, 32) float in [0, 1]. Read by the photo loader's rule
    (``engine.data.photos``): at most ``MAX_SIDE`` px a side, and anything PIL refuses — a decompression
    bomb too — is one ``UserError`` naming ``<folder>/<file>``."""
    from PIL import Image, UnidentifiedImageError

    from engine.data.photos import MAX_SIDE

    name = f"{path.parent.name}/{path.name}"
    try:
        with Image.open(path) as im:
            if max(im.size) > MAX_SIDE:
                raise UserError(f"{name}: image too large ({im.width}x{im.height}; at most {MAX_SIDE} px a side)")
            im.load()
            if im.mode in ("RGBA", "LA", "P"):
                im = im.convert("RGBA")
                bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
                im = Image.alpha_composite(bg, im)
            im = im.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        msg = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{name}: unreadable image ({msg})") from None
    side = min(im.size)
    left, top = (im.width - side) // 2, (im.height - side) // 2
    im = im.crop((left, top, left + side, top + side)).resize((IMAGE_SIZE, IMAGE_SIZE), Image.BICUBIC)
    arr = np.asarray(im, dtype=np.float32) / 255.0  # (32, 32, 3)
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()  # (3, 32, 32)


# ----------------------------------------------------------------------------- splits and order
def split_train_val(images: torch.Tensor, val_images: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, val): the last ``min(val_images, N // 10)`` images are the validation slice (≥ 1)."""
    n_val = max(1, min(int(val_images), len(images) // 10))
    if len(images) < 2:
        raise UserError(f"need at least 2 training images for a validation slice, got {len(images)}")
    return images[:-n_val], images[-n_val:]


def epoch_order(n: int, seed: int, epoch: int, phase: int = 0) -> torch.Tensor:
    """Deterministic permutation of ``range(n)`` for one epoch of one phase."""
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + phase * 10_007 + epoch)
    return torch.randperm(n, generator=g)


def grid_png(rows: list[torch.Tensor], scale: int = 3, gap: int = 2) -> bytes:
    """A PNG of image rows (each (N, 3, H, W) in [0, 1]) on a white background, upscaled ``scale``×."""
    import io

    from PIL import Image

    n, h, w = rows[0].shape[0], rows[0].shape[2], rows[0].shape[3]
    canvas = np.ones((len(rows) * (h + gap) + gap, n * (w + gap) + gap, 3), dtype=np.float32)
    for r, imgs in enumerate(rows):
        arr = imgs.detach().float().clamp(0, 1).cpu().permute(0, 2, 3, 1).numpy()  # (N, H, W, 3)
        for i in range(n):
            y0, x0 = gap + r * (h + gap), gap + i * (w + gap)
            canvas[y0:y0 + h, x0:x0 + w] = arr[i]
    im = Image.fromarray((canvas * 255).round().astype(np.uint8)).resize(
        (canvas.shape[1] * scale, canvas.shape[0] * scale), Image.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()
