"""The "torchvision" task: any ``torchvision.datasets`` class already on disk (never downloaded
unless ``download=true``); "cifar10" and "cifar100" are two presets of it.

The dataset's own parts are used: ``train=True/False`` classes (MNIST, FashionMNIST, KMNIST,
CIFAR10/100, ...) give train and test, and val is carved from train (``val_size``);
``split=`` classes (SVHN, FGVCAircraft, OxfordIIITPet, Flowers102, DTD, ...) give whichever of
train / trainval, val / valid and test they have; a class with neither is one pool, split by
``split``. Images go to memory as uint8 ``[N, C, H, W]`` (read straight from the dataset's
arrays when it has them, else item by item through PIL) and are normalised per item.
"""
from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from nag.data.images import (
    ImageTensorDataset,
    check_size,
    complete_splits,
    convert_channels,
    images_task,
    pil_to_array,
    resize_images,
    stack_images,
)
from nag.data.tasks import TASKS, Task, param_name
from nag.errors import ConfigError, MissingDataError, UnknownNameError

__all__ = ["ImageTensorDataset", "default_root", "torchvision_task", "cifar10", "cifar100"]

# candidate values of a dataset's ``split=`` argument, per part, in order of preference
SPLIT_NAMES = {"train": ("train", "trainval"), "val": ("val", "valid"), "test": ("test",)}


def default_root() -> Path:
    """Where datasets live unless a task gets ``root``: $NAG_DATA_ROOT or ~/.cache/nag/data."""
    return Path(os.environ.get("NAG_DATA_ROOT") or Path.home() / ".cache" / "nag" / "data").expanduser()


