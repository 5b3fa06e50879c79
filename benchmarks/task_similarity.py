"""Can knowing the task help rank architectures on an unseen task? A linear probe of the meta-database.

    python benchmarks/task_similarity.py                       # the shipped diverse database, both descriptors
    python benchmarks/task_similarity.py --descriptor encoder  # only what nag can compute from a user's images

The meta-predictor's dataset condition adds nothing measurable in leave-task-out folds
(docs/transfer_nas.md). This script asks whether the rows hold task-dependent rankings at all,
with the simplest model that can use them: ridge regression from an arch's one-hot op tokens to
its per-task standardised accuracy (the seed mean of val_acc), fit on the training tasks.

- ``uncond``: every training task weighs the same (one ranking for every task);
- ``kernel``: training task u weighs ``exp(-(d(t, u) - min_u d) / tau)`` for the unseen task t,
  with d a distance between task descriptors (median-normalised):
  - ``encoder``: the dataset encoder's features of ``n_per_class`` images per class (the ones
    the meta-predictor reads): their mean, std and between-class std over the batch, and log K,
    each standardised over the training tasks;
  - ``recipe``: the task's recipe (source, classes, size, training-set size, label noise,
    corruptions): known for the suite's tasks, not for a user's folder; an upper reference.

A reference line ranks each training task from its own rows only (ridge, 5-fold over its archs):
how predictable a task's ranking is from the op tokens at all, with no transfer.

``tau`` is chosen on leave-one-task-out over the training tasks only (the tuning split); the
database's held-out tasks (never trained on, a source none of the training tasks has) are scored
once, with that tau. Spearman against the measured seed-mean val_acc, mean over tasks.
"""
from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from nag.metrics import spearman

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DB = REPO / "nag" / "assets" / "meta_db" / "diverse_nb201.jsonl"


class Tasks:
    """Per task: arch one-hot tokens X [A, L*V], seed-mean val_acc y [A] and its z-score."""

    def __init__(self, rows: list[dict]) -> None:
        from nag.spaces import get_space

        acc: dict[tuple[str, str], list[float]] = defaultdict(list)
        self.rows: dict[str, dict] = {}
        spaces: dict[str, object] = {}
        for r in rows:
            acc[(r["task"], r["arch"])].append(float(r["val_acc"]))
            self.rows.setdefault(r["task"], r)
            spaces.setdefault(r["space"], None)
        if len(spaces) != 1:
            raise SystemExit(f"one search space per database, got {sorted(spaces)}")
        (name,) = spaces
        space = get_space(name)  # only its arch strings and tokens are read
        by_task: dict[str, list[tuple[str, float]]] = defaultdict(list)
        for (task, arch), values in acc.items():
            by_task[task].append((arch, float(np.mean(values))))
        tokens = {a: space.to_tokens(space.parse(a)) for t in by_task for a, _ in by_task[t]}
        vocab = 1 + max(max(tok) for tok in tokens.values())
        self.X, self.y, self.z = {}, {}, {}
        for task, items in sorted(by_task.items()):
            X = np.zeros((len(items), len(tokens[items[0][0]]) * vocab))
            for i, (arch, _) in enumerate(items):
                X[i, [j * vocab + k for j, k in enumerate(tokens[arch])]] = 1.0
            y = np.array([v for _, v in items])
            self.X[task], self.y[task] = X, y
            self.z[task] = (y - y.mean()) / (y.std() + 1e-9)
        self.train = [t for t in self.X if not self.rows[t].get("held_out")]
        self.held = [t for t in self.X if self.rows[t].get("held_out")]


def fit(tasks: Tasks, names: list[str], weights: np.ndarray | None = None, lam: float = 3.0) -> np.ndarray:
    """Weighted ridge with an intercept; returns beta [D+1]."""
    X = np.vstack([tasks.X[t] for t in names])
    z = np.concatenate([tasks.z[t] for t in names])
    w = np.ones(len(z)) if weights is None else np.concatenate(
        [np.full(len(tasks.z[t]), wt) for t, wt in zip(names, weights)])
    Xb = np.hstack([X, np.ones((len(X), 1))])
    return np.linalg.solve((Xb * w[:, None]).T @ Xb + lam * np.eye(Xb.shape[1]), (Xb * w[:, None]).T @ z)


def own_rows_spearman(tasks: Tasks, task: str, folds: int = 5, lam: float = 3.0, seed: int = 0) -> float:
    """A reference: the task's own archs, ``folds``-fold (seeded): ridge on the others, Spearman of
    the held-out predictions over all archs. How predictable the task is from its own rows."""
    X, z = tasks.X[task], tasks.z[task]
    pred = np.zeros(len(z))
    for held in np.array_split(np.random.default_rng(seed).permutation(len(z)), folds):
        keep = np.setdiff1d(np.arange(len(z)), held)
        Xb = np.hstack([X[keep], np.ones((len(keep), 1))])
        beta = np.linalg.solve(Xb.T @ Xb + lam * np.eye(Xb.shape[1]), Xb.T @ z[keep])
        pred[held] = np.hstack([X[held], np.ones((len(held), 1))]) @ beta
    value = spearman(list(pred), list(tasks.y[task]))
    return float("nan") if value is None else value


def task_spearman(tasks: Tasks, beta: np.ndarray, task: str) -> float:
    """Spearman of the ridge's predictions with the task's accuracies; NaN where undefined (averaged with nanmean)."""
    pred = np.hstack([tasks.X[task], np.ones((len(tasks.X[task]), 1))]) @ beta
    value = spearman(list(pred), list(tasks.y[task]))
    return float("nan") if value is None else value


