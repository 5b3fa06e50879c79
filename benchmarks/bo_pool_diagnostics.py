"""Where BO loses queries on NAS-Bench-201: in the candidate pool, or in ranking it?

Runs BO presets to the table's optimum and, every model round, looks at the pool with the
table's true values (never shown to the search):
- pool has top:    share of rounds whose pool holds a true top-0.1% arch (per source too:
                   ``guided`` samples, ``mutation`` candidates),
- pick is top:     share of rounds whose query is one,
- best's position: where the surrogate's mean puts the pool's best arch (0 = first; median),
- pick rank:       true rank in the whole table of the queried arch (median; 0 = optimum),
- per source of the query (``guided``, ``mutation``, ``mutation_pool``): its share of the picks,
  how often it improves on the best so far, and its residual: the queried arch's true value in
  the surrogate's units (the target transform of the history plus it) minus the surrogate's mean
  (negative: the surrogate overrated it; the optimiser's curse).

    python benchmarks/bo_pool_diagnostics.py                           # bananas, diffusion_bo; C10; seeds 100-109
    python benchmarks/bo_pool_diagnostics.py --column cifar100_test_acc --seeds 20
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


def diagnose(table: Any, column: str, method: str, seed: int, cap: int,
             settings: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One search to the optimum; a row per model round."""
    from nag.evaluation import TableEvaluator
    from nag.search import build_method, run_search
    from nag.search.targets import transform_targets

    values = table.values(column)
    ranked = np.sort(values)[::-1]
    threshold = float(np.quantile(values, 1 - TOP_FRAC))
    rounds: list[dict[str, Any]] = []

    def on_pool(ctx: Any, pool: list, mean: np.ndarray, std: np.ndarray, scores: np.ndarray) -> None:
        true = np.array([table.query(a, column) for a in pool])
        sources = np.array([searcher.optimizer.source_of(a) for a in pool])
        best, pick = int(np.argmax(true)), int(np.argmax(scores))
        observed = np.array([q.value for q in ctx.history])
        in_units = transform_targets(searcher.target_transform, np.append(observed, true[pick]))[-1]
        rounds.append({
            "pick_source": str(sources[pick]),
            "pick_residual": float(in_units - mean[pick]),
            "pick_improves": bool(true[pick] > observed.max()),
            "n": ctx.n_queries,
            "has_top": bool(true[best] >= threshold),
            "has_top_by_source": {s: bool((true[sources == s] >= threshold).any()) for s in set(sources)},
            "pick_top": bool(true[pick] >= threshold),
            "best_position": int((mean > mean[best]).sum()),
            "pick_rank": int(np.searchsorted(-ranked, -true[pick], side="left")),
        })

    searcher = build_method(method, table.space, settings)
    searcher.on_pool = on_pool
    run_search(searcher, TableEvaluator(table, column), budget=cap, seed=seed, target=float(values.max()))
    return rounds


def summarise(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    sources = sorted({s for r in rounds for s in r["has_top_by_source"]})
    return {
        "rounds": len(rounds),
        "pool_has_top": float(np.mean([r["has_top"] for r in rounds])),
        **{f"{s}_has_top": float(np.mean([r["has_top_by_source"].get(s, False) for r in rounds])) for s in sources},
        "pick_is_top": float(np.mean([r["pick_top"] for r in rounds])),
        "best_position": float(np.median([r["best_position"] for r in rounds])),
        "pick_rank": float(np.median([r["pick_rank"] for r in rounds])),
        **{k: v for s in sorted({r["pick_source"] for r in rounds}) for k, v in by_pick_source(rounds, s).items()},
    }


def by_pick_source(rounds: list[dict[str, Any]], source: str) -> dict[str, float]:
    """Share of the picks from ``source``, how often they improve, their mean residual and its standard error."""
    mine = [r for r in rounds if r["pick_source"] == source]
    res = np.array([r["pick_residual"] for r in mine])
    return {
        f"{source}_picks": len(mine) / len(rounds),
        f"{source}_improves": float(np.mean([r["pick_improves"] for r in mine])),
        f"{source}_residual": float(res.mean()),
        f"{source}_residual_se": float(res.std() / np.sqrt(len(res))),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", nargs="?", default=str(DEFAULT_CSV))
    parser.add_argument("--methods", nargs="+", default=["bananas", "diffusion_bo"])
    parser.add_argument("--column", default="cifar10_test_acc")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=100)
    parser.add_argument("--cap", type=int, default=100, help="queries per search at most")
    parser.add_argument("--out", type=Path, default=None, help="also write the summary as JSON here")
    add_set_argument(parser)
    args = parser.parse_args(argv)
    overrides = parse_set(args.set, parser)

    import torch

    from nag.tables.table import BenchmarkTable
    from nag.spaces import get_space

    torch.set_num_threads(1)
    table = BenchmarkTable.from_csv(args.csv, get_space("nb201"))
    start = time.perf_counter()
    summary = {}
    for method in args.methods:
        rounds = []
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            rounds += diagnose(table, args.column, method, seed, args.cap, overrides.get(method))
        summary[method] = summarise(rounds)
    keys = list(dict.fromkeys(k for s in summary.values() for k in s))
    print(f"{args.column}, seeds {args.first_seed}-{args.first_seed + args.seeds - 1}, to the optimum (cap {args.cap}); "
          f"top = true top {TOP_FRAC:.1%}")
    width = max(map(len, keys)) + 2  # a row per figure, a column per method
    print(f"{'':<{width}}" + "".join(f"{method:>14}" for method in summary))
    for k in keys:
        print(f"{k:<{width}}" + "".join(f"{s[k]:>14.3g}" if k in s else f"{'-':>14}" for s in summary.values()))
    print(f"wall {time.perf_counter() - start:.0f}s")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"column": args.column, "seeds": args.seeds, "first_seed": args.first_seed,
                                        "cap": args.cap, "set": args.set, "summary": summary}, indent=2) + "\n")


if __name__ == "__main__":
    main()
