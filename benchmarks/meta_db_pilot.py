"""Pilot for the meta-database's per-run training budget: at which budget do architectures differ?

    python benchmarks/meta_db_pilot.py                  # train what is missing, then print the table
    python benchmarks/meta_db_pilot.py --summary        # only print the table of the rows already there
    python benchmarks/meta_db_pilot.py --budgets s40 s120 --tasks 4 --archs 6   # a smaller grid

Trains NB201 cells (macro net C=8, N=1: the meta-database's size) on 8 training tasks of the
``diverse`` suite (never a held-out one), one task per family, at several budgets, with one
torch thread. The same archs on every task: the all-skip cell plus random cells of distinct
isomorphism classes. Two archs per task are trained again with another seed, to measure
seed noise. Every run is one fsynced row of ``--out`` (resumable: a rerun skips rows there).

The tasks are split in two halves: ``choose`` (to pick a budget) and ``check`` (to confirm it on
tasks that played no part in the choice). Per budget and half, the table gives:

- ``wall_s`` / ``cpu_s``: median per-run seconds (1 thread; wall depends on the machine's load);
- ``std`` / ``range``: spread of test accuracy over the archs of a task (mean over tasks);
- ``seed_sd``: test-accuracy std between two seeds of the same arch (the noise floor), and
  ``snr`` = std / seed_sd (how much of the spread is architecture, not seed);
- ``reliab``: the share of a task's accuracy variance over archs that is not seed noise
  (1 - seed_sd^2 / unbiased variance), i.e. the correlation of two seeds' rankings one expects;
- ``arch_sd`` / ``inter_sd``: the arch effect shared by all tasks, and the task-specific part
  (task x arch interaction), both with the seed noise taken out (a two-way decomposition of the
  task x arch accuracy table): what a dataset-conditioned predictor can add is ``inter_sd``;
- ``chance``: fraction of runs within 5 points of chance (100/K); ``dead`` cells (no path to
  the output) are always there, so their fraction is given too;
- ``rho``: mean pairwise Spearman between tasks' arch rankings (1 = the same ranking
  everywhere; ``rho_live``: without dead cells, which rank last everywhere);
- ``winners``: distinct best archs (by val acc) over the tasks; ``skip_wins``: tasks the all-skip
  cell wins.

Budgets: ``2ep`` = 2 epochs (the shipped digits database's budget, steps depend on the
training-set size); ``sN`` = N SGD steps on every task (batch 64, cosine lr from 0.05).
``suite_h`` fits ``cpu_s ~ a + b * steps * H * W + c * epochs`` on a budget's rows and sums it
over the suite's 50 training tasks x 30 archs, 2 runs in parallel: hours on 2 otherwise idle
cores (one thread per run, so CPU seconds are what its wall seconds would be without contention).
"""
from __future__ import annotations

import argparse
import itertools
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from nag.data.suites import get_suite
from nag.io import append_jsonl, read_jsonl
from nag.spaces import get_space
from nag.evaluation import train_eval

ALL_SKIP = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"
CHOOSE = ("digits-subsets", "digits-corrupt", "photo-regions", "shapes")
CHECK = ("digits-lowdata", "photo-corrupt", "shapes-corrupt", "photo-regions")  # photo-regions: its 3rd task
BATCH, LR = 64, 0.05
RESEEDED = (1, 2)  # arch indices trained again with seed 1


def pilot_tasks(n: int):
    """(half, spec): the first training task of each CHOOSE family, then of each CHECK family
    (the third photo-regions task, a 24 px one, so that the cost fit sees another resolution)."""
    suite = [s for s in get_suite("diverse") if not s.held_out]
    by_family: dict[str, list] = {}
    for s in suite:
        by_family.setdefault(s.family, []).append(s)
    out = [("choose", by_family[f][0]) for f in CHOOSE]
    out += [("check", by_family[f][2 if f == "photo-regions" else 0]) for f in CHECK]
    order = [x for pair in itertools.zip_longest(out[:4], out[4:]) for x in pair if x]  # a prefix keeps both halves
    return order[:n], suite


def pilot_archs(space, n: int, seed: int) -> list:
    from nag.experiments import distinct_sample

    skip = space.parse(ALL_SKIP)
    rest = [a for a in distinct_sample(space, n, seed) if space.canonical(a) != space.canonical(skip)]
    return [skip] + rest[: n - 1]


