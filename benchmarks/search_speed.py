"""Wall time of whole searches on NAS-Bench-201, with and without the search's caches, side by side.

Two caches make the BO rounds cheaper without changing a single query: ``SearchContext.canonical``
(each arch's isomorphism key computed once per search) and ``SearchSpace.mutate``'s neighbour
cache (BANANAS-style pools mutate the same ten parents hundreds of times a round). "uncached"
runs the same code with both switched off, as before they existed. The script checks that both
variants query exactly the same archs.

    python benchmarks/search_speed.py                          # bananas, diffusion_bo; 3 seeds; 60 queries
    python benchmarks/search_speed.py --methods evolution local --budget 200
"""
from __future__ import annotations

import argparse
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CSV = REPO.parent / "shared" / "data" / "nb201" / "nb201.csv"


@contextmanager
def uncached() -> Iterator[None]:
    """Both caches off: every lookup recomputes, as the code did before the caches."""
    from nag.search.loop import SearchContext
    from nag.spaces.base import SearchSpace

    saved = SearchContext.canonical, SearchSpace._cached_neighbours
    SearchContext.canonical = lambda self, arch: self.space.canonical(arch)
    SearchSpace._cached_neighbours = lambda self, arch: tuple(self.neighbours(arch))
    try:
        yield
    finally:
        SearchContext.canonical, SearchSpace._cached_neighbours = saved


def timed_search(table: Any, method: str, column: str, budget: int, seed: int) -> tuple[float, list]:
    from nag.evaluation import TableEvaluator
    from nag.search import build_method, run_search

    searcher = build_method(method, table.space)
    start = time.perf_counter()
    result = run_search(searcher, TableEvaluator(table, column), budget=budget, seed=seed)
    return time.perf_counter() - start, [q.arch for q in result.history]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", nargs="?", default=str(DEFAULT_CSV))
    parser.add_argument("--methods", nargs="+", default=["bananas", "diffusion_bo"])
    parser.add_argument("--column", default="cifar10_test_acc")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=100)
    parser.add_argument("--budget", type=int, default=60)
    args = parser.parse_args(argv)

    import torch

    from nag.tables.table import BenchmarkTable
    from nag.spaces import get_space

    torch.set_num_threads(1)
    table = BenchmarkTable.from_csv(args.csv, get_space("nb201"))
    print(f"{args.column}, {args.budget} queries, seeds {args.first_seed}..{args.first_seed + args.seeds - 1}, 1 thread")
    print(f"{'method':<14}{'uncached s':>11}{'cached s':>10}{'speed-up':>10}{'same queries':>14}")
    for method in args.methods:
        old, new, same = [], [], True
        for seed in range(args.first_seed, args.first_seed + args.seeds):  # alternate, so load drifts hit both
            with uncached():
                wall_old, queries_old = timed_search(table, method, args.column, args.budget, seed)
            wall_new, queries_new = timed_search(table, method, args.column, args.budget, seed)
            old.append(wall_old)
            new.append(wall_new)
            same &= queries_old == queries_new
        o, n = float(np.median(old)), float(np.median(new))
        print(f"{method:<14}{o:>11.2f}{n:>10.2f}{o / n:>9.2f}x{'yes' if same else 'NO':>14}")


if __name__ == "__main__":
    main()
