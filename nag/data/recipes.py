"""Task recipes: a JSON-able, hashable description of a task derived from a registered one.

A ``TaskSpec`` names a source task (``get_task(source, **source_kwargs)``) and what to do
to it, in this order:

1. ``classes``: keep these original class ids (in this label order);
2. ``train_per_class``: keep this many training images per class (a seeded draw);
3. ``size``: resize every image to ``size`` x ``size`` (bilinear, anti-aliased when shrinking);
4. ``corruptions``: apply each named corruption (``nag.data.corruptions``) to every split;
5. ``label_noise``: replace this fraction of the training labels by a different random class
   (val and test keep their true labels: they measure what was learnt);
6. re-standardise every channel with the new train split's mean and std.

Every random draw comes from ``seed`` and the step, so a recipe builds the same tensors on any
machine, in any order. A recipe with only ``source`` and ``classes`` is exactly
``get_task(source, classes=...)`` (the form of the shipped digits meta-database).

``family`` and ``held_out`` describe the recipe's place in a suite (``nag.data.suites``); they
are not part of its identity (``id``).
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import lru_cache
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import TensorDataset

from nag.data.tasks import Task, dataset_labels, gather_images
from nag.errors import ConfigError

Params = tuple[tuple[str, Any], ...]  # a frozen mapping: sorted (key, value) pairs


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(params: Params) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in params}


@dataclass(frozen=True)
class TaskSpec:
    """A recipe for a task (see the module docstring). Hashable; ``to_dict``/``from_dict`` are JSON."""

    source: str
    classes: tuple[int, ...] | None = None
    source_kwargs: Params = ()
    train_per_class: int | None = None
    size: int | None = None
    corruptions: tuple[tuple[str, Params], ...] = ()
    label_noise: float = 0.0
    seed: int = 0
    family: str | None = field(default=None, compare=False)
    held_out: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if self.classes is not None:
            set_(self, "classes", tuple(int(c) for c in self.classes))
        set_(self, "source_kwargs", _freeze(dict(self.source_kwargs)))
        corr = []
        for item in self.corruptions:
            if isinstance(item, Mapping):
                item = dict(item)
                name = item.pop("name", None)
                corr.append((name, _freeze(item)))
            else:
                name, params = item
                corr.append((name, _freeze(dict(params))))
        set_(self, "corruptions", tuple(corr))
        problems = []
        if not isinstance(self.source, str) or not self.source:
            problems.append(f"source must be a registered task name, got {self.source!r}")
        if any(not isinstance(n, str) for n, _ in self.corruptions):
            problems.append("every corruption needs a 'name' (see nag.data.corruptions.list_corruptions())")
        if self.train_per_class is not None and int(self.train_per_class) < 1:
            problems.append(f"train_per_class must be None or >= 1, got {self.train_per_class}")
        if self.size is not None and int(self.size) < 4:
            problems.append(f"size must be None or >= 4 pixels, got {self.size}")
        if not 0.0 <= float(self.label_noise) < 1.0:
            problems.append(f"label_noise must be in [0, 1), got {self.label_noise}")
        if problems:
            raise ConfigError("invalid task recipe: " + "; ".join(problems))

    # ----- identity ------------------------------------------------------------------------
    @property
    def derived(self) -> bool:
        """Whether the recipe does more than pick classes of its source."""
        return bool(self.train_per_class or self.size or self.corruptions or self.label_noise or self.seed)

    @property
    def id(self) -> str:
        """A readable, stable identity, e.g. ``digits[0,1,2]`` or ``shapes[0,3]{size=16,noise(std=0.5)}``."""
        out = self.source
        if self.source_kwargs:
            out += "(" + ",".join(f"{k}={_compact(v)}" for k, v in self.source_kwargs) + ")"
        if self.classes is not None:
            out += "[" + ",".join(map(str, self.classes)) + "]"
        extra = []
        if self.train_per_class:
            extra.append(f"train_per_class={self.train_per_class}")
        if self.size:
            extra.append(f"size={self.size}")
        extra += [f"{n}(" + ",".join(f"{k}={_compact(v)}" for k, v in p) + ")" for n, p in self.corruptions]
        if self.label_noise:
            extra.append(f"label_noise={self.label_noise:g}")
        if self.seed:
            extra.append(f"seed={self.seed}")
        return out + ("{" + ",".join(extra) + "}" if extra else "")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able; ``TaskSpec.from_dict(spec.to_dict()) == spec``."""
        out: dict[str, Any] = {"source": self.source}
        if self.classes is not None:
            out["classes"] = list(self.classes)
        if self.source_kwargs:
            out["source_kwargs"] = _thaw(self.source_kwargs)
        for key in ("train_per_class", "size"):
            if getattr(self, key) is not None:
                out[key] = int(getattr(self, key))
        if self.corruptions:
            out["corruptions"] = [{"name": n, **_thaw(p)} for n, p in self.corruptions]
        if self.label_noise:
            out["label_noise"] = float(self.label_noise)
        if self.seed:
            out["seed"] = int(self.seed)
        if self.family is not None:
            out["family"] = self.family
        if self.held_out:
            out["held_out"] = True
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TaskSpec:
        accepted = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(accepted))
        if unknown or "source" not in data:
            raise ConfigError(f"task recipe {dict(data)} has unknown keys {unknown} or no 'source'. Accepted keys: {accepted}")
        return cls(**dict(data))

    # ----- building --------------------------------------------------------------------------
    def build(self, **source_kwargs: Any) -> Task:
        """The task this recipe describes. ``source_kwargs`` add to the recipe's own (e.g. root)."""
        kwargs = {**_thaw(self.source_kwargs), **source_kwargs}
        task = _source_task(self.source, json.dumps(kwargs, sort_keys=True, default=str))
        if self.classes is not None:
            task = task.subset(list(self.classes))
        if not self.derived:
            return task
        return _derive(task, self)