def budget_of(name: str, n_train: int) -> dict:
    if name.endswith("ep"):
        return {"epochs": int(name[:-2]), "batch_size": BATCH, "lr": LR}
    steps = int(name.lstrip("s"))
    per_epoch = math.ceil(n_train / BATCH)
    return {"epochs": math.ceil(steps / per_epoch), "max_steps": steps, "batch_size": BATCH, "lr": LR}


def run(args) -> None:
    space = get_space("nb201", C=args.C, N=args.N)
    tasks, _ = pilot_tasks(args.tasks)
    archs = pilot_archs(space, args.archs, args.seed)
    done = {(r["budget"], r["task"], r["arch"], r["seed"]) for r in read_jsonl(args.out, missing_ok=True)}
    todo = []
    for half, spec in tasks:
        for b in args.budgets:
            for i, arch in enumerate(archs):
                for seed in (0, 1) if i in RESEEDED else (0,):
                    if (b, spec.id, space.format(arch), seed) not in done:
                        todo.append((half, spec, b, arch, seed))
    print(f"{len(todo)} runs to do ({len(done)} done) -> {args.out}", flush=True)
    task, task_id = None, None
    for k, (half, spec, b, arch, seed) in enumerate(todo):
        if spec.id != task_id:
            task, task_id = spec.build(), spec.id
        budget = budget_of(b, len(task.train))
        cpu = time.process_time()
        m = train_eval(space, arch, task, budget, seed=seed, num_threads=1)
        row = {
            "budget": b, "task": spec.id, "half": half, "family": spec.family, "arch": space.format(arch),
            "seed": seed, "num_classes": task.num_classes, "hw": task.input_shape[1] * task.input_shape[2],
            "n_train": len(task.train), "steps": m["steps"], "val_acc": m["val_acc"], "test_acc": m["test_acc"],
            "wall_s": m["wall_s"], "cpu_s": time.process_time() - cpu,
            "dead": all(op == "none" for op in space.normal_form(arch)),
        }
        append_jsonl(args.out, row)
        print(f"[{k + 1}/{len(todo)}] {b:>4} {spec.id[:48]:48} test {row['test_acc']:5.1f} wall {row['wall_s']:5.1f}s", flush=True)


def unique_runs(rows: list[dict]) -> list[dict]:
    """The first row of every (budget, task, arch, seed): two writers of one file (a rerun while
    an earlier run was still going) train the same deterministic runs twice."""
    seen: dict[tuple, dict] = {}
    for r in rows:
        seen.setdefault((r["budget"], r["task"], r["arch"], r["seed"]), r)
    return list(seen.values())


def summarise(rows: list[dict], halves=("choose", "check", "all")) -> list[dict]:
    rows = unique_runs(rows)
    out = []
    for b in dict.fromkeys(r["budget"] for r in rows):
        for half in halves:
            sel = [r for r in rows if r["budget"] == b and (half == "all" or r["half"] == half)]
            main = [r for r in sel if r["seed"] == 0]
            tasks = list(dict.fromkeys(r["task"] for r in main))
            if not tasks:
                continue
            per_task = {t: {r["arch"]: r for r in main if r["task"] == t} for t in tasks}
            accs = {t: {a: r["test_acc"] for a, r in d.items()} for t, d in per_task.items()}
            common = sorted(set.intersection(*(set(d) for d in accs.values())))
            live = [a for a in common if not per_task[tasks[0]][a]["dead"]]

            def mean_rho(names: list[str]) -> float:
                rhos = [spearmanr([accs[t1][a] for a in names], [accs[t2][a] for a in names]).statistic
                        for t1, t2 in itertools.combinations(tasks, 2)]
                rhos = [r for r in rhos if np.isfinite(r)]
                return float(np.mean(rhos)) if rhos else float("nan")

            seed_diffs = []
            for r in sel:
                if r["seed"] == 1:
                    base = per_task[r["task"]].get(r["arch"])
                    if base is not None:
                        seed_diffs.append(abs(r["test_acc"] - base["test_acc"]) / math.sqrt(2))
            winners = [max(d.values(), key=lambda r: r["val_acc"])["arch"] for d in per_task.values()]
            noise = float(np.mean(np.square(seed_diffs))) if seed_diffs else float("nan")
            table = np.array([[accs[t][a] for a in common] for t in tasks])
            centred = table - table.mean(axis=1, keepdims=True)
            within = float(centred.var(axis=1, ddof=1).mean()) if len(common) > 1 else float("nan")
            shared = centred.mean(axis=0)
            n_t, n_a = table.shape
            inter = float(((centred - shared) ** 2).sum()) / max(1, (n_t - 1) * (n_a - 1)) if n_t > 1 else float("nan")
            out.append({
                "budget": b, "half": half, "tasks": len(tasks), "archs": len(common),
                "wall_s": statistics.median(r["wall_s"] for r in sel),
                "cpu_s": statistics.median(r["cpu_s"] for r in sel),
                "std": float(np.mean([np.std(list(a.values())) for a in accs.values()])),
                "range": float(np.mean([max(a.values()) - min(a.values()) for a in accs.values()])),
                "seed_sd": float(np.sqrt(np.mean(np.square(seed_diffs)))) if seed_diffs else float("nan"),
                "snr": float("nan"),
                "reliab": 1 - noise / within if within > 0 else float("nan"),
                "arch_sd": math.sqrt(max(0.0, shared.var(ddof=1) - noise / n_t)) if n_t > 1 and n_a > 1 else float("nan"),
                "inter_sd": math.sqrt(max(0.0, inter - noise)) if n_t > 1 else float("nan"),
                "chance": float(np.mean([r["test_acc"] <= 100 / r["num_classes"] + 5 for r in main])),
                "dead": float(np.mean([r["dead"] for r in main])),
                "rho": mean_rho(common) if len(tasks) > 1 else float("nan"),
                "rho_live": mean_rho(live) if len(tasks) > 1 else float("nan"),
                "winners": len(set(winners)),
                "skip_wins": sum(w == ALL_SKIP for w in winners),
            })
    for t in out:
        t["snr"] = t["std"] / t["seed_sd"] if t["seed_sd"] > 0 else float("nan")
    return out


