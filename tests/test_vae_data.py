"""Image datasets on tiny files in each real format: idx(.gz), CIFAR-10 pickles, an image folder."""
import gzip
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from engine.config import UserError
from engine.data import image_datasets as D


def write_idx(path, images):
    n, r, c = images.shape
    raw = b"\x00\x00\x08\x03" + b"".join(v.to_bytes(4, "big") for v in (n, r, c)) + images.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)


def test_fashion_mnist_idx(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    train = rng.integers(1, 256, (12, 28, 28))
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", train)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", rng.integers(0, 256, (5, 28, 28)))  # plain, not gzipped
    monkeypatch.setenv("DS_FASHION_MNIST", str(tmp_path))
    x = D.load_images("fashion-mnist", "train")
    assert x.shape == (12, 3, 32, 32) and x.dtype == torch.float32
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])  # grey repeated
    assert float(x[:, :, :2].abs().sum()) == 0 and float(x[:, :, :, -2:].abs().sum()) == 0  # 2-pixel padding
    assert torch.allclose(x[3, 0, 2:30, 2:30], torch.from_numpy(train[3] / 255.0).float())
    assert D.load_images("fashion-mnist", "test").shape[0] == 5
    assert D.load_images("fashion-mnist", "train", limit=4).shape[0] == 4


def test_fashion_mnist_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("DS_FASHION_MNIST", str(tmp_path))
    with pytest.raises(UserError, match="dataset-fashion-mnist"):
        D.load_images("fashion-mnist")
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x01" + bytes(12))
    with pytest.raises(UserError, match="magic"):
        D.load_images("fashion-mnist")
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((2, 28, 28)))
    (tmp_path / "train-images-idx3-ubyte").write_bytes((tmp_path / "train-images-idx3-ubyte").read_bytes()[:-5])
    with pytest.raises(UserError, match="truncated"):
        D.load_images("fashion-mnist")


def _write_cifar(folder, n=4):
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"batch_label": name.encode(), b"labels": list(range(n)),
                 b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"filenames": [b"x.png"] * n}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)


def test_cifar10_pickles(tmp_path, monkeypatch):
    _write_cifar(tmp_path / "cifar")
    x = D.load_images(f"cifar10:{tmp_path / 'cifar'}", "train")
    assert x.shape == (20, 3, 32, 32) and 0 <= float(x.min()) and float(x.max()) <= 1
    with open(tmp_path / "cifar" / "data_batch_1", "rb") as f:
        first = pickle.load(f, encoding="bytes")[b"data"][0]
    assert torch.allclose(x[0], torch.from_numpy(first.reshape(3, 32, 32) / 255.0).float())
    monkeypatch.setenv("DS_CIFAR10", str(tmp_path / "cifar"))
    assert D.load_images("cifar10", "test").shape == (4, 3, 32, 32)
    assert D.load_images("cifar10", "train", limit=6).shape[0] == 6


def test_cifar10_missing_and_unsafe(tmp_path):
    with pytest.raises(UserError, match="CIFAR-10 not found"):
        D.load_images(f"cifar10:{tmp_path}", "train")
    _write_cifar(tmp_path / "c")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(tmp_path / "c" / "test_batch", "wb") as f:
        pickle.dump({b"data": Evil()}, f)
    with pytest.raises(UserError, match="not a CIFAR-10 python batch"):
        D.load_images(f"cifar10:{tmp_path / 'c'}", "test")


def test_image_folder(tmp_path):
    root = tmp_path / "imgs"
    (root / "sub").mkdir(parents=True)
    for i in range(12):
        size = (40, 20) if i % 2 else (50, 50)
        mode = "RGBA" if i == 3 else "RGB"
        Image.new(mode, size, (10 * i, 100, 200, 255) if mode == "RGBA" else (10 * i, 100, 200)).save(
            root / ("sub" if i > 8 else "") / f"img{i:02d}.png")
    (root / "notes.txt").write_text("not an image")
    train, test = D.load_images(f"folder:{root}", "train"), D.load_images(f"folder:{root}", "test")
    assert train.shape == (11, 3, 32, 32) and test.shape == (1, 3, 32, 32)  # every 10th is test
    assert torch.allclose(train[0, :, 16, 16], torch.tensor([0, 100, 200]) / 255.0, atol=1e-6)
    (root / "broken.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match="broken.png"):
        D.load_images(f"folder:{root}", "train")
    split = tmp_path / "split"
    for part, n in (("train", 3), ("test", 2)):
        (split / part).mkdir(parents=True)
        for i in range(n):
            Image.new("L", (32, 32), 50).save(split / part / f"{i}.jpg")
    assert D.load_images(f"folder:{split}", "test").shape[0] == 2
    with pytest.raises(UserError, match="no such folder"):
        D.load_images(f"folder:{tmp_path / 'nope'}")


def test_bad_specs_and_order():
    with pytest.raises(UserError, match="dataset 'mnist'"):
        D.load_images("mnist")
    with pytest.raises(UserError, match="split"):
        D.load_images("fashion-mnist", "val")
    with pytest.raises(UserError, match="limit"):
        D.load_images("fashion-mnist", limit=0)
    a, b = D.epoch_order(50, seed=1, epoch=2), D.epoch_order(50, seed=1, epoch=2)
    assert torch.equal(a, b) and sorted(a.tolist()) == list(range(50))
    assert not torch.equal(a, D.epoch_order(50, seed=1, epoch=3))
    train, val = D.split_train_val(torch.zeros(100, 3, 32, 32), 30)
    assert (len(train), len(val)) == (90, 10)
