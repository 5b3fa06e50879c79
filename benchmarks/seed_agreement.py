"""How much of a task's architecture ranking is seed noise, in one or more meta-database row files.

    python benchmarks/seed_agreement.py benchmarks/results/meta_db_depth/diverse_nb201_n1.jsonl benchmarks/results/meta_db_budget/steps200_5tasks.jsonl

For each task present in every file, with the (arch) pairs trained with two seeds in every file:
the Spearman correlation between the two seeds' rankings of the task's archs (how well a task can
be ranked at all: no predictor does much better than a second seed), and the standard deviation
of the two-seed mean accuracy over the archs (how much the archs differ). With two files, also the
Spearman between the files' two-seed means (does a longer budget keep the ranking?).

Then, per file, one summary line over every task (``--common-tasks``: over the tasks every file
has): the mean Spearman between two seeds' rankings (over all seed pairs), and what it implies for
the mean over the k seeds the rows have (Spearman-Brown: k r / (1 + (k - 1) r), the share of that
mean's rank variance that is not seed noise; a predictor that knew the true ranking would reach
about its square root); and the mean Spearman between two tasks' seed-mean rankings of the archs
they all share (``meta_db.shared_archs``): 1 = one ranking for every task, which a predictor
without the task condition already knows; near 0 = the winners depend on the task.

    python benchmarks/seed_agreement.py --common-tasks benchmarks/results/meta_db_depth/diverse_nb201_n1.jsonl \
        benchmarks/results/meta_db_depth/n3_s40.jsonl        # a deeper macro network on the same tasks
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from nag.metrics import spearman


def load(path: Path) -> dict[tuple[str, str], dict[int, float]]:
    """(task, arch) -> {seed: val_acc}."""
    rows: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            rows[(r["task"], r["arch"])][int(r["seed"])] = float(r["val_acc"])
    return rows


def rho(a: list[float], b: list[float]) -> str:
    """Spearman of a and b, or n/a where it is undefined (every arch scored the same)."""
    value = spearman(a, b)
    return "n/a" if value is None else f"{value:+.2f}"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", type=Path, help="meta-database row files (jsonl)")
    p.add_argument("--min-archs", type=int, default=8, help="skip tasks with fewer two-seed archs in common")
    p.add_argument("--common-tasks", action="store_true", help="summary lines over the tasks every file has")
    args = p.parse_args(argv)
    dbs = [load(f) for f in args.files]
    if args.common_tasks:
        shared_tasks = set.intersection(*({t for t, _ in db} for db in dbs))
        dbs = [{k: v for k, v in db.items() if k[0] in shared_tasks} for db in dbs]
    common = set.intersection(*({k for k, v in db.items() if len(v) >= 2} for db in dbs))
    tasks = sorted({t for t, _ in common})
    print("task | archs | " + " | ".join(f"seed rho / std [{f.name}]" for f in args.files)
          + (" | rho between files" if len(dbs) == 2 else ""))
    for t in tasks:
        keys = sorted(k for k in common if k[0] == t)
        if len(keys) < args.min_archs:
            continue
        cells, means = [], []
        for db in dbs:
            a = [db[k][sorted(db[k])[0]] for k in keys]
            b = [db[k][sorted(db[k])[1]] for k in keys]
            mean = list((np.array(a) + np.array(b)) / 2)
            means.append(mean)
            cells.append(f"{rho(a, b)} / {np.std(mean):.2f}")
        across = f" | {rho(means[0], means[1])}" if len(dbs) == 2 else ""
        print(f"{t} | {len(keys)} | " + " | ".join(cells) + across)
    for path, db in zip(args.files, dbs):
        r, k = pairwise_agreement(db, args.min_archs)
        if k >= 2:
            reliability = f"{k * r / (1 + (k - 1) * r):.2f}" if r > 0 else "0 (the seeds disagree)"
            n_tasks = len({t for t, _ in db})
            print(f"{path.name}: {n_tasks} tasks; seed pairs agree at Spearman {r:+.3f} (mean over tasks and pairs); "
                  f"with {k} seeds per row the seed mean's reliability is {reliability}")
        between, n_archs = between_tasks(db)
        if n_archs:
            print(f"{path.name}: two tasks' rankings of their {n_archs} shared archs agree at Spearman {between:+.3f}")


def between_tasks(db: dict[tuple[str, str], dict[int, float]]) -> tuple[float, int]:
    """(mean Spearman between two tasks' seed-mean rankings over the archs every task has; how many
    archs that is). (nan, 0) with fewer than 2 tasks or 3 such archs."""
    by_task: dict[str, dict[str, float]] = defaultdict(dict)
    for (task, arch), seeds in db.items():
        by_task[task][arch] = float(np.mean(list(seeds.values())))
    shared = sorted(set.intersection(*(set(a) for a in by_task.values()))) if by_task else []
    if len(by_task) < 2 or len(shared) < 3:
        return float("nan"), 0
    ranks = [[archs[a] for a in shared] for archs in by_task.values()]
    values = [v for i, a in enumerate(ranks) for b in ranks[i + 1:] if (v := spearman(a, b)) is not None]
    return (float(np.mean(values)) if values else float("nan")), len(shared)


def pairwise_agreement(db: dict[tuple[str, str], dict[int, float]], min_archs: int) -> tuple[float, int]:
    """(mean Spearman between two seeds' rankings of a task, over tasks and seed pairs; the most
    seeds any task has on every one of at least ``min_archs`` archs)."""
    by_task: dict[str, dict[str, dict[int, float]]] = defaultdict(dict)
    for (task, arch), seeds in db.items():
        by_task[task][arch] = seeds
    values, most = [], 0
    for archs in by_task.values():
        seeds = sorted(set.intersection(*(set(v) for v in archs.values())))
        if len(archs) < min_archs or len(seeds) < 2:
            continue
        most = max(most, len(seeds))
        for i, a in enumerate(seeds):
            for b in seeds[i + 1:]:
                value = spearman([v[a] for v in archs.values()], [v[b] for v in archs.values()])
                if value is not None:
                    values.append(value)
    return (float(np.mean(values)) if values else float("nan")), most


if __name__ == "__main__":
    main()
