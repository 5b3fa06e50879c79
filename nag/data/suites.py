"""Task suites: named, deterministic lists of task recipes for meta-training (``build_meta_db``).

A suite is ``fn(**params) -> list[TaskSpec]``, registered in ``SUITES``. Recipes marked
``held_out`` are for evaluation only: a meta-database builder trains archs on them only when
asked (``meta_db.held_out``), and a meta-predictor must never be fitted on their rows.

- ``class_subsets``: random class subsets of one source (the shipped digits database).
- ``diverse``: 62 tasks over every offline image source, varied in the ways that change which
  architecture wins (classes, resolution, training-set size, label noise, corruptions); 12 held out.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from itertools import combinations
from typing import Any

import numpy as np

from nag.data.recipes import TaskSpec
from nag.data.tasks import TASKS
from nag.errors import ConfigError
from nag.registry import Registry

SUITES: Registry[list[TaskSpec]] = Registry("task suite", group="nag.task_suites")

# transfer_nas's embedded unseen task: held out of every suite that can contain it
TRANSFER_DEFAULT = TaskSpec("digits", (0, 2, 4, 6, 8, 9))


@SUITES.register("class_subsets")
def class_subsets(
    source: str = "digits",
    num_source_classes: int = 10,
    n_tasks: int = 20,
    classes_per_task: int = 6,
    exclude: Iterable[Sequence[int]] = ((0, 2, 4, 6, 8, 9),),
    seed: int = 0,
) -> list[TaskSpec]:
    """``n_tasks`` distinct class subsets of ``source`` (sorted ids), none in ``exclude``; then the
    ``exclude`` subsets themselves, marked held out."""
    excluded = [tuple(sorted(int(c) for c in ex)) for ex in exclude]
    pool = [c for c in combinations(range(num_source_classes), classes_per_task) if c not in set(excluded)]
    if n_tasks > len(pool):
        raise ConfigError(
            f"asked for {n_tasks} meta-training tasks of {classes_per_task} classes from {source!r}, "
            f"but only {len(pool)} distinct subsets exist (after exclusions); lower meta_db.n_tasks"
        )
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(pool), size=n_tasks, replace=False)
    train = [TaskSpec(source, tuple(pool[i]), family=f"{source}-subsets") for i in picks]
    return train + [TaskSpec(source, ex, family=f"{source}-subsets", held_out=True) for ex in excluded]


def _subset(rng: np.random.Generator, n_classes: int, k: int) -> tuple[int, ...]:
    return tuple(sorted(int(c) for c in rng.choice(n_classes, size=k, replace=False)))


@SUITES.register("diverse")
def diverse(seed: int = 0) -> list[TaskSpec]:
    """62 recipes in 9 families, interleaved so that any prefix mixes families; 12 held out:

    - the whole ``textures`` family (a domain no training task comes from),
    - transfer_nas's default digits[0,2,4,6,8,9],
    - and the recipes with contrast inversion (a corruption no training task has).

    Families: digits subsets (native 8x8 or upsampled), digits with corruptions, digits with few
    and noisy labels, photo-region classification in colour and grey, photo patches with
    corruptions, procedural shapes (clean and corrupted), textures.
    """
    rng = np.random.default_rng(seed)
    families: dict[str, list[TaskSpec]] = {}

    def add(family: str, spec_kwargs: dict[str, Any], held_out: bool = False) -> None:
        families.setdefault(family, []).append(TaskSpec(family=family, held_out=held_out, **spec_kwargs))

    # digits: which classes, how many, at which resolution
    for k, size in [(2, None), (3, 16), (4, None), (5, 16), (6, None), (7, 16), (8, None), (10, 16), (4, 16)]:
        add("digits-subsets", {"source": "digits", "classes": _subset(rng, 10, k), "size": size})
    add("digits-subsets", {"source": "digits", "classes": TRANSFER_DEFAULT.classes}, held_out=True)
    # digits under corruptions, 16 px
    for corr in [
        {"name": "rotate", "degrees": 45}, {"name": "rotate", "degrees": 90}, {"name": "blur", "sigma": 1.5},
        {"name": "noise", "std": 0.8}, {"name": "noise", "std": 1.5}, {"name": "occlude", "fraction": 0.4},
        {"name": "translate", "fraction": 0.25}, {"name": "invert", "p": 0.5},
    ]:
        add("digits-corrupt", {"source": "digits", "classes": _subset(rng, 10, 6), "size": 16, "corruptions": [corr], "seed": 1})
    add("digits-corrupt", {"source": "digits", "classes": _subset(rng, 10, 5), "size": 16, "seed": 2,
                           "corruptions": [{"name": "rotate", "degrees": 30}, {"name": "noise", "std": 0.5}]})
    add("digits-corrupt", {"source": "digits", "classes": _subset(rng, 10, 6), "size": 16, "seed": 3,
                           "corruptions": [{"name": "invert", "p": 1.0}, {"name": "blur", "sigma": 1.0}]})
    # digits with few and noisy training labels
    for per_class, noise in [(10, 0.0), (20, 0.2), (40, 0.4), (15, 0.0), (60, 0.3), (30, 0.1)]:
        add("digits-lowdata", {"source": "digits", "classes": _subset(rng, 10, 5), "train_per_class": per_class,
                               "label_noise": noise, "seed": 4})
    # photo regions: which regions, colour or grey, resolution
    for k, size, gray in [(4, 16, False), (6, 16, False), (8, 24, False), (12, 16, False), (6, 32, False),
                          (5, 16, True), (8, 16, True), (10, 24, True), (24, 16, False), (6, 8, False)]:
        add("photo-regions", {"source": "photo_patches", "classes": _subset(rng, 24, k), "size": size,
                              "source_kwargs": {"gray": True} if gray else {}})
    # photo patches, corrupted / scarce
    for extra in [
        {"corruptions": [{"name": "blur", "sigma": 1.0}]}, {"corruptions": [{"name": "noise", "std": 0.7}]},
        {"corruptions": [{"name": "occlude", "fraction": 0.4}]}, {"train_per_class": 20, "label_noise": 0.2},
        {"corruptions": [{"name": "rotate", "degrees": 90}]}, {"corruptions": [{"name": "invert", "p": 0.5}]},
    ]:
        add("photo-corrupt", {"source": "photo_patches", "classes": _subset(rng, 24, 6), "size": 16, "seed": 5, **extra})
    # procedural shapes
    for k, size in [(3, 16), (4, 24), (5, 16), (6, 32), (8, 16), (8, 24), (4, 8)]:
        add("shapes", {"source": "shapes", "classes": _subset(rng, 8, k), "size": size})
    for extra in [
        {"corruptions": [{"name": "noise", "std": 1.0}]}, {"corruptions": [{"name": "blur", "sigma": 1.5}]},
        {"corruptions": [{"name": "occlude", "fraction": 0.35}]}, {"train_per_class": 15, "label_noise": 0.2},
        {"corruptions": [{"name": "translate", "fraction": 0.2}, {"name": "noise", "std": 0.5}]},
        {"corruptions": [{"name": "invert", "p": 0.5}]},
    ]:
        add("shapes-corrupt", {"source": "shapes", "classes": _subset(rng, 8, 6), "size": 16, "seed": 6, **extra})
    # textures: the held-out domain
    for k, size, extra in [(4, 16, {}), (6, 16, {}), (8, 24, {}), (5, 16, {"corruptions": [{"name": "noise", "std": 0.8}]}),
                           (6, 16, {"train_per_class": 20}), (3, 8, {}), (8, 16, {"corruptions": [{"name": "blur", "sigma": 1.0}]})]:
        add("textures", {"source": "textures", "classes": _subset(rng, 8, k), "size": size, "seed": 7 if extra else 0, **extra},
            held_out=True)

    def inverted(spec: TaskSpec) -> bool:
        return any(name == "invert" for name, _ in spec.corruptions)

    out: list[TaskSpec] = []
    queues = list(families.values())
    while any(queues):  # round-robin over families: every prefix is diverse
        for q in queues:
            if q:
                spec = q.pop(0)
                if inverted(spec) and not spec.held_out:
                    spec = replace(spec, held_out=True)
                out.append(spec)
    ids = [s.id for s in out]
    if len(set(ids)) != len(ids):  # pragma: no cover - a suite definition error
        raise ConfigError(f"suite 'diverse' has duplicate recipes: {sorted({i for i in ids if ids.count(i) > 1})}")
    return out


def get_suite(name: str, **params: Any) -> list[TaskSpec]:
    """The recipes of suite ``name`` built with ``params`` (unknown params are a ConfigError)."""
    return SUITES.build(name, **params)


def list_suites(pattern: str = "*") -> list[str]:
    return SUITES.names(pattern)


@TASKS.register("suite")
def suite_task(suite: str = "diverse", index: int | None = None, id: str | None = None, suite_kwargs: dict | None = None):
    """Task ``index`` (or the one whose recipe id is ``id``) of suite ``suite``, built."""
    specs = get_suite(suite, **dict(suite_kwargs or {}))
    if (index is None) == (id is None):
        raise ConfigError(f"task 'suite': give exactly one of task.index (0..{len(specs) - 1}) or task.id")
    if index is not None:
        if not 0 <= int(index) < len(specs):
            raise ConfigError(f"task 'suite': index must be in 0..{len(specs) - 1} for suite {suite!r}, got {index}")
        return specs[int(index)].build()
    match = [s for s in specs if s.id == id]
    if not match:
        raise ConfigError(f"task 'suite': suite {suite!r} has no recipe with id {id!r}; e.g. {specs[0].id!r}")
    return match[0].build()
