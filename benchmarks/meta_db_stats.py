"""What a meta-database says about its tasks: do architectures differ, and does the winner change?

    python benchmarks/meta_db_stats.py                                   # the shipped diverse database
    python benchmarks/meta_db_stats.py benchmarks/results/meta_db_depth/diverse_nb201_n1.jsonl

Per split (training tasks, held-out evaluation tasks), over each task's seed-averaged ``val_acc``:

- ``spread``: the standard deviation over the task's archs (median, min-max over tasks), and best
  minus worst (median);
- ``seed rho``: Spearman between two training seeds' rankings of the task's archs (median), the
  noise that bounds any predictor;
- over the archs every task shares (``meta_db.shared_archs``): how many distinct archs are best on
  some task, how often the most frequent winner wins, and the Spearman between two tasks'
  rankings (median, 10-90%).
"""
from __future__ import annotations

import argparse
import itertools
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from nag.io import read_jsonl
from nag.metrics import spearman

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DB = REPO / "nag" / "assets" / "meta_db" / "diverse_nb201.jsonl"


def task_tables(rows: list[dict]) -> dict[str, dict[str, dict[int, float]]]:
    """task -> arch -> {seed: val_acc}."""
    out: dict[str, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        out[r["task"]][r["arch"]][int(r.get("seed", 0))] = float(r["val_acc"])
    return out


def split_stats(tables: dict[str, dict[str, dict[int, float]]]) -> dict[str, float | int | str]:
    means = {t: {a: float(np.mean(list(s.values()))) for a, s in archs.items()} for t, archs in tables.items()}
    sd = [float(np.std(list(m.values()))) for m in means.values()]
    ranges = [max(m.values()) - min(m.values()) for m in means.values()]
    seed_rho = []
    for archs in tables.values():
        both = [s for s in archs.values() if 0 in s and 1 in s]
        value = spearman([s[0] for s in both], [s[1] for s in both]) if len(both) >= 3 else None
        if value is not None:
            seed_rho.append(value)
    shared = sorted(set.intersection(*(set(m) for m in means.values())))
    out: dict[str, float | int | str] = {
        "tasks": len(means),
        "spread_sd": f"{np.median(sd):.1f} ({min(sd):.1f}-{max(sd):.1f})",
        "best_minus_worst": f"{np.median(ranges):.1f}",
        "seed_rho": f"{np.median(seed_rho):.2f}" if seed_rho else "n/a",
        "shared_archs": len(shared),
    }
    if len(shared) >= 3:
        winners = Counter(max(shared, key=m.__getitem__) for m in means.values())
        between = [v for a, b in itertools.combinations(means.values(), 2)
                   if (v := spearman([a[x] for x in shared], [b[x] for x in shared])) is not None]
        out["distinct_winners"] = len(winners)
        out["top_winner_wins"] = f"{winners.most_common(1)[0][1]} of {len(means)}"
        out["between_tasks_rho"] = (f"{np.median(between):.2f} ({np.quantile(between, 0.1):.2f}..{np.quantile(between, 0.9):.2f})"
                                    if between else "n/a")
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("db", nargs="?", type=Path, default=DEFAULT_DB, help="meta-database rows (jsonl)")
    args = p.parse_args(argv)
    rows = read_jsonl(args.db)
    splits = {"training": [r for r in rows if not r.get("held_out")], "held-out": [r for r in rows if r.get("held_out")]}
    stats = {name: split_stats(task_tables(part)) for name, part in splits.items() if part}
    keys = list(dict.fromkeys(k for s in stats.values() for k in s))
    print(f"{args.db.name} ({len(rows)} rows)")
    print("| split | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for name, s in stats.items():
        print(f"| {name} | " + " | ".join(str(s.get(k, "")) for k in keys) + " |")


if __name__ == "__main__":
    main()