def _compact(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "x".join(_compact(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


@lru_cache(maxsize=8)
def _source_task(source: str, kwargs_json: str) -> Task:
    """Source tasks are rebuilt often (one per recipe); the few distinct ones are kept."""
    from nag.data.tasks import get_task

    return get_task(source, **json.loads(kwargs_json))


def _split_tensors(task: Task) -> dict[str, tuple[Tensor, Tensor]]:
    out = {}
    for split in ("train", "val", "test"):
        ds = getattr(task, split)
        out[split] = (gather_images(ds, np.arange(len(ds))).float(), dataset_labels(ds).clone())
    return out


def _generator(spec: TaskSpec, step: int, split: int = 0) -> torch.Generator:
    seed = int(np.random.SeedSequence([spec.seed, step, split]).generate_state(1)[0])
    return torch.Generator().manual_seed(seed)


def _derive(task: Task, spec: TaskSpec) -> Task:
    from nag.data.corruptions import apply_corruption

    parts = _split_tensors(task)
    k = task.num_classes
    if spec.train_per_class:
        x, y = parts["train"]
        gen = _generator(spec, 1)
        keep = []
        for label in range(k):
            pool = (y == label).nonzero(as_tuple=True)[0]
            if len(pool) < spec.train_per_class:
                raise ConfigError(
                    f"recipe {spec.id}: class {task.classes[label]} of {task.name} has {len(pool)} training "
                    f"images, fewer than train_per_class={spec.train_per_class}"
                )
            keep.append(pool[torch.randperm(len(pool), generator=gen)[: spec.train_per_class]])
        idx = torch.cat(keep).sort().values
        parts["train"] = (x[idx], y[idx])
    if spec.size:
        size = int(spec.size)
        for split, (x, y) in parts.items():
            if x.shape[-2:] != (size, size):
                shrink = size < min(x.shape[-2:])
                x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=shrink, align_corners=False)
            parts[split] = (x, y)
    for c_idx, (name, params) in enumerate(spec.corruptions):
        for s_idx, (split, (x, y)) in enumerate(parts.items()):
            parts[split] = (apply_corruption(name, x, _generator(spec, 10 + c_idx, s_idx), **dict(params)), y)
    if spec.label_noise:
        x, y = parts["train"]
        gen = _generator(spec, 2)
        flip = torch.rand(len(y), generator=gen) < spec.label_noise
        shift = torch.randint(1, max(k, 2), (len(y),), generator=gen)  # another class, uniformly
        parts["train"] = (x, torch.where(flip, (y + shift) % k, y))
    x_train = parts["train"][0]
    mean = x_train.mean(dim=(0, 2, 3), keepdim=True)
    std = x_train.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    datasets = {s: TensorDataset(((x - mean) / std).contiguous(), y.long()) for s, (x, y) in parts.items()}
    return Task(
        name=spec.id,
        num_classes=k,
        input_shape=tuple(x_train.shape[1:]),
        classes=task.classes,
        meta={**task.meta, "recipe": spec.to_dict(), "parent": task.name},
        **datasets,
    )
