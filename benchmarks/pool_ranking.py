"""How well BO surrogates rank real BO pools on NAS-Bench-201: the surrogate alone, no search noise.

Step 1 records snapshots: BO presets run on the table and, at the given numbers of queries,
the history (archs, values) and the round's candidate pool are saved (``snapshots.json`` in
``--out``; reused when present). Step 2 refits each surrogate variant on every snapshot's
history and ranks its pool. Printed per variant, mean over snapshots (true values from the
table, never shown to the surrogate):
- hit@1:   the variant's first choice is a true top-0.1% arch,
- hit@5:   one of its first five is,
- best_pos: position it gives the pool's best arch (0 = first; median),
- rho:      Spearman between its mean and the true values within the pool.

A variant is JSON: ``{"surrogate": name, "surrogate_params": {...}, "normal_form": bool, "target_transform": str}``.

    python benchmarks/pool_ranking.py                                   # the default variants
    python benchmarks/pool_ranking.py --variant boot='{"surrogate_params": {"bootstrap": true}}'
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from method_overrides import add_set_argument, parse_set

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CSV = REPO.parent / "shared" / "data" / "nb201" / "nb201.csv"
TOP_FRAC = 0.001
DEFAULT_VARIANTS: dict[str, dict[str, Any]] = {
    "preset": {},
    "normal_form": {"normal_form": True},
    "bootstrap": {"surrogate_params": {"bootstrap": True}},
    "steps300": {"surrogate_params": {"steps": 300}},
    "ensemble10": {"surrogate_params": {"ensemble": 10}},
    "hidden128": {"surrogate_params": {"hidden": 128}},
    "paths": {"surrogate_params": {"encoding": "paths"}},
}


def record(table: Any, column: str, method: str, seed: int, at: list[int],
           settings: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Snapshots of one search: at each query count in ``at``, the history and the round's pool."""
    from nag.evaluation import TableEvaluator
    from nag.search import build_method, run_search

    snaps: list[dict[str, Any]] = []

    def on_pool(ctx: Any, pool: list, mean: np.ndarray, std: np.ndarray, scores: np.ndarray) -> None:
        if ctx.n_queries in at:
            snaps.append({"method": method, "seed": seed, "n": ctx.n_queries,
                          "history": [[table.space.format(q.arch), q.value] for q in ctx.history],
                          "pool": [table.space.format(a) for a in pool]})

    searcher = build_method(method, table.space, settings)
    searcher.on_pool = on_pool
    run_search(searcher, TableEvaluator(table, column), budget=max(at) + 1, seed=seed)
    return snaps


def score(table: Any, column: str, snap: dict[str, Any], variant: dict[str, Any]) -> tuple[float, ...]:
    """(hit@1, hit@5, best_pos, rho) of ``variant`` on one snapshot."""
    from scipy.stats import spearmanr

    from nag.search.surrogate import fit_surrogate, predict_mean_std
    from nag.search.targets import transform_targets

    space = table.space
    view = space.normal_form if variant.get("normal_form") else (lambda a: a)
    archs = [view(space.parse(a)) for a, _ in snap["history"]]
    y = transform_targets(variant.get("target_transform", "rank_gauss"), np.array([v for _, v in snap["history"]]))
    pool = [space.parse(a) for a in snap["pool"]]
    sur = fit_surrogate(variant.get("surrogate", "fast"), space, archs, y, seed=snap["seed"],
                        **variant.get("surrogate_params", {}))
    mean, _ = predict_mean_std(sur, [view(a) for a in pool])
    true = np.array([table.query(a, column) for a in pool])
    top = true >= table.quantile_threshold(column, TOP_FRAC)
    order = np.argsort(-mean, kind="stable")
    best = int(np.argmax(true))
    return float(top[order[0]]), float(top[order[:5]].any()), float((mean > mean[best]).sum()), float(spearmanr(mean, true)[0])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", nargs="?", default=str(DEFAULT_CSV))
    parser.add_argument("--column", default="cifar10_test_acc")
    parser.add_argument("--methods", nargs="+", default=["bananas", "diffusion_bo"])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=100)
    parser.add_argument("--at", type=int, nargs="+", default=[15, 25, 40], help="query counts to snapshot at")
    parser.add_argument("--variant", nargs="*", default=[], metavar="NAME=JSON", help="variants to score (default: a fixed set)")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "pool_ranking")
    add_set_argument(parser)
    args = parser.parse_args(argv)
    overrides = parse_set(args.set, parser)

    import torch

    from nag.tables.table import BenchmarkTable
    from nag.io import atomic_write_text
    from nag.spaces import get_space

    torch.set_num_threads(1)
    table = BenchmarkTable.from_csv(args.csv, get_space("nb201"))
    variants = {k: json.loads(v) for k, _, v in (item.partition("=") for item in args.variant)} or DEFAULT_VARIANTS
    start = time.perf_counter()
    path = args.out / f"snapshots_{args.column}.json"
    key = {"methods": args.methods, "seeds": args.seeds, "first_seed": args.first_seed, "at": args.at, "set": args.set}
    cached = json.loads(path.read_text()) if path.is_file() else None
    if cached is not None and cached["key"] == key:
        snaps = cached["snapshots"]
    else:
        snaps = []
        for method in args.methods:
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                snaps += record(table, args.column, method, seed, args.at, overrides.get(method))
        args.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps({"key": key, "snapshots": snaps}))
    print(f"{len(snaps)} snapshots ({args.column}, seeds {args.first_seed}-{args.first_seed + args.seeds - 1}, "
          f"at {args.at} queries), recorded/loaded in {time.perf_counter() - start:.0f}s")
    w = max(14, 2 + max(map(len, variants)))  # variant column width
    print(f"{'variant':<{w}}{'pools of':<14}{'hit@1':>7}{'hit@5':>7}{'best_pos':>9}{'rho':>7}")
    for name, variant in variants.items():
        for method in args.methods:
            rows = np.array([score(table, args.column, s, variant) for s in snaps if s["method"] == method])
            print(f"{name:<{w}}{method:<14}{rows[:, 0].mean():>7.3f}{rows[:, 1].mean():>7.3f}"
                  f"{np.median(rows[:, 2]):>9.1f}{np.nanmean(rows[:, 3]):>7.3f}", flush=True)
    print(f"wall {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
