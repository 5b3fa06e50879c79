"""Cut the committed slices of the real benchmark tables (see README.md in this folder).

    python tests/data/cut_slices.py [--shared ../shared/data]

Deterministic: rerunning it on the same tables writes the same files.
"""
from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
NB201_ROWS = 50
OFA_ROWS = 20


def read(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def write(path: Path, header: list[str], rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def nb201_picks(rows: list[dict[str, str]]) -> list[int]:
    """Rows that parser and metric tests need: both optima, the fastest and the slowest cell,
    cells without a path (accuracy ~10%), whole isomorphism classes of 2 to 4 cells, then random."""
    acc10 = np.array([float(r["cifar10_test_acc"]) for r in rows])
    acc100 = np.array([float(r["cifar100_test_acc"]) for r in rows])
    lat = np.array([float(r["latency_ms_pixel3"]) for r in rows])
    picks = [int(acc10.argmax()), int(acc100.argmax()), int(lat.argmin()), int(lat.argmax())]
    rng = np.random.default_rng(0)
    broken = np.flatnonzero(acc10 < 20)
    picks += rng.choice(broken, 3, replace=False).tolist()
    classes = defaultdict(list)
    for i, r in enumerate(rows):
        classes[r["iso_key"]].append(i)
    groups = sorted((m for m in classes.values() if 2 <= len(m) <= 4), key=lambda m: m[0])
    for g in rng.permutation(len(groups)):
        if len(set(picks)) + len(groups[g]) > 35:
            break
        picks += groups[g]
    while len(set(picks)) < NB201_ROWS:
        picks.append(int(rng.integers(len(rows))))
    return sorted(set(picks))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=HERE.parents[2] / "shared" / "data")
    args = parser.parse_args(argv)
    header, rows = read(args.shared / "nb201" / "nb201.csv")
    write(HERE / "nb201_slice.csv", header, [rows[i] for i in nb201_picks(rows)])
    header, rows = read(args.shared / "ofa" / "ofa_mbv3_latency.csv")
    at224 = [r for r in rows if r["resolution"] == "224"][:4]
    write(HERE / "ofa_slice.csv", header, rows[: OFA_ROWS - len(at224)] + at224)


if __name__ == "__main__":
    main()
