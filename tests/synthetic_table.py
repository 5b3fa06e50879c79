"""A synthetic benchmark table over the whole NB201 space, for tests of mechanics in a clean clone.

SYNTHETIC VALUES, NOT MEASUREMENTS. They exist so that the search stack, the evaluators, guided
generation and the benchmark scripts can be tested without the real table in ``../shared``;
tests of quality thresholds (a method beats another on NB201, a surrogate ranks the real
table) keep the real table.

Every one of the 15,625 cells gets, deterministically for a ``seed``:
  - ``cifar10_test_acc``, ``cifar100_test_acc`` (%): a smooth, saturating function of the ops on
    the cell's live edges (``space.normal_form``: ops behind a cut do not count), plus Gaussian
    noise; cells without a path from input to output sit at chance (10% / 1%), the broken tail
    of the real table;
  - ``latency_ms_pixel3``: a per-op cost summed over every edge (a cut op still runs), times
    log-normal noise;
  - ``params_M_cifar10``, ``flops_M_cifar10``: the exact costs, ``space.cost(arch)``.
The column names are the real table's, so configs and scripts read it unchanged.

    python tests/synthetic_table.py OUT.csv [--seed 0]
"""
from __future__ import annotations

import argparse
import csv
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

COLUMNS = ("cifar10_test_acc", "cifar100_test_acc", "params_M_cifar10", "flops_M_cifar10", "latency_ms_pixel3")
EDGE_WEIGHT = (1.0, 0.7, 0.9, 0.6, 0.8, 1.0)  # (1<-0), (2<-0), (2<-1), (3<-0), (3<-1), (3<-2)
GAIN = {  # per live edge, before the edge weight: cifar10, cifar100
    "none": (0.0, 0.0),
    "skip_connect": (0.7, 0.5),
    "nor_conv_1x1": (1.5, 1.3),
    "nor_conv_3x3": (2.2, 2.4),
    "avg_pool_3x3": (0.4, 0.2),
}
LATENCY_MS = {"none": 0.0, "skip_connect": 0.05, "nor_conv_1x1": 0.9, "nor_conv_3x3": 2.1, "avg_pool_3x3": 0.5}
CEILING = (94.6, 73.8)  # what a saturated score approaches (the real optima are 94.37 / 73.51)
CHANCE = (10.0, 1.0)


def _scores(live: Sequence[str]) -> tuple[float, float]:
    convs = sum(op in ("nor_conv_1x1", "nor_conv_3x3") for op in live)
    skips = sum(op == "skip_connect" for op in live)
    synergy = 0.25 * min(convs, 3) * min(skips, 1)  # a residual next to convolutions helps, as on NB201
    s10 = sum(w * GAIN[op][0] for w, op in zip(EDGE_WEIGHT, live)) + synergy
    s100 = sum(w * GAIN[op][1] for w, op in zip(EDGE_WEIGHT, live)) + synergy
    return s10, s100


def synthetic_rows(space, seed: int = 0) -> list[dict[str, float | str]]:
    """One row per arch of ``space.enumerate()`` (NB201), with the columns of the module docstring."""
    archs = space.enumerate()
    rng = np.random.default_rng(seed)
    noise10 = rng.normal(0.0, 0.3, len(archs))
    noise100 = rng.normal(0.0, 0.5, len(archs))
    chance = np.abs(rng.normal(0.0, 0.05, len(archs)))
    latency_noise = rng.lognormal(0.0, 0.05, len(archs))
    costs: dict[tuple[str, ...], dict[str, float]] = {}  # params and FLOPs depend on the op counts only
    rows = []
    for i, arch in enumerate(archs):
        live = space.normal_form(arch)
        if all(op == "none" for op in live):
            acc10, acc100 = CHANCE[0] + chance[i], CHANCE[1] + chance[i]
        else:
            s10, s100 = _scores(live)
            acc10 = CEILING[0] - (CEILING[0] - 40.0) * math.exp(-s10 / 2.2) + noise10[i]
            acc100 = CEILING[1] - (CEILING[1] - 15.0) * math.exp(-s100 / 2.4) + noise100[i]
        key = tuple(sorted(arch))
        cost = costs.get(key) or costs.setdefault(key, space.cost(arch))
        latency = (1.0 + sum(LATENCY_MS[op] for op in arch)) * latency_noise[i]
        rows.append({
            "idx": i,
            "arch": space.format(arch),
            "cifar10_test_acc": round(min(acc10, 100.0), 4),
            "cifar100_test_acc": round(min(acc100, 100.0), 4),
            "params_M_cifar10": round(cost["params_M"], 6),
            "flops_M_cifar10": round(cost["flops_M"], 6),
            "latency_ms_pixel3": round(latency, 4),
        })
    return rows


def write_csv(path: str | Path, space=None, seed: int = 0) -> Path:
    """Write the synthetic table to ``path`` (a CSV that ``BenchmarkTable.from_csv`` reads)."""
    if space is None:
        from nag.spaces import get_space

        space = get_space("nb201")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, ["idx", "arch", *COLUMNS], lineterminator="\n")
        writer.writeheader()
        writer.writerows(synthetic_rows(space, seed))
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the synthetic NB201 table (not real data) as a CSV.")
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(write_csv(args.out, seed=args.seed))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