def suite_hours(rows: list[dict], suite, budget: str, archs: int = 30, parallel: int = 2) -> float:
    """Hours for ``archs`` archs on every training task of ``suite`` at ``budget``, from a fit of
    cpu_s ~ a + b * steps * H * W + c * epochs on this budget's rows (each epoch ends with a
    validation pass and Lightning's loop overhead, which dominate on tiny training sets)."""
    sel = [r for r in unique_runs(rows) if r["budget"] == budget]
    if len(sel) < 4:
        return float("nan")

    def features(steps: float, hw: int, n_train: int) -> list[float]:
        return [1.0, steps * hw, budget_of(budget, n_train)["epochs"]]

    x = np.array([features(r["steps"], r["hw"], r["n_train"]) for r in sel])
    coef = np.linalg.lstsq(x, np.array([r["cpu_s"] for r in sel]), rcond=None)[0]
    total = 0.0
    for spec in suite:
        task = spec.build()
        b = budget_of(budget, len(task.train))
        steps = b.get("max_steps") or b["epochs"] * math.ceil(len(task.train) / BATCH)
        total += archs * float(np.dot(coef, features(steps, task.input_shape[1] * task.input_shape[2], len(task.train))))
    return total / parallel / 3600


def print_table(rows: list[dict], suite) -> None:
    table = summarise(rows)
    cols = ["budget", "half", "tasks", "archs", "wall_s", "cpu_s", "std", "range", "seed_sd", "snr", "reliab", "arch_sd",
            "inter_sd", "chance", "dead",
            "rho", "rho_live", "winners", "skip_wins"]
    print("| " + " | ".join(cols) + " | suite_h |")
    print("|" + "---|" * (len(cols) + 1))
    for t in table:
        cells = [f"{t[c]:.2f}" if isinstance(t[c], float) else str(t[c]) for c in cols]
        hours = suite_hours(rows, suite, t["budget"]) if t["half"] == "all" else float("nan")
        print("| " + " | ".join(cells) + f" | {hours:.1f} |" if np.isfinite(hours) else "| " + " | ".join(cells) + " |  |")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/meta_db_pilot/runs.jsonl"))
    p.add_argument("--budgets", nargs="+", default=["2ep", "s40", "s120", "s300"])
    p.add_argument("--tasks", type=int, default=8)
    p.add_argument("--archs", type=int, default=12)
    p.add_argument("--C", type=int, default=8)
    p.add_argument("--N", type=int, default=1)
    p.add_argument("--seed", type=int, default=0, help="seed of the random archs")
    p.add_argument("--summary", action="store_true", help="print the table of the rows there, train nothing")
    args = p.parse_args(argv)
    if not args.summary:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        run(args)
    rows = read_jsonl(args.out, missing_ok=True)
    if not rows:
        sys.exit(f"no rows in {args.out}")
    _, suite = pilot_tasks(args.tasks)
    print_table(rows, suite)


if __name__ == "__main__":
    main()