def recipe_distance(tasks: Tasks) -> Callable[[str, str], float]:
    def describe(t: str) -> dict:
        r = tasks.rows[t]["recipe"]
        return {"source": r["source"], "K": len(r["classes"]), "size": r.get("size", 8),
                "lowdata": "train_per_class" in r, "noise": r.get("label_noise", 0.0),
                "corr": {c["name"] for c in r.get("corruptions", [])}}

    d = {t: describe(t) for t in tasks.X}

    def distance(a: str, b: str) -> float:
        x, y = d[a], d[b]
        return (3.0 * (x["source"] != y["source"]) + abs(math.log(x["K"] / y["K"])) + abs(math.log(x["size"] / y["size"]))
                + (x["lowdata"] != y["lowdata"]) + 3.0 * abs(x["noise"] - y["noise"]) + 0.5 * len(x["corr"] ^ y["corr"]))

    return distance


def encoder_distance(tasks: Tasks, db: Path, n_per_class: int, seed: int) -> Callable[[str, str], float]:
    import torch

    from nag.meta import MetaDatabase
    from nag.meta.features import build_extractor, spec_features

    torch.set_num_threads(1)
    specs = [s for s in MetaDatabase(db).task_specs() if s.id in tasks.X]
    feats = spec_features(build_extractor({"backbone": "resnet18"}), specs, n_per_class, seed)
    emb = {}
    for t, x in feats.items():  # x: [K, n, F]
        x = x.float()
        emb[t] = torch.cat([x.mean(dim=(0, 1)), x.std(dim=(0, 1)), x.mean(1).std(0),
                            torch.tensor([10.0 * math.log(x.shape[0])])]).numpy()
    mu = np.mean([emb[t] for t in tasks.train], 0)
    sd = np.std([emb[t] for t in tasks.train], 0) + 1e-6
    z = {t: (e - mu) / sd for t, e in emb.items()}
    return lambda a, b: float(np.linalg.norm(z[a] - z[b]))


def kernel_weights(distance: Callable[[str, str], float], task: str, pool: list[str], tau: float) -> np.ndarray:
    d = np.array([distance(task, u) for u in pool])
    d = d / (np.median(d) + 1e-12)
    w = np.exp(-(d - d.min()) / tau)
    return w / w.max()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", type=Path, default=DEFAULT_DB, help="meta-database rows (jsonl)")
    p.add_argument("--descriptor", nargs="+", default=["encoder", "recipe"], choices=["encoder", "recipe"])
    p.add_argument("--taus", nargs="+", type=float, default=[0.1, 0.25, 0.5, 1.0, 2.0])
    p.add_argument("--n-per-class", type=int, default=5, help="images per class through the dataset encoder")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    rows = [json.loads(line) for line in open(args.db)]
    tasks = Tasks(rows)
    print(f"{args.db.name}: {len(tasks.train)} training tasks, {len(tasks.held)} held-out tasks; ridge on one-hot op tokens")

    def loo(weights_of: Callable[[str, list[str]], np.ndarray | None]) -> list[float]:
        out = []
        for t in tasks.train:
            pool = [u for u in tasks.train if u != t]
            out.append(task_spearman(tasks, fit(tasks, pool, weights_of(t, pool)), t))
        return out

    def held(weights_of: Callable[[str, list[str]], np.ndarray | None]) -> list[float]:
        return [task_spearman(tasks, fit(tasks, tasks.train, weights_of(t, tasks.train)), t) for t in tasks.held]

    base_loo, base_held = loo(lambda t, pool: None), held(lambda t, pool: None)
    print(f"uncond: leave-one-task-out {np.nanmean(base_loo):.3f}, held-out tasks {np.nanmean(base_held):.3f}")
    own = [own_rows_spearman(tasks, t) for t in tasks.train]
    print(f"reference, each training task from its own rows (5-fold over its archs, no other task): {np.nanmean(own):.3f}")
    for name in args.descriptor:
        distance = (encoder_distance(tasks, args.db, args.n_per_class, args.seed) if name == "encoder"
                    else recipe_distance(tasks))
        grid = {tau: loo(lambda t, pool, tau=tau: kernel_weights(distance, t, pool, tau)) for tau in args.taus}
        for tau, scores in grid.items():
            print(f"  {name} kernel tau={tau:g}: leave-one-task-out {np.nanmean(scores):.3f}")
        tau = max(grid, key=lambda k: np.nanmean(grid[k]))
        scores = held(lambda t, pool: kernel_weights(distance, t, pool, tau))
        print(f"{name} kernel, tau={tau:g} (chosen on the training tasks): leave-one-task-out "
              f"{np.nanmean(grid[tau]):.3f} (uncond {np.nanmean(base_loo):.3f}, better on "
              f"{int(np.nansum(np.array(grid[tau]) > np.array(base_loo)))} of {len(base_loo)}); "
              f"held-out tasks {np.nanmean(scores):.3f} (uncond {np.nanmean(base_held):.3f})")
        families: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for t, a, b in zip(tasks.train, grid[tau], base_loo):
            families[tasks.rows[t].get("family", "?")].append((a, b))
        print("    per family (kernel / uncond): " + ", ".join(
            f"{f} {np.nanmean([a for a, _ in v]):.2f}/{np.nanmean([b for _, b in v]):.2f}" for f, v in sorted(families.items())))


if __name__ == "__main__":
    main()
