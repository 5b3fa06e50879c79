"""``experiment=build_meta_db``: really train random archs on class-subset tasks.

For each of ``meta_db.n_tasks`` class subsets of the source task (never the held-out
``meta_db.exclude`` subsets, which transfer_nas uses as unseen tasks), train
``meta_db.archs_per_task`` random archs of distinct isomorphism classes with the ``train``
budget, and append one row per (task, arch) to ``meta_db.path`` (JSON lines, fsynced) as each
training finishes. The trainings run on ``executor`` (``local``: one after another here;
``ray``: in parallel, docs/scale.md); every one uses the run's ``seed``, so the rows do not
depend on the executor or the order. A rerun resumes: pairs already in the file are skipped.

Results: ``n_rows``, ``n_tasks``, ``n_trained_now``, ``mean_test_acc``, ``wall_s``.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from nag.evaluation import train_eval
from nag.executor import Job, build_executor, fill_rows
from nag.experiments import build_budget, build_space, distinct_sample, experiment, plain, positive_int, run_dir
from nag.meta import MetaDatabase, meta_task_specs
from nag.wandb_utils import log_metrics


def resolve_db_path(cfg: DictConfig) -> Path:
    """``meta_db.path`` (relative paths are taken from the current folder); default: run folder."""
    path = cfg.meta_db.get("path")
    return Path(path) if path else run_dir() / "meta_db.jsonl"


@experiment("build_meta_db")
def build_meta_db(cfg: DictConfig) -> dict:
    space = build_space(cfg)
    budget = build_budget(cfg)
    seed = int(cfg.seed)
    m = cfg.meta_db
    source_kwargs = plain(m.get("source_kwargs")) or {}
    specs = meta_task_specs(
        m.source,
        positive_int(m, "num_source_classes"),
        positive_int(m, "n_tasks"),
        positive_int(m, "classes_per_task"),
        seed=seed,
        exclude=plain(m.get("exclude")) or (),
    )
    db = MetaDatabase(resolve_db_path(cfg))
    n_archs = positive_int(m, "archs_per_task")
    pairs = {}  # (task id, arch string) -> (spec, arch), in the order an uninterrupted run trains them
    for i, spec in enumerate(specs):
        for arch in distinct_sample(space, n_archs, seed=seed * 1000 + i):
            pairs[(spec.id, space.format(arch))] = (spec, arch)
    todo = [key for key in pairs if key not in db.store]
    start = time.perf_counter()
    with build_executor(cfg.get("executor")) as executor:
        jobs = []
        if todo:  # a finished database starts no executor runtime
            shared_space, tasks = executor.share(space), {}
            for key in todo:
                spec, arch = pairs[key]
                if spec.id not in tasks:
                    tasks[spec.id] = executor.share(spec.build(**source_kwargs))
                jobs.append(Job(key, train_eval, (shared_space, arch, tasks[spec.id], budget, seed)))

        def row_of(job: Job, metrics: dict) -> dict:
            spec, _ = pairs[job.key]
            return {
                "task": spec.id,
                "source": spec.source,
                "classes": list(spec.classes),
                "arch": job.key[1],
                "space": space.name,
                "val_acc": metrics["val_acc"],
                "test_acc": metrics["test_acc"],
                "wall_s": metrics["wall_s"],
                "seed": seed,  # every evaluation of a run trains with the run's seed (docs/scale.md)
            }

        fill_rows(db.store, jobs, executor, row_of, desc="build_meta_db", total=len(pairs),
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
