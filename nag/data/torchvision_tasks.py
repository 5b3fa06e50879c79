"""CIFAR-10 / CIFAR-100 tasks read from a local torchvision folder (no download unless asked).

The images are held in memory as uint8 [N, 3, 32, 32] (150 MB for CIFAR's train split) and
normalised per item, which is much faster than torchvision's PIL transforms.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from nag.data.tasks import TASKS, Task, stratified_split
from nag.errors import ConfigError, MissingDataError


def default_root() -> Path:
    """Where datasets live unless a task gets ``root``: $NAG_DATA_ROOT or ~/.cache/nag/data."""
    return Path(os.environ.get("NAG_DATA_ROOT") or Path.home() / ".cache" / "nag" / "data").expanduser()


class ImageTensorDataset(Dataset):
    """uint8 images [N, C, H, W] + labels [N], normalised per item: x [C, H, W] float.

    ``augment=True`` adds the standard CIFAR augmentation: random crop with 4-pixel zero
    padding and a horizontal flip (drawn from torch's global RNG, so seeded runs repeat).
    """

    def __init__(self, images: Tensor, targets: Tensor, mean: Tensor, std: Tensor, augment: bool = False) -> None:
        self.images = images
        self.targets = targets.long()
        self.mean = mean.view(-1, 1, 1).float()
        self.std = std.view(-1, 1, 1).float()
        self.augment = augment

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        img = self.images[i]
        if self.augment:  # zero-pad in pixel space, as torchvision's RandomCrop(32, padding=4)
            h, w = img.shape[-2:]
            top, left = torch.randint(0, 9, (2,)).tolist()
            img = F.pad(img, (4, 4, 4, 4))[:, top : top + h, left : left + w]
            if torch.rand(()) < 0.5:
                img = img.flip(-1)
        return (img.float() / 255.0 - self.mean) / self.std, self.targets[i]


@dataclass(frozen=True)
class _Spec:
    cls_name: str
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


_SPECS = {
    "cifar10": _Spec("CIFAR10", 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": _Spec("CIFAR100", 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def _load(name: str, root: Path, train: bool, download: bool):
    import torchvision.datasets as tvd

    cls = getattr(tvd, _SPECS[name].cls_name)
    try:
        return cls(str(root), train=train, download=download)
    except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted"
        raise MissingDataError(
            f"{name}: no intact dataset under {root / cls.base_folder} ({exc}). Point the task at the "
            f"folder that holds {cls.base_folder!r} with task.root=... (or $NAG_DATA_ROOT), "
            f"or let torchvision fetch it with task.download=true."
        ) from exc


def _cifar(
    name: str,
    root: str | os.PathLike | None,
    download: bool,
    val_size: int,
    augment: bool,
    split_seed: int,
) -> Task:
    spec = _SPECS[name]
    root_path = Path(root).expanduser() if root is not None else default_root()
    train_raw = _load(name, root_path, True, download)
    test_raw = _load(name, root_path, False, download)
    n = len(train_raw.targets)
    if not 0 < int(val_size) < n:
        raise ConfigError(f"{name}: val_size must be in 1..{n - 1} (carved from train), got {val_size}")

    def tensors(raw) -> tuple[Tensor, Tensor]:
        images = torch.from_numpy(np.ascontiguousarray(raw.data.transpose(0, 3, 1, 2)))
        return images, torch.as_tensor(raw.targets, dtype=torch.long)

    images, targets = tensors(train_raw)
    train_idx, val_idx = stratified_split(targets.numpy(), [n - int(val_size), int(val_size)], seed=split_seed)
    mean, std = torch.tensor(spec.mean), torch.tensor(spec.std)
    tr, va = torch.as_tensor(train_idx), torch.as_tensor(val_idx)
    test_images, test_targets = tensors(test_raw)
    return Task(
        name=name,
        num_classes=spec.num_classes,
        input_shape=(3, 32, 32),
        train=ImageTensorDataset(images[tr], targets[tr], mean, std, augment=augment),
        val=ImageTensorDataset(images[va], targets[va], mean, std),
        test=ImageTensorDataset(test_images, test_targets, mean, std),
        classes=tuple(range(spec.num_classes)),
        meta={"mean": list(spec.mean), "std": list(spec.std), "root": str(root_path), "split_seed": split_seed},
    )


@TASKS.register("cifar10")
def cifar10(
    root: str | os.PathLike | None = None,
    download: bool = False,
    val_size: int = 5000,
    augment: bool = False,
    split_seed: int = 0,
) -> Task:
    """CIFAR-10 from ``root`` (default $NAG_DATA_ROOT or ~/.cache/nag/data); a stratified
    ``val_size`` split carved from train with ``split_seed``; the official test split."""
    return _cifar("cifar10", root, download, val_size, augment, split_seed)


@TASKS.register("cifar100")
def cifar100(
    root: str | os.PathLike | None = None,
    download: bool = False,
    val_size: int = 5000,
    augment: bool = False,
    split_seed: int = 0,
) -> Task:
    """CIFAR-100, as ``cifar10``."""
    return _cifar("cifar100", root, download, val_size, augment, split_seed)
