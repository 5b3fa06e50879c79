"""The per-fold and per-family tables of a train_meta_predictor run, as docs/transfer_nas.md quotes them.

    python benchmarks/fold_table.py <run dir>                   # folds.csv (+ heldout_tasks.csv) of that run
    python benchmarks/fold_table.py <run dir> --db <db.jsonl>   # families from another database

Reads ``folds.csv`` (leave-task-out Spearman per training task) and, when present,
``heldout_tasks.csv`` (the database's held-out tasks, scored by the final networks), and prints
markdown: mean Spearman per fold and per task family for the meta-predictor, the unconditioned
network (a) and the cost baselines (b), and the per-task gap (meta - unconditioned: mean, its
standard error, and on how many tasks it is positive).
"""
from __future__ import annotations

import argparse
import csv
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from nag.io import read_jsonl

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DB = REPO / "nag" / "assets" / "meta_db" / "diverse_nb201.jsonl"
COLUMNS = ("meta", "unconditioned", "params", "flops")
HEADER = "| {} | tasks | meta-predictor | unconditioned (a) | params (b) | FLOPs (b) |"


def read_scores(path: Path) -> list[dict]:
    """Rows of a folds.csv / heldout_tasks.csv with the Spearman columns as floats (None where empty)."""
    with path.open() as f:
        return [{**r, **{c: float(r[c]) if r.get(c) not in (None, "") else None for c in COLUMNS}} for r in csv.DictReader(f)]


def mean(rows: list[dict], column: str) -> float:
    values = [r[column] for r in rows if r[column] is not None]
    return float(np.mean(values)) if values else math.nan


def table(rows: list[dict], key: str, label: str) -> list[str]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[str(r[key])].append(r)
    lines = [HEADER.format(label), "|---|---|---|---|---|---|"]
    for name in sorted(groups):
        lines.append(f"| {name} | {len(groups[name])} | " + " | ".join(f"{mean(groups[name], c):.2f}" for c in COLUMNS) + " |")
    lines.append(f"| all | {len(rows)} | " + " | ".join(f"{mean(rows, c):.2f}" for c in COLUMNS) + " |")
    return lines


def gap_line(rows: list[dict]) -> str:
    gaps = [r["meta"] - r["unconditioned"] for r in rows if r["meta"] is not None and r["unconditioned"] is not None]
    if not gaps:
        return "no task with both scores"
    se = float(np.std(gaps, ddof=1) / math.sqrt(len(gaps))) if len(gaps) > 1 else math.nan
    better = sum(g > 0 for g in gaps)
    return f"meta - unconditioned per task: mean {np.mean(gaps):+.3f} (SE {se:.3f}), better on {better} of {len(gaps)} tasks"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a train_meta_predictor run folder (folds.csv, heldout_tasks.csv)")
    parser.add_argument("--db", type=Path, default=DEFAULT_DB, help="the database the run read (for task families)")
    args = parser.parse_args(argv)
    family = {r["task"]: r.get("family", r.get("source", "?")) for r in read_jsonl(args.db)}
    for name, key, label in (("folds.csv", "fold", "fold"), ("heldout_tasks.csv", None, "held-out family")):
        path = args.run / name
        if not path.is_file():
            continue
        rows = [{**r, "family": family.get(r["task"], "?")} for r in read_scores(path)]
        print(f"## {name}\n")
        if key:
            print("\n".join(table(rows, key, label)) + "\n")
        print("\n".join(table(rows, "family", "family" if key else label)) + "\n")
        print(gap_line(rows) + "\n")


if __name__ == "__main__":
    main()