def dataset_class(name: str) -> type:
    """``torchvision.datasets.<name>``; an unknown name lists the image-classification ones."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, str(name), None)
    if not inspect.isclass(cls) or not issubclass(cls, tvd.VisionDataset):
        known = sorted(n for n, c in vars(tvd).items() if inspect.isclass(c) and issubclass(c, tvd.VisionDataset) and n[0].isupper())
        raise UnknownNameError(f"unknown torchvision dataset {name!r}; torchvision.datasets has: {', '.join(known)}")
    return cls


def _open(cls: type, root: Path, download: bool, extra: dict, **part: Any) -> Any:
    params = inspect.signature(cls).parameters
    kwargs = {**extra, **part}
    if "download" in params:
        kwargs["download"] = download
    elif download:
        raise ConfigError(f"torchvision.datasets.{cls.__name__} cannot download; put its files under {root} and set task.download=false")
    folder = getattr(cls, "base_folder", None) or cls.__name__
    try:
        return cls(str(root), **kwargs)
    except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted ..."
        raise MissingDataError(
            f"torchvision dataset {cls.__name__}: no intact copy under {root} (looked for {folder!r}: {exc}). "
            f"Point the task at the folder that holds it with task.root=... (or $NAG_DATA_ROOT), "
            f"or let torchvision fetch it with task.download=true."
        ) from exc


def _parts(cls: type, root: Path, download: bool, extra: dict) -> dict[str, Any]:
    """{part: dataset object} for the parts ``cls`` has."""
    params = inspect.signature(cls).parameters
    if "train" in params:
        return {"train": _open(cls, root, download, extra, train=True), "test": _open(cls, root, download, extra, train=False)}
    if "split" in params:
        out: dict[str, Any] = {}
        for part, names in SPLIT_NAMES.items():
            for split_name in names:
                try:
                    out[part] = _open(cls, root, download, extra, split=split_name)
                    break
                except ValueError:  # verify_str_arg: not a split of this dataset
                    continue
        if "train" not in out:
            raise ConfigError(f"torchvision.datasets.{cls.__name__}: none of the splits {SPLIT_NAMES['train']} exists; "
                              f"pass the dataset's own arguments with task.kwargs")
        return out
    return {"train": _open(cls, root, download, extra)}


def _array_images(ds: Any) -> Tensor | None:
    """The dataset's images as uint8 [N, C, H, W] from its ``data`` array, if it has one whose
    layout reproduces item 0 exactly; else None (read item by item)."""
    data = getattr(ds, "data", None)
    if data is None or len(data) != len(ds) or len(ds) == 0:
        return None
    arr = torch.as_tensor(np.asarray(data))
    if arr.dtype != torch.uint8 or arr.ndim not in (3, 4):
        return None
    if arr.ndim == 3:
        arr = arr.unsqueeze(1)
    elif arr.shape[-1] in (1, 3, 4) and arr.shape[1] not in (1, 3, 4):
        arr = arr.permute(0, 3, 1, 2)
    first = torch.from_numpy(np.array(pil_to_array(ds[0][0], "item 0"))).permute(2, 0, 1)
    return arr.contiguous() if torch.equal(arr[0], first) else None


def _labels(ds: Any) -> Tensor:
    for attr in ("targets", "labels", "_labels", "_targets"):
        values = getattr(ds, attr, None)
        if values is not None and len(values) == len(ds) and len(ds) and int(values[0]) == int(ds[0][1]):
            return torch.as_tensor(np.asarray(values), dtype=torch.long)
    return torch.tensor([int(ds[i][1]) for i in range(len(ds))])


def _load_part(ds: Any, channels: int | None, size: tuple[int, ...] | None, where: str) -> tuple[Tensor, Tensor]:
    images = _array_images(ds)
    if images is not None:
        images = resize_images(convert_channels(images, channels, where), size)
        return images, _labels(ds)
    arrays, labels = [], []
    for i in tqdm(range(len(ds)), desc=where, unit="img", disable=None, leave=False):
        img, label = ds[i]
        arrays.append(pil_to_array(img, f"{where} item {i}"))
        labels.append(int(label))
    return stack_images(arrays, [f"item {i}" for i in range(len(ds))], channels, size, where), torch.tensor(labels)


@TASKS.register("torchvision")
def torchvision_task(
    dataset: str | None = None,
    root: str | os.PathLike | None = None,
    download: bool = False,
    size: int | list[int] | None = None,
    channels: int | None = None,
    normalize: str = "dataset",
    split: list[float] = (0.6, 0.2, 0.2),
    val_size: float | int = 0.1,
    augment: bool = False,
    split_seed: int = 0,
    kwargs: dict | None = None,
    task_name: str | None = None,
) -> Task:
    """``torchvision.datasets.<dataset>`` from ``root`` (default $NAG_DATA_ROOT or
    ~/.cache/nag/data); see the module docstring for the parts. ``kwargs`` go to the dataset
    class (e.g. ``{split: balanced}`` for EMNIST); ``size`` / ``channels`` / ``normalize`` /
    ``augment`` as for ``image_folder``. ``task_name``: the Task's name (default the dataset's)."""
    if not dataset:
        raise ConfigError("task 'torchvision' needs task.dataset=<a torchvision.datasets class, e.g. MNIST, CIFAR10, SVHN>")
    cls = dataset_class(dataset)
    root_path = Path(root).expanduser() if root is not None else default_root()
    if not root_path.exists() and not download:
        raise MissingDataError(
            f"torchvision dataset {cls.__name__}: task.root={str(root_path)!r} does not exist. Point task.root=... "
            f"(or $NAG_DATA_ROOT) at the folder that holds the dataset, or let torchvision fetch it with task.download=true."
        )
    sizes = check_size(size, f"torchvision {cls.__name__}")
    raw = _parts(cls, root_path, bool(download), dict(kwargs or {}))
    parts = {p: _load_part(ds, channels, sizes, f"{cls.__name__} {p}") for p, ds in raw.items()}
    first = raw["train"]
    n_classes = max(int(parts[p][1].max()) for p in parts) + 1
    class_names = [str(c) for c in getattr(first, "classes", [])] or [str(k) for k in range(n_classes)]
    if len(class_names) < n_classes:
        class_names = [str(k) for k in range(n_classes)]
    parts = complete_splits(parts, class_names, split, val_size, split_seed, f"torchvision {cls.__name__} under {root_path}")
    name = task_name or param_name(
        cls.__name__.lower(), torchvision_task, size=size, channels=channels, normalize=normalize, split=split,
        val_size=val_size, augment=augment, split_seed=split_seed, kwargs=kwargs,
    )
    return images_task(name, parts, class_names, normalize, augment,
                       meta={"root": str(root_path), "dataset": cls.__name__, "split_seed": split_seed},
                       where=f"torchvision {cls.__name__}")


@TASKS.register("cifar10")
def cifar10(root: str | os.PathLike | None = None, download: bool = False, val_size: int = 5000, augment: bool = False, split_seed: int = 0) -> Task:
    """CIFAR-10 through ``torchvision``: a stratified ``val_size`` split carved from train with
    ``split_seed``; the official test split; per-channel train statistics."""
    return torchvision_task("CIFAR10", root, download, val_size=val_size, augment=augment, split_seed=split_seed, task_name="cifar10")


@TASKS.register("cifar100")
def cifar100(root: str | os.PathLike | None = None, download: bool = False, val_size: int = 5000, augment: bool = False, split_seed: int = 0) -> Task:
    """CIFAR-100, as ``cifar10``."""
    return torchvision_task("CIFAR100", root, download, val_size=val_size, augment=augment, split_seed=split_seed, task_name="cifar100")
