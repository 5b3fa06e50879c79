"""The "photo_patches" task: which region of a natural photograph does a patch come from?

scikit-learn ships two 427x640 colour photographs (``load_sample_images``: a Chinese temple
and a flower). Each photo is cut into a ``grid`` of regions; every region is one class, so
classes are local textures and colours of real scenes (sky, roof, leaves, petals, ...).

No pixel is shared between splits: each region is cut into three vertical strips (left 60%
train, next 20% val, right 20% test), and a split's patches are random crops inside its own
strip only. Works offline; deterministic in ``seed``.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from nag.data.tasks import TASKS, Task, param_name
from nag.errors import ConfigError

PHOTOS = ("china", "flower")
_STRIPS = {"train": (0.0, 0.6), "val": (0.6, 0.8), "test": (0.8, 1.0)}
_STREAM = {"train": 0, "val": 1, "test": 2}


def _photos() -> dict[str, np.ndarray]:
    from sklearn.datasets import load_sample_images

    bunch = load_sample_images()
    return {name: img for name, img in zip(PHOTOS, bunch.images)}  # [427, 640, 3] uint8 each


@TASKS.register("photo_patches")
def photo_patches(
    grid: tuple[int, int] = (3, 4),
    patch: int = 32,
    size: int | None = None,
    per_class: tuple[int, int, int] = (120, 40, 40),
    gray: bool = False,
    photos: tuple[str, ...] = PHOTOS,
    seed: int = 0,
) -> Task:
    """Region classification on sklearn's sample photos: ``grid`` = (rows, cols) regions per
    photo, one class each (class id = photo index * rows * cols + region index, row-major).
    Patches are ``patch`` pixels square, resized to ``size`` (default ``patch``) with
    anti-aliasing; ``per_class`` patches per class in train / val / test. ``gray`` makes
    1-channel images. Normalised per channel with the train split's statistics."""
    rows, cols = (int(g) for g in grid)
    photos = tuple(photos)
    unknown = [p for p in photos if p not in PHOTOS]
    if unknown or not photos or len(set(photos)) != len(photos):
        raise ConfigError(f"photo_patches: photos must be distinct names among {list(PHOTOS)}, got {list(photos)}")
    if len(per_class) != 3 or min(int(c) for c in per_class) < 1:
        raise ConfigError(f"photo_patches: per_class must be three counts >= 1 (train, val, test), got {list(per_class)}")
    out_size = int(size or patch)
    images = _photos()
    h, w = images[PHOTOS[0]].shape[:2]
    rh, rw = h // max(rows, 1), w // max(cols, 1)
    narrowest = min(round(b * rw) - round(a * rw) for a, b in _STRIPS.values())
    if rows < 1 or cols < 1 or not 4 <= patch <= min(rh, narrowest):
        raise ConfigError(
            f"photo_patches: grid {rows}x{cols} gives regions of {rh}x{rw} px whose val/test strips are "
            f"{narrowest} px wide; patch must be in 4..{min(rh, narrowest)}, got {patch}. Use fewer "
            f"columns or a smaller patch."
        )
    parts: dict[str, tuple[list, list]] = {s: ([], []) for s in _STRIPS}
    class_names = []
    for p_idx, photo in enumerate(photos):
        img = torch.from_numpy(np.array(images[photo])).permute(2, 0, 1).float() / 255.0  # [3, H, W]
        for r in range(rows):
            for c in range(cols):
                label = len(class_names)
                class_names.append(f"{photo}:r{r}c{c}")
                for split, (a, b) in _STRIPS.items():
                    x0, x1 = c * rw + round(a * rw), c * rw + round(b * rw)
                    rng = np.random.default_rng([seed, _STREAM[split], PHOTOS.index(photo), r, c])
                    n = int(per_class[_STREAM[split]])
                    tops = rng.integers(r * rh, (r + 1) * rh - patch + 1, size=n)
                    lefts = rng.integers(x0, x1 - patch + 1, size=n)
                    parts[split][0].extend(img[:, t : t + patch, s : s + patch] for t, s in zip(tops, lefts))
                    parts[split][1].extend([label] * n)
    datasets, stats = {}, None
    for split in ("train", "val", "test"):
        x = torch.stack(parts[split][0])
        if gray:
            x = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        if out_size != patch:
            x = F.interpolate(x, size=(out_size, out_size), mode="bilinear", antialias=True, align_corners=False)
        if stats is None:  # the train split comes first
            stats = x.mean(dim=(0, 2, 3), keepdim=True), x.std(dim=(0, 2, 3), keepdim=True)
        datasets[split] = TensorDataset(((x - stats[0]) / stats[1]).contiguous(), torch.tensor(parts[split][1]))
    name = param_name(
        "photo_patches", photo_patches, grid=(rows, cols), patch=patch, size=size, per_class=per_class,
        gray=gray, photos=photos, seed=seed,
    )
    return Task(
        name=name,
        num_classes=len(class_names),
        input_shape=(1 if gray else 3, out_size, out_size),
        classes=tuple(range(len(class_names))),
        meta={"mean": stats[0].flatten().tolist(), "std": stats[1].flatten().tolist(), "class_names": class_names, "seed": seed},
        **datasets,
    )
