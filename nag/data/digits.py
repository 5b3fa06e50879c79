"""The "digits" task: scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes).

It ships inside scikit-learn, so it works offline and is the project's fast real task.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from nag.data.tasks import TASKS, Task, stratified_split
from nag.errors import ConfigError

SPLIT = (0.6, 0.2, 0.2)  # train / val / test fractions, stratified by class


@TASKS.register("digits")
def digits(size: int = 8, split_seed: int = 0) -> Task:
    """Digits as [1, size, size] images (bilinear upsampling when size > 8), normalised with
    the train split's mean/std; a stratified 60/20/20 train/val/test split drawn with
    ``split_seed``."""
    from sklearn.datasets import load_digits

    if int(size) < 8:
        raise ConfigError(f"digits: size must be >= 8 (the native resolution), got {size}")
    size = int(size)
    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1)  # [1797, 1, 8, 8], 0..16
    y = torch.tensor(bunch.target, dtype=torch.long)
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    train_idx, val_idx, test_idx = stratified_split(y.numpy(), SPLIT, seed=split_seed)
    mean, std = x[train_idx].mean().item(), x[train_idx].std().item()
    x = (x - mean) / std

    def part(idx) -> TensorDataset:
        idx = torch.as_tensor(idx)
        return TensorDataset(x[idx].contiguous(), y[idx].contiguous())

    return Task(
        name="digits" if size == 8 else f"digits{size}",
        num_classes=10,
        input_shape=(1, size, size),
        train=part(train_idx),
        val=part(val_idx),
        test=part(test_idx),
        classes=tuple(range(10)),
        meta={"mean": [mean], "std": [std], "split_seed": split_seed},
    )
