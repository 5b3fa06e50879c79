"""Writers of small on-disk datasets for the user-data task tests, made from sklearn's digits."""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np


def digits_28(per_class: int | None = None, classes=range(10)) -> tuple[np.ndarray, np.ndarray]:
    """sklearn digits upsampled to 28x28 uint8: images [N, 28, 28], labels [N]."""
    from PIL import Image
    from sklearn.datasets import load_digits

    bunch = load_digits()
    xs, ys = [], []
    for c in classes:
        idx = np.flatnonzero(bunch.target == c)[:per_class]
        for i in idx:
            img = Image.fromarray((bunch.images[i] * 255 / 16).astype(np.uint8)).resize((28, 28), Image.BILINEAR)
            xs.append(np.asarray(img))
            ys.append(c)
    return np.stack(xs), np.array(ys)


def write_png_folder(root: Path, per_class: int | None = 40, classes=range(10), mode: str = "L") -> Path:
    """root/<class>/<i>.png: 28x28 PNGs of digits (grey, or ``mode`` "RGB")."""
    from PIL import Image

    x, y = digits_28(per_class, classes)
    for i, (img, label) in enumerate(zip(x, y)):
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).convert(mode).save(folder / f"{i:04d}.png")
    return root


def write_mnist_raw(root: Path, dataset: str = "MNIST", n_train: int = 300, n_test: int = 100) -> Path:
    """root/<dataset>/raw/: the four IDX files torchvision's MNIST-family classes read."""
    x, y = digits_28()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    raw = root / dataset / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, idx in (("train", order[:n_train]), ("t10k", order[n_train : n_train + n_test])):
        with open(raw / f"{prefix}-images-idx3-ubyte", "wb") as f:
            f.write(struct.pack(">IIII", 2051, len(idx), 28, 28) + x[idx].astype(np.uint8).tobytes())
        with open(raw / f"{prefix}-labels-idx1-ubyte", "wb") as f:
            f.write(struct.pack(">II", 2049, len(idx)) + y[idx].astype(np.uint8).tobytes())
    return root
