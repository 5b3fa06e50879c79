"""How much of a task's ranking do other tasks predict, and which other tasks? (no network, 1 s)

    python benchmarks/source_rankings.py                      # the shipped diverse database (N=3)
    python benchmarks/source_rankings.py benchmarks/results/meta_db_depth/diverse_nb201_n1.jsonl

On the archs every task shares (``meta_db.shared_archs``), each task's ranking is its
z-scored ``val_acc`` per seed. A task's seed-1 ranking is predicted by the mean ranking of a
group of *other* training tasks (Spearman, mean over tasks):

- ``all other training tasks``: one ranking for every task (what an unconditioned predictor can learn);
- ``same source`` / ``same family`` / ``same size``: only the training tasks that share the
  task's image source, recipe family or resolution;
- ``nearest k by seed-0 ranking``: the k training tasks whose rankings are closest to the
  task's seed 0 (an oracle: it peeks at the task's other seed);
- ``own seed 0``: the task's other seed, the noise ceiling of one run.

Training tasks are scored leave-one-out among themselves; held-out tasks against all training
tasks (the groups that are empty, e.g. a source no training task has, are left out).
"""
from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np

from nag.io import read_jsonl
from nag.metrics import spearman

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DB = REPO / "nag" / "assets" / "meta_db" / "diverse_nb201.jsonl"
NEAREST = (3, 5, 10)


def zscore(values: list[float]) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    return (v - v.mean()) / (v.std() or 1.0)


def rho(a: np.ndarray, b: np.ndarray) -> float:
    return spearman(a.tolist(), b.tolist()) or 0.0  # a constant ranking carries no order


def shared_rankings(rows: list[dict]) -> tuple[dict, dict, set[str], list[str]]:
    """``{(task, seed): z [A]}`` over the archs every task has for seeds 0 and 1, each task's recipe
    (or its source), the held-out tasks and the task order."""
    acc: dict[tuple[str, int], dict[str, float]] = defaultdict(dict)
    recipe, held = {}, set()
    for r in rows:
        acc[(r["task"], int(r.get("seed", 0)))][r["arch"]] = r["val_acc"]
        recipe[r["task"]] = r.get("recipe") or {"source": r.get("source")}
        if r.get("held_out"):
            held.add(r["task"])
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    if any((t, s) not in acc for t in tasks for s in (0, 1)):
        raise SystemExit("every task needs seeds 0 and 1 (build with meta_db.train_seeds=2)")
    archs = sorted(set.intersection(*(set(acc[(t, s)]) for t in tasks for s in (0, 1))))
    if len(archs) < 3:
        raise SystemExit(f"only {len(archs)} archs are shared by every task (build with meta_db.shared_archs >= 3)")
    z = {(t, s): zscore([acc[(t, s)][a] for a in archs]) for t in tasks for s in (0, 1)}
    return z, recipe, held, tasks


def predictors(task: str, pool: list[str], z: dict, recipe: dict) -> dict[str, np.ndarray]:
    """The named mean rankings that predict ``task`` from the tasks of ``pool`` (``task`` excluded)."""
    others = [u for u in pool if u != task]
    mean = {u: (z[(u, 0)] + z[(u, 1)]) / 2 for u in others}
    out = {"all other training tasks": np.mean([mean[u] for u in others], axis=0), "own seed 0": z[(task, 0)]}
    for key, default in (("source", None), ("family", None), ("size", 8)):
        same = [u for u in others if recipe[u].get(key, default) == recipe[task].get(key, default)]
        if same and recipe[task].get(key, default) is not None:
            out[f"same {key}"] = np.mean([mean[u] for u in same], axis=0)
    near = sorted(others, key=lambda u: -rho(z[(task, 0)], mean[u]))
    for k in NEAREST:
        out[f"nearest {k} by seed-0 ranking (oracle)"] = np.mean([mean[u] for u in near[:k]], axis=0)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("db", nargs="?", type=Path, default=DEFAULT_DB)
    args = parser.parse_args(argv)
    z, recipe, held, tasks = shared_rankings(read_jsonl(args.db))
    train = [t for t in tasks if t not in held]
    print(f"{args.db.name}: {len(train)} training tasks, {len(held)} held out; "
          f"{len(z[(tasks[0], 0)])} shared archs; Spearman with the task's seed 1")
    for split, evals in (("training tasks (leave-one-out)", train), ("held-out tasks", [t for t in tasks if t in held])):
        if not evals:
            continue
        scores: dict[str, list[float]] = defaultdict(list)
        for task in evals:
            for name, pred in predictors(task, train, z, recipe).items():
                scores[name].append(rho(z[(task, 1)], pred))
        print(f"| {split} | tasks | mean Spearman |\n|---|---|---|")
        for name, values in scores.items():
            print(f"| {name} | {len(values)} | {np.mean(values):.3f} |")


if __name__ == "__main__":
    main()
