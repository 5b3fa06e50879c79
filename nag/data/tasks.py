"""The Task value, the TASKS registry and the dataset helpers every task builder shares.

A task is a classification problem with fixed train/val/test splits. Items of every split are
``(x: [C, H, W] float (normalised), y: long in 0..K-1)``. ``classes`` keeps the original class
id of each label, so class-subset tasks (``task.subset([3, 7])``) compose and stay traceable.

Third-party tasks register a builder ``fn(**kwargs) -> Task`` under the entry-point group
``nag.tasks``::

    [project.entry-points."nag.tasks"]
    my_task = "my_pkg.tasks:build_my_task"
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
import inspect
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset, TensorDataset

from nag.errors import ConfigError
from nag.registry import Registry

TASKS: Registry["Task"] = Registry("task", group="nag.tasks")


@dataclass(eq=False)
class Task:
    """A classification task with fixed splits. Items: ``(x [C, H, W] float, y long)``."""

    name: str
    num_classes: int
    input_shape: tuple[int, int, int]
    train: Dataset
    val: Dataset
    test: Dataset
    classes: tuple[int, ...]
    meta: dict[str, Any] = field(default_factory=dict)  # e.g. normalisation stats, source path

    def __post_init__(self) -> None:
        self.input_shape = tuple(int(s) for s in self.input_shape)  # type: ignore[assignment]
        self.classes = tuple(int(c) for c in self.classes)
        if len(self.input_shape) != 3:
            raise ConfigError(f"task {self.name!r}: input_shape must be (C, H, W), got {self.input_shape}")
        if len(self.classes) != self.num_classes or len(set(self.classes)) != self.num_classes:
            raise ConfigError(
                f"task {self.name!r}: classes {self.classes} must list {self.num_classes} distinct "
                f"original class ids, one per label"
            )

    # ----- per-class sample sets (dataset encoders) -------------------------------------
    def class_sets(self, n_per_class: int, seed: int = 0) -> Tensor:
        """``n_per_class`` training images of every class. Returns [K, n, C, H, W].

        Drawn without replacement; with replacement for a class that has fewer than n images.
        """
        if n_per_class < 1:
            raise ConfigError(f"class_sets: n_per_class must be >= 1, got {n_per_class}")
        labels = dataset_labels(self.train)
        rng = np.random.default_rng(seed)
        out = torch.empty(self.num_classes, n_per_class, *self.input_shape)
        for k in range(self.num_classes):
            pool = np.flatnonzero(labels.numpy() == k)
            if pool.size == 0:
                raise ConfigError(
                    f"task {self.name!r} has no training image of label {k} (class {self.classes[k]})"
                )
            pick = rng.choice(pool, size=n_per_class, replace=pool.size < n_per_class)
            out[k] = gather_images(self.train, pick)
        return out

    # ----- class subsets -----------------------------------------------------------------
    def subset(self, classes: Iterable[int], name: str | None = None) -> Task:
        """The task restricted to ``classes`` (original class ids, in the new label order).

        Labels are renumbered 0..k-1 in the order given; ``classes`` of the result keeps the
        original ids, so a subset of a subset still speaks in the base dataset's ids.
        """
        wanted = [int(c) for c in classes]
        unknown = [c for c in wanted if c not in self.classes]
        if not wanted or unknown or len(set(wanted)) != len(wanted):
            raise ConfigError(
                f"task {self.name!r}: cannot take the class subset {wanted}: "
                + (f"unknown class ids {unknown}; " if unknown else "")
                + f"give one or more distinct ids among {list(self.classes)}"
            )
        old_label = [self.classes.index(c) for c in wanted]  # new label i <- old label old_label[i]
        mapping = torch.full((self.num_classes,), -1, dtype=torch.long)
        mapping[old_label] = torch.arange(len(wanted))
        sub_name = name or f"{self.name}[{','.join(map(str, wanted))}]"
        return Task(
            name=sub_name,
            num_classes=len(wanted),
            input_shape=self.input_shape,
            train=relabel_subset(self.train, mapping),
            val=relabel_subset(self.val, mapping),
            test=relabel_subset(self.test, mapping),
            classes=tuple(wanted),
            meta={**self.meta, "parent": self.name},
        )

    def describe(self) -> dict[str, Any]:
        """JSON-able summary for configs and results."""
        return {
            "name": self.name,
            "num_classes": self.num_classes,
            "input_shape": list(self.input_shape),
            "classes": list(self.classes),
            "sizes": {s: len(getattr(self, s)) for s in ("train", "val", "test")},  # type: ignore[arg-type]
        }

    def __repr__(self) -> str:
        sizes = "/".join(str(len(getattr(self, s))) for s in ("train", "val", "test"))  # type: ignore[arg-type]
        return f"Task({self.name!r}, K={self.num_classes}, input={self.input_shape}, train/val/test={sizes})"


# ----- dataset helpers -------------------------------------------------------------------
class RelabelledSubset(Dataset):
    """Items ``indices`` of ``dataset`` with labels mapped through ``mapping`` [K_old] -> new."""

    def __init__(self, dataset: Dataset, indices: Sequence[int], mapping: Tensor) -> None:
        self.dataset = dataset
        self.indices = torch.as_tensor(indices, dtype=torch.long)
        self.mapping = mapping
        self.targets = mapping[dataset_labels(dataset)[self.indices]]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        x, _ = self.dataset[int(self.indices[i])]
        return x, self.targets[i]


def dataset_labels(dataset: Dataset) -> Tensor:
    """Labels of every item of ``dataset``, [len] long (fast for nag's own datasets)."""
    if isinstance(dataset, TensorDataset):
        return dataset.tensors[1].long()
    if hasattr(dataset, "targets"):
        return torch.as_tensor(dataset.targets, dtype=torch.long)
    if isinstance(dataset, Subset):
        return dataset_labels(dataset.dataset)[torch.as_tensor(dataset.indices, dtype=torch.long)]
    return torch.tensor([int(dataset[i][1]) for i in range(len(dataset))], dtype=torch.long)  # type: ignore[arg-type]


def gather_images(dataset: Dataset, indices: Sequence[int] | np.ndarray) -> Tensor:
    """Images ``indices`` of ``dataset`` stacked: [n, C, H, W].

    Fast for TensorDatasets and for datasets with a ``gather(indices) -> [n, C, H, W]`` method
    (e.g. ``nag.data.images.ImageTensorDataset``).
    """
    index = torch.as_tensor(np.asarray(indices), dtype=torch.long)
    if isinstance(dataset, TensorDataset):
        return dataset.tensors[0][index]
    if hasattr(dataset, "gather"):
        return dataset.gather(index)
    return torch.stack([dataset[int(i)][0] for i in index.tolist()])


def relabel_subset(dataset: Dataset, mapping: Tensor) -> Dataset:
    """Keep the items whose label maps to >= 0 and relabel them. TensorDatasets stay tensors;
    a dataset with ``take(indices, targets) -> Dataset`` makes its own subset."""
    new = mapping[dataset_labels(dataset)]
    keep = (new >= 0).nonzero(as_tuple=True)[0]
    if isinstance(dataset, TensorDataset):
        return TensorDataset(dataset.tensors[0][keep], new[keep])
    if hasattr(dataset, "take"):
        return dataset.take(keep, new[keep])
    return RelabelledSubset(dataset, keep.tolist(), mapping)


def param_name(base: str, builder: Callable[..., Any], **params: Any) -> str:
    """A task name that tells builds apart: ``base`` plus the ``params`` that differ from the
    ``builder``'s defaults, e.g. ``shapes(size=16)``. (Feature caches key on task names.)"""
    defaults = {k: p.default for k, p in inspect.signature(builder).parameters.items()}
    changed = [f"{k}={_short(v)}" for k, v in params.items() if _short(v) != _short(defaults.get(k, inspect.Parameter.empty))]
    return f"{base}({','.join(changed)})" if changed else base


def _short(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "x".join(_short(v) for v in value)
    return str(value)


def stratified_split(
    labels: np.ndarray | Tensor, sizes: Sequence[float | int], seed: int = 0
) -> list[np.ndarray]:
    """Split indices 0..len-1 into parts of the given ``sizes`` (fractions adding up to 1.0, or
    counts adding up to len), each part keeping the class proportions as closely as counts allow.
    Every index lands in exactly one part; each part's indices are sorted.
    """
    labels = np.asarray(labels)
    n = len(labels)
    if all(isinstance(s, float) for s in sizes) and abs(sum(sizes) - 1.0) < 1e-6:
        counts = [int(s * n) for s in sizes[:-1]]
        counts.append(n - sum(counts))
    elif all(isinstance(s, (int, np.integer)) for s in sizes):
        counts = [int(s) for s in sizes]
    else:
        counts = []
    if len(counts) < 2 or sum(counts) != n or min(counts) <= 0:
        raise ConfigError(
            f"split sizes {list(sizes)} must be two or more positive fractions adding up to 1.0 "
            f"or positive counts adding up to {n}"
        )
    # Systematic stratified order: shuffle each class, spread its members evenly over [0, 1),
    # sort all items by that position, and cut the order into consecutive parts.
    rng = np.random.default_rng(seed)
    key = np.empty(n)
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        key[members] = (np.arange(len(members)) + rng.random(len(members))) / len(members)
    order = np.argsort(key, kind="stable")
    bounds = np.cumsum(counts)[:-1]
    return [np.sort(part) for part in np.split(order, bounds)]


# ----- registry front door ------------------------------------------------------------------
def _register_builtins() -> None:
    # Importing the modules registers their tasks (digits, cifar10, shapes, image_folder, ...).
    from nag.data import arrays, digits, image_folder, photo_patches, procedural, suites, torchvision_tasks  # noqa: F401


def get_task(name: str, classes: Iterable[int] | None = None, **kwargs: Any) -> Task:
    """Build the task registered as ``name``; ``classes`` restricts it to those class ids.

    ``kwargs`` go to the task's builder (e.g. ``root``, ``download`` for CIFAR; ``size`` for
    digits); an unknown keyword is a ConfigError that lists the accepted ones.
    """
    _register_builtins()
    kwargs = {k: _plain(v) for k, v in kwargs.items()}
    task = TASKS.build(name, **kwargs)  # checks kwargs against the builder's signature
    if classes is not None:
        task = task.subset([int(c) for c in _plain(classes)])
    return task


def list_tasks(pattern: str = "*") -> list[str]:
    """Names of all registered tasks matching an fnmatch ``pattern``."""
    _register_builtins()
    return TASKS.names(pattern)


def _plain(value: Any) -> Any:
    """DictConfig/ListConfig (from Hydra) -> plain containers."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf
    except ImportError:  # pragma: no cover - omegaconf ships with hydra
        return value
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value
