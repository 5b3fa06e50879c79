"""``experiment=build_meta_db``: really train random archs on a suite of tasks.

The tasks are task recipes (``nag.data.recipes.TaskSpec``): those of ``meta_db.recipes`` (a
list in the config, or a JSON file of one) when given, else those of the suite
``meta_db.suite`` (``nag.data.suites``) built with ``meta_db.suite_kwargs``. The suite's
held-out tasks are skipped unless ``meta_db.held_out`` is ``include`` or ``only`` (their rows
say ``held_out: true``: evaluation rows, never to be trained on). ``meta_db.n_tasks`` keeps the
first n. For each task, ``meta_db.archs_per_task`` random archs of distinct isomorphism classes
are trained with the ``train`` budget; the first ``meta_db.shared_archs`` of them are the same
for every task, so that tasks' rankings can be compared. Each (task, arch) is trained
``meta_db.train_seeds`` times (training seeds ``seed``, ``seed + 1``, ...: one seed's accuracy
is noisy, see benchmarks/meta_db_pilot.py). One row per (task, arch, training seed) is appended
to ``meta_db.path`` (JSON lines, fsynced). A rerun resumes: runs already in the file are skipped.
Every row records the macro network (the ``space`` options, e.g. C and N) and the ``train`` budget
it was built with (``built_with``); a run whose settings differ from a file's rows stops with a
ConfigError before training anything, instead of counting their runs as its own.

Results: ``n_rows``, ``n_tasks``, ``n_trained_now``, ``mean_test_acc``, ``wall_s``, ``path``.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
from omegaconf import DictConfig

from nag.data.recipes import TaskSpec
from nag.data.suites import get_suite
from nag.errors import ConfigError
from nag.evaluation import TrainBudget, train_eval
from nag.executor import Job, build_executor, fill_rows
from nag.experiments import (build_budget, build_space, distinct_sample, experiment, plain, run_dir, space_options,
                             trainer_settings)
from nag.experiments.config import NonNegativeInt, PositiveInt, RunConfig
from nag.meta import MetaDatabase
from nag.schema import Settings
from nag.wandb_utils import log_metrics

HELD_OUT = ("exclude", "include", "only")
SHARED_STREAM = 5_000_003  # seed-sequence key of the archs shared by every task


class MetaDBSettings(Settings):
    """The ``meta_db:`` block: where rows go, which tasks (a suite or recipes) and how many runs."""

    path: str | None
    suite: str
    suite_kwargs: dict[str, Any]
    recipes: list[dict[str, Any]] | str | None
    held_out: Literal[HELD_OUT]  # type: ignore[valid-type]
    n_tasks: PositiveInt | None
    archs_per_task: PositiveInt
    shared_archs: NonNegativeInt
    train_seeds: PositiveInt
    source_kwargs: dict[str, Any]


class BuildMetaDBConfig(RunConfig):
    meta_db: MetaDBSettings
    train: TrainBudget


def resolve_db_path(cfg: DictConfig) -> Path:
    """``meta_db.path`` (relative paths are taken from the current folder); default: run folder."""
    path = cfg.meta_db.get("path")
    return Path(path) if path else run_dir() / "meta_db.jsonl"


def configured_recipes(m: DictConfig) -> list[TaskSpec]:
    """Every recipe of ``meta_db.recipes`` (list or JSON file) or of the suite, held-out ones included."""
    recipes = plain(m.get("recipes"))
    if recipes is None:
        return get_suite(str(m.suite), **(plain(m.get("suite_kwargs")) or {}))
    if isinstance(recipes, str):
        path = Path(recipes)
        if not path.is_file():
            raise ConfigError(f"meta_db.recipes={recipes!r}: no such file; give a JSON list of task recipes or a list in the config")
        recipes = json.loads(path.read_text())
    if not isinstance(recipes, list) or not all(isinstance(r, dict) for r in recipes):
        raise ConfigError("meta_db.recipes must be a list of task recipes ({source: ..., classes: [...], ...}) or a JSON file of one")
    return [TaskSpec.from_dict(r) for r in recipes]


def select_recipes(specs: list[TaskSpec], held_out: str, n_tasks: int | None) -> list[tuple[int, TaskSpec]]:
    """(index in ``specs``, spec) pairs kept by the ``held_out`` mode and the ``n_tasks`` prefix."""
    if held_out not in HELD_OUT:
        raise ConfigError(f"meta_db.held_out must be one of {list(HELD_OUT)}, got {held_out!r}")
    keep = [(i, s) for i, s in enumerate(specs) if held_out == "include" or s.held_out == (held_out == "only")]
    if n_tasks is not None:
        if n_tasks > len(keep):
            raise ConfigError(f"meta_db.n_tasks={n_tasks} but only {len(keep)} tasks are selected (held_out={held_out!r})")
        keep = keep[:n_tasks]
    return keep


def task_archs(space: Any, shared: list, n: int, seed: int) -> list:
    """``shared`` followed by random archs of other isomorphism classes, ``n`` in all."""
    keys = {space.canonical(a) for a in shared}
    own = [a for a in distinct_sample(space, n + len(shared), seed) if space.canonical(a) not in keys]
    return list(shared) + own[: n - len(shared)]


def plan(cfg: DictConfig, space: Any) -> list[tuple[TaskSpec, Any]]:
    """Every (task recipe, arch) pair the config asks for, in a fixed order.

    The archs of the task at position i of the full recipe list come from seed ``seed*1000 + i``
    (the shared ones from their own stream of ``seed``): they depend on the config, never on what
    ran before.
    """
    m = cfg.meta_db
    n_tasks = None if m.get("n_tasks") is None else int(m.n_tasks)
    chosen = select_recipes(configured_recipes(m), str(m.get("held_out", "exclude")), n_tasks)
    n_archs = int(m.archs_per_task)
    n_shared = int(m.get("shared_archs") or 0)
    if not 0 <= n_shared <= n_archs:
        raise ConfigError(f"meta_db.shared_archs must be in 0..archs_per_task={n_archs}, got {n_shared}")
    seed = int(cfg.seed)
    shared = distinct_sample(space, n_shared, np.random.SeedSequence([seed, SHARED_STREAM])) if n_shared else []
    return [(spec, a) for i, spec in chosen for a in task_archs(space, shared, n_archs, seed * 1000 + i)]


def built_with(cfg: DictConfig) -> dict:
    """What every row of one database shares: the space's build options (e.g. C, N) and the budget."""
    return {"space": space_options(cfg), "train": build_budget(cfg).model_dump()}


