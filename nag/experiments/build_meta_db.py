"""``experiment=build_meta_db``: really train random archs on class-subset tasks.

For each of ``meta_db.n_tasks`` class subsets of the source task (never the held-out
``meta_db.exclude`` subsets, which transfer_nas uses as unseen tasks), train
``meta_db.archs_per_task`` random archs of distinct isomorphism classes with the ``train``
budget, and append one row per (task, arch) to ``meta_db.path`` (JSON lines, fsynced).
A rerun resumes: pairs already in the file are skipped.

Results: ``n_rows``, ``n_tasks``, ``n_trained_now``, ``mean_test_acc``, ``wall_s``.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig
from tqdm import tqdm

from nag.evaluation import TrainBudget, train_eval
from nag.experiments import build_budget, build_space, distinct_sample, experiment, plain, run_dir, trainer_settings
from nag.experiments.config import PositiveInt, RunConfig
from nag.meta import MetaDatabase, meta_task_specs
from nag.schema import Settings
from nag.wandb_utils import log_metrics


class MetaDBSettings(Settings):
    """The ``meta_db:`` block: where rows go and which class-subset tasks to train on."""

    path: str | None
    source: str
    source_kwargs: dict[str, Any]
    num_source_classes: PositiveInt
    n_tasks: PositiveInt
    classes_per_task: PositiveInt
    archs_per_task: PositiveInt
    exclude: list[list[int]]


class BuildMetaDBConfig(RunConfig):
    meta_db: MetaDBSettings
    train: TrainBudget


def resolve_db_path(cfg: DictConfig) -> Path:
    """``meta_db.path`` (relative paths are taken from the current folder); default: run folder."""
    path = cfg.meta_db.get("path")
    return Path(path) if path else run_dir() / "meta_db.jsonl"


@experiment("build_meta_db", schema=BuildMetaDBConfig)
def build_meta_db(cfg: DictConfig) -> dict:
    space = build_space(cfg)
    budget = build_budget(cfg)
    trainer = trainer_settings(cfg)
    m = cfg.meta_db
    source_kwargs = plain(m.get("source_kwargs")) or {}
    specs = meta_task_specs(
        m.source, m.num_source_classes, m.n_tasks, m.classes_per_task, seed=int(cfg.seed),
        exclude=plain(m.get("exclude")) or (),
    )
    db = MetaDatabase(resolve_db_path(cfg))
    done = db.done()
    n_archs = m.archs_per_task
    todo = []
    for i, spec in enumerate(specs):
        archs = distinct_sample(space, n_archs, seed=int(cfg.seed) * 1000 + i)
        todo += [(spec, a) for a in archs if (spec.id, space.format(a)) not in done]
    start = time.perf_counter()
    tasks: dict[str, object] = {}
    with tqdm(total=len(specs) * n_archs, initial=len(specs) * n_archs - len(todo), desc="build_meta_db", unit="arch", disable=None) as bar:
        for spec, arch in todo:
            task = tasks.get(spec.id) or tasks.setdefault(spec.id, spec.build(**source_kwargs))
            metrics = train_eval(space, arch, task, budget, seed=int(cfg.seed), trainer=trainer)
            row = {
                "task": spec.id,
                "source": spec.source,
                "classes": list(spec.classes),
                "arch": space.format(arch),
                "space": space.name,
                "val_acc": metrics["val_acc"],
                "test_acc": metrics["test_acc"],
                "wall_s": metrics["wall_s"],
                "seed": int(cfg.seed),
            }
            db.append(row)
            log_metrics({"val_acc": row["val_acc"], "test_acc": row["test_acc"]})
            bar.update()
    rows = db.rows()
    return {
        "n_rows": len(rows),
        "n_tasks": len({r["task"] for r in rows}),
        "n_trained_now": len(todo),
        "mean_test_acc": float(np.mean([r["test_acc"] for r in rows])) if rows else float("nan"),
        "wall_s": time.perf_counter() - start,
        "path": str(db.path),
    }
