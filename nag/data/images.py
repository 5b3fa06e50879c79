"""Image tasks from the user's data: the one path from decoded images to a Task.

``image_folder``, ``torchvision`` and ``arrays`` decode their images to a uint8 (or float)
tensor ``[N, C, H, W]`` per part, then share everything after that here:

- ``pil_to_array``: one PIL image (any mode) -> uint8 [H, W, C];
- ``convert_channels`` (``channels`` 1 or 3) and ``resize_images`` (an int: shorter side then
  centre crop; [H, W]: exactly), on stacks [N, C, H, W]; ``stack_images`` applies both to
  decoded images of one part and refuses mixed channel counts or sizes it cannot reconcile;
- ``complete_splits``: the train/val/test parts from whatever the data has (all three, train +
  test, or a single pool), stratified by ``split_seed``, refusing classes too small to split;
- ``images_task``: per-channel normalisation (``dataset`` statistics, ``imagenet``, or
  ``none``), optional augmentation, the Task.

Images stay uint8 in memory and are normalised per item (``ImageTensorDataset``).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from nag.data.tasks import Task, stratified_split
from nag.errors import BadDataError, ConfigError, MissingDataError

SPLITS = ("train", "val", "test")
NORMALISE = ("dataset", "imagenet", "none")
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
_LUMA = torch.tensor([0.299, 0.587, 0.114])


class ImageTensorDataset(Dataset):
    """Images [N, C, H, W] (uint8, or float in [0, 1]) + labels [N], normalised per item:
    x [C, H, W] float = (image / 255 - mean) / std.

    ``augment=True`` adds the standard CIFAR augmentation: random crop with 4-pixel zero
    padding and a horizontal flip (drawn from torch's global RNG, so seeded runs repeat).
    """

    def __init__(self, images: Tensor, targets: Tensor, mean: Tensor, std: Tensor, augment: bool = False) -> None:
        self.images = images
        self.targets = torch.as_tensor(targets).long()
        self.mean = torch.as_tensor(mean).view(-1, 1, 1).float()
        self.std = torch.as_tensor(std).view(-1, 1, 1).float()
        self.augment = augment
        self.divisor = 255.0 if images.dtype == torch.uint8 else 1.0

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
        return (img.float() / self.divisor - self.mean) / self.std, self.targets[i]

    def gather(self, index: Tensor) -> Tensor:
        """Images ``index`` normalised, without augmentation: [n, C, H, W]."""
        return (self.images[index].float() / self.divisor - self.mean) / self.std

    def take(self, index: Tensor, targets: Tensor) -> ImageTensorDataset:
        """Items ``index`` with new ``targets`` (class subsets), sharing normalisation and augmentation."""
        return ImageTensorDataset(self.images[index], targets, self.mean, self.std, self.augment)


# ----- one image ---------------------------------------------------------------------------
def pil_to_array(img: Any, where: str) -> np.ndarray:
    """A PIL image as uint8 [H, W, C] (C = 1, 2, 3 or 4): palettes expanded, 16-bit and float
    greys rescaled to 0..255, CMYK/YCbCr/... converted to RGB."""
    mode = img.mode
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode == "1":
        img = img.convert("L")
    elif mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        return np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)[..., None]
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        img = img.convert("RGB")
    arr = np.asarray(img)
    if arr.dtype != np.uint8:
        raise BadDataError(f"{where}: image of mode {mode!r} decodes to {arr.dtype}, expected 8-bit pixels")
    return arr[..., None] if arr.ndim == 2 else arr


def convert_channels(images: Tensor, channels: int | None, where: str) -> Tensor:
    """[N, C, H, W] -> [N, channels, H, W]: grey <-> RGB (luma), alpha dropped. None: unchanged."""
    c = images.shape[1]
    if channels is None or c == channels:
        return images
    if channels not in (1, 3):
        raise ConfigError(f"{where}: channels must be 1, 3 or null (keep), got {channels}")
    if c in (2, 4):  # drop alpha
        images, c = images[:, : c - 1], c - 1
    if c == channels:
        return images
    if channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    grey = (images.float() * _LUMA.view(1, 3, 1, 1)).sum(1, keepdim=True)
    return grey.round().clamp(0, 255).to(torch.uint8) if images.dtype == torch.uint8 else grey


def check_size(size: Any, where: str) -> tuple[int, ...] | None:
    """``size`` as None, (s,) (shorter side + centre crop) or (h, w) (exact)."""
    if size is None:
        return None
    sizes = (size,) if isinstance(size, (int, np.integer)) and not isinstance(size, bool) else tuple(size)
    if len(sizes) not in (1, 2) or not all(isinstance(s, (int, np.integer)) and s >= 1 for s in sizes):
        raise ConfigError(f"{where}: size must be an int (shorter side, then centre crop) or [H, W], got {size!r}")
    return tuple(int(s) for s in sizes)


def resize_images(images: Tensor, size: tuple[int, ...] | None) -> Tensor:
    """[N, C, H, W] -> [N, C, h, w] (bilinear, anti-aliased when shrinking); the dtype is kept.

    ``size`` (s,): shorter side to s, then the central s x s; (h, w): exactly h x w.
    """
    if size is None:
        return images
    h, w = images.shape[-2:]
    if len(size) == 1:
        s = size[0]
        scale = s / min(h, w)
        target = (max(s, round(h * scale)), max(s, round(w * scale)))
    else:
        target = size
    out = images
    if target != (h, w):
        x = images.float()
        shrink = target[0] < h or target[1] < w
        x = F.interpolate(x, size=target, mode="bilinear", antialias=shrink, align_corners=False)
        out = x.round().clamp(0, 255).to(torch.uint8) if images.dtype == torch.uint8 else x
    if len(size) == 1:
        top, left = (out.shape[-2] - size[0]) // 2, (out.shape[-1] - size[0]) // 2
        out = out[..., top : top + size[0], left : left + size[0]]
    return out.contiguous()


def stack_images(arrays: Sequence[np.ndarray], names: Sequence[str], channels: int | None, size: tuple[int, ...] | None,
                 where: str) -> Tensor:
    """Decoded images uint8 [H, W, C] of one part -> [N, C', H', W'], refusing mixed channel
    counts (unless ``channels`` converts) and mixed sizes (unless ``size`` resizes)."""
    if channels is None:
        counts: dict[int, str] = {}
        for arr, name in zip(arrays, names):
            counts.setdefault(arr.shape[-1], name)
        if len(counts) > 1:
            seen = ", ".join(f"{c} in {n}" for c, n in sorted(counts.items()))
            raise BadDataError(
                f"{where}: images have different channel counts ({seen}). Set task.channels=1 (grey) or "
                f"task.channels=3 (RGB) to convert them all."
            )
    out = []
    for arr in arrays:
        img = torch.from_numpy(np.array(arr)).permute(2, 0, 1).unsqueeze(0)
        out.append(resize_images(convert_channels(img, channels, where), size))
    shapes: dict[tuple, str] = {}
    for img, name in zip(out, names):
        shapes.setdefault(tuple(img.shape[-2:]), name)
    if len(shapes) > 1:
        seen = ", ".join(f"{h}x{w} in {n}" for (h, w), n in list(shapes.items())[:3])
        raise BadDataError(f"{where}: images have different sizes ({seen}, ...). Set task.size=S (e.g. 32) to resize them all.")
    return torch.cat(out)


# ----- splits --------------------------------------------------------------------------------
def complete_splits(
    parts: Mapping[str, tuple[Tensor, Tensor]],
    class_names: Sequence[str],
    split: Sequence[float],
    val_size: float | int,
    split_seed: int,
    where: str,
) -> dict[str, tuple[Tensor, Tensor]]:
    """train/val/test from the parts the data has: all three as given; train + one of val/test:
    the missing one carved from train (``val_size``: a fraction or a count); train only: a
    stratified ``split`` of it (fractions train/val/test). Every class must have an image in
    every part; a class too small for that is a BadDataError that names it."""
    if "train" not in parts:
        raise ConfigError(f"{where}: no training part (got {sorted(parts)})")
    parts = dict(parts)
    x, y = parts["train"]
    missing = [s for s in SPLITS if s not in parts]
    if len(missing) == 2:
        fractions = [float(f) for f in split]
        if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1) > 1e-6:
            raise ConfigError(f"{where}: split must be three fractions > 0 (train, val, test) adding up to 1, got {list(split)}")
        idx = _split_or_explain(y, fractions, split_seed, class_names, where, "train/val/test split")
        parts = {s: (x[i], y[i]) for s, i in zip(SPLITS, idx)}
    elif len(missing) == 1:
        n = len(y)
        carve = int(val_size) if float(val_size) >= 1 else round(float(val_size) * n)
        if not 0 < carve < n or (float(val_size) >= 1 and float(val_size) != int(val_size)):
            raise ConfigError(f"{where}: val_size must be a fraction in (0, 1) or a count in 1..{n - 1} of the {n} training images, got {val_size}")
        keep, cut = _split_or_explain(y, [n - carve, carve], split_seed, class_names, where, f"{missing[0]} part carved from train")
        parts["train"], parts[missing[0]] = (x[keep], y[keep]), (x[cut], y[cut])
    for s in SPLITS:
        present = set(torch.unique(parts[s][1]).tolist())
        absent = [class_names[k] for k in range(len(class_names)) if k not in present]
        if absent:
            raise BadDataError(f"{where}: the {s} part has no image of class(es) {absent[:5]}; every class needs images in train, val and test")
    return {s: parts[s] for s in SPLITS}


def _split_or_explain(y: Tensor, sizes: list, seed: int, class_names: Sequence[str], where: str, what: str) -> list[np.ndarray]:
    labels = y.numpy()
    idx = stratified_split(labels, sizes, seed=seed)
    total = sum(sizes)
    fractions = [s / total for s in sizes]
    need = math.ceil(1 / min(fractions) - 1e-9)
    for k, name in enumerate(class_names):
        count = int((labels == k).sum())
        if any(not (labels[part] == k).any() for part in idx):
            raise BadDataError(
                f"{where}: class {name!r} has {count} image(s), too few for the {what} "
                f"(fractions {[round(f, 3) for f in fractions]}): give it at least {need} images, "
                f"or change task.split / task.val_size."
            )
    return idx


# ----- the task --------------------------------------------------------------------------------
def images_task(
    name: str,
    parts: Mapping[str, tuple[Tensor, Tensor]],
    class_names: Sequence[str],
    normalize: str = "dataset",
    augment: bool = False,
    meta: Mapping[str, Any] | None = None,
    where: str = "",
) -> Task:
    """The Task of complete ``parts`` ({split: (images [N, C, H, W] uint8 or float in [0, 1], labels [N])})."""
    if normalize not in NORMALISE:
        raise ConfigError(f"{where or name}: normalize must be one of {list(NORMALISE)}, got {normalize!r}")
    train_x = parts["train"][0]
    c = train_x.shape[1]
    if normalize == "dataset":
        mean, std = channel_stats(train_x)
    elif normalize == "imagenet":
        if c != 3:
            raise ConfigError(f"{where or name}: normalize=imagenet needs 3-channel images, these have {c}; use task.channels=3 or normalize=dataset")
        mean, std = torch.tensor(IMAGENET[0]), torch.tensor(IMAGENET[1])
    else:
        mean, std = torch.zeros(c), torch.ones(c)
    datasets = {
        s: ImageTensorDataset(x, y, mean, std, augment=augment and s == "train") for s, (x, y) in parts.items()
    }
    return Task(
        name=name,
        num_classes=len(class_names),
        input_shape=tuple(train_x.shape[1:]),
        classes=tuple(range(len(class_names))),
        meta={"mean": mean.tolist(), "std": std.tolist(), "class_names": list(class_names), **dict(meta or {})},
        **datasets,
    )


def channel_stats(images: Tensor, chunk: int = 4096) -> tuple[Tensor, Tensor]:
    """Per-channel mean and std of images [N, C, H, W] scaled to [0, 1], in chunks (no big float copy)."""
    scale = 1 / 255.0 if images.dtype == torch.uint8 else 1.0
    c = images.shape[1]
    total, total_sq, count = torch.zeros(c, dtype=torch.float64), torch.zeros(c, dtype=torch.float64), 0
    for i in range(0, len(images), chunk):
        x = images[i : i + chunk].double() * scale
        total += x.sum(dim=(0, 2, 3))
        total_sq += (x * x).sum(dim=(0, 2, 3))
        count += x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(0).sqrt().clamp_min(1e-6)
    return mean.float(), std.float()


def label_ids(labels: Sequence[Any] | np.ndarray, where: str) -> tuple[np.ndarray, list[str], list[Any]]:
    """Arbitrary class labels -> (ids 0..K-1 [N], class names, original labels sorted)."""
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise BadDataError(f"{where}: labels must be one per image (1-D), got shape {arr.shape}")
    if arr.dtype.kind == "f":
        if not np.all(arr == np.round(arr)):
            raise BadDataError(f"{where}: labels must be integers or strings, got non-integer floats")
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iuUSb":
        raise BadDataError(f"{where}: labels must be integers or strings, got dtype {arr.dtype}")
    originals, ids = np.unique(arr, return_inverse=True)
    return ids.astype(np.int64), [str(o) for o in originals.tolist()], originals.tolist()


def existing_root(root: str | Path | None, where: str) -> Path:
    """``root`` as an existing path, else a MissingDataError naming it."""
    if root is None:
        raise ConfigError(f"{where}: give the data's folder with task.root=DIR")
    path = Path(root).expanduser()
    if not path.exists():
        raise MissingDataError(f"{where}: task.root={str(path)!r} does not exist; point task.root at the folder that holds the data")
    return path