def meta_row(spec: TaskSpec, space: Any, arch: Any, metrics: dict, seed: int, settings: dict) -> dict:
    """One database row (keys in ``nag.meta.database``); ``settings``: ``built_with(cfg)``."""
    return {
        "task": spec.id,
        "source": spec.source,
        "classes": None if spec.classes is None else list(spec.classes),
        "arch": space.format(arch),
        "space": space.name,
        "val_acc": metrics["val_acc"],
        "test_acc": metrics["test_acc"],
        "wall_s": metrics["wall_s"],
        "seed": seed,
        "recipe": spec.to_dict(),
        "family": spec.family,
        "held_out": spec.held_out,
        "built_with": settings,
    }


@experiment("build_meta_db", schema=BuildMetaDBConfig)
def build_meta_db(cfg: DictConfig) -> dict:
    space = build_space(cfg)
    budget = build_budget(cfg)
    trainer = trainer_settings(cfg)
    source_kwargs = plain(cfg.meta_db.get("source_kwargs")) or {}
    seeds = [int(cfg.seed) + k for k in range(int(cfg.meta_db.train_seeds))]
    runs = {}  # (task id, arch string, seed) -> (spec, arch), in the order an uninterrupted run trains them
    for spec, arch in plan(cfg, space):
        for seed in seeds:
            runs[(spec.id, space.format(arch), seed)] = (spec, arch)
    db = MetaDatabase(resolve_db_path(cfg))
    settings = built_with(cfg)
    db.check_built_with(settings)
    todo = [key for key in runs if key not in db.store]
    start = time.perf_counter()
    with build_executor(cfg.get("executor")) as executor:
        jobs = []
        if todo:  # a finished database starts no executor runtime
            shared_space, tasks = executor.share(space), {}
            for key in todo:
                spec, arch = runs[key]
                if spec.id not in tasks:
                    tasks[spec.id] = executor.share(spec.build(**source_kwargs))
                jobs.append(Job(key, train_eval, (shared_space, arch, tasks[spec.id], budget, key[2]), {"trainer": trainer}))

        def row_of(job: Job, metrics: dict) -> dict:
            spec, arch = runs[job.key]
            return meta_row(spec, space, arch, metrics, job.key[2], settings)

        fill_rows(db.store, jobs, executor, row_of, desc="build_meta_db", total=len(runs),
                  on_row=lambda row: log_metrics({"val_acc": row["val_acc"], "test_acc": row["test_acc"]}))
    rows = db.rows()
    return {
        "n_rows": len(rows),
        "n_tasks": len({r["task"] for r in rows}),
        "n_trained_now": len(todo),
        "mean_test_acc": float(np.mean([r["test_acc"] for r in rows])) if rows else float("nan"),
        "wall_s": time.perf_counter() - start,
        "path": str(db.path),
    }
