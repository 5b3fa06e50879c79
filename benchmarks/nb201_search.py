"""Search efficiency on NAS-Bench-201: queries each method needs to find the best cells.

For every method (the presets in ``experiments/method/``), column and seed, a search runs on the
table until it queries the column's global optimum (or spends ``--max-queries``). Printed and
written: median queries to the top 0.1% and to the optimum, and best-so-far vs queries
(mean and 95% CI over seeds) as a PNG plot and a CSV.

    python benchmarks/nb201_search.py                       # 20 seeds, all methods
    python benchmarks/nb201_search.py --quick               # 5 seeds
    python benchmarks/nb201_search.py --methods bananas evolution --seeds 10 --workers 2

Runs are appended to ``<out>/runs.jsonl`` as they finish; a rerun skips the runs already
there, so a killed benchmark resumes. ``diffusion_bo``/``prior_filter`` need a trained NB201
prior (``--prior``, default: the packaged one).

Warm-start methods (``WARM_METHODS``) run a preset with the other CIFAR column as the source
(C10 -> C100 when searching C100, C100 -> C10 when searching C10): ``*_warm`` with all its
15,625 rows, ``*_warm100`` with 100 of them drawn with the search's seed (docs/search.md,
"Warm start"). ``--set`` takes their names too (e.g. ``diffusion_bo_warm100.transfer_strength=10``).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
from method_overrides import add_set_argument, parse_set

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CSV = REPO.parent / "shared" / "data" / "nb201" / "nb201.csv"
COLUMNS = ("cifar10_test_acc", "cifar100_test_acc")
# warm-start method -> (preset, source rows: None = all)
WARM_METHODS = {"diffusion_bo_warm": ("diffusion_bo", None), "diffusion_bo_warm100": ("diffusion_bo", 100),
                "bananas_warm": ("bananas", None), "bananas_warm100": ("bananas", 100)}
SOURCE_COLUMN = {"cifar10_test_acc": "cifar100_test_acc", "cifar100_test_acc": "cifar10_test_acc"}
COLD_METHODS = ("random", "evolution", "local", "random_bo", "bananas", "exhaustive_bo", "prior_filter", "diffusion_bo")
ALL_METHODS = COLD_METHODS + tuple(WARM_METHODS)
CAPS = {"random": 15625}  # random search needs the whole space for the optimum; others stop earlier
DEFAULT_CAP = 300
CURVE_LEN = 200  # best-so-far curve up to this many queries
TOP_FRAC = 0.001

_TABLES: dict[str, Any] = {}


def _table(csv: str) -> Any:
    from nag.tables.table import BenchmarkTable
    from nag.spaces import get_space

    if csv not in _TABLES:
        _TABLES[csv] = BenchmarkTable.from_csv(csv, get_space("nb201"))
    return _TABLES[csv]


def run_one(csv: str, method: str, column: str, seed: int, cap: int, overrides: dict[str, Any]) -> dict[str, Any]:
    """One search; returns the run's row (values of every query in order)."""
    import torch

    from nag.evaluation import TableEvaluator
    from nag.search import build_method, run_search
    from nag.search.sources import load_sources

    torch.set_num_threads(1)
    table = _table(csv)
    values = table.values(column)
    settings = dict(overrides.get(method) or {})
    preset = method
    if method in WARM_METHODS:
        preset, max_rows = WARM_METHODS[method]
        settings["sources"] = load_sources({"metrics": [SOURCE_COLUMN[column]], "max_rows": max_rows},
                                           table.space, table, column, seed)
    searcher = build_method(preset, table.space, settings)
    searcher.name = method
    extra: dict[str, Any] = {}
    result = run_search(searcher, TableEvaluator(table, column), budget=cap, seed=seed, target=float(values.max()),
                        on_round=lambda ctx: extra.update(ctx.extra))
    row = {
        "method": method,
        "column": column,
        "seed": seed,
        "values": [q.value for q in result.history],
        "wall_s": result.wall_s,
    }
    if "sources" in extra:  # BO: which part of the acquisition optimiser proposed each queried arch
        row["sources"] = dict(extra["sources"])
    return row


def queries_to(values: list[float], threshold: float) -> float:
    for i, v in enumerate(values):
        if v >= threshold - 1e-9:
            return float(i + 1)
    return float("inf")


def summarise(rows: list[dict[str, Any]], csv: str, methods: list[str]) -> list[dict[str, Any]]:
    table = _table(csv)
    out = []
    for column in COLUMNS:
        vals = table.values(column)
        top, best = table.quantile_threshold(column, TOP_FRAC), float(vals.max())
        for method in methods:
            runs = [r for r in rows if r["method"] == method and r["column"] == column]
            if not runs:
                continue
            q_top = [queries_to(r["values"], top) for r in runs]
            q_opt = [queries_to(r["values"], best) for r in runs]
            out.append({
                "method": method, "column": column, "seeds": len(runs),
                "median_q_top0.1%": float(np.median(q_top)), "median_q_optimum": float(np.median(q_opt)),
                "found_optimum": sum(np.isfinite(q_opt)), "mean_wall_s": float(np.mean([r["wall_s"] for r in runs])),
                "guided_share": guided_share(runs),
            })
    return out


def paired(rows: list[dict[str, Any]], csv: str, a: str, b: str) -> list[dict[str, Any]]:
    """Seed-by-seed comparison of methods ``a`` and ``b`` (same seeds: same first random queries).

    Per column and target (top 0.1%, optimum): seeds where ``a`` needed fewer queries, more, the
    same, and the two-sided Wilcoxon signed-rank p-value (runs that missed count as the cap).
    """
    from scipy.stats import wilcoxon

    def needed(run: dict[str, Any], threshold: float) -> float:
        return min(queries_to(run["values"], threshold), len(run["values"]) + 1)

    table = _table(csv)
    out = []
    for column in COLUMNS:
        runs = {m: {r["seed"]: r for r in rows if r["method"] == m and r["column"] == column} for m in (a, b)}
        seeds = sorted(set(runs[a]) & set(runs[b]))
        if not seeds:
            continue
        targets = (("top0.1%", table.quantile_threshold(column, TOP_FRAC)), ("optimum", float(table.values(column).max())))
        for target, threshold in targets:
            qa, qb = (np.array([needed(runs[m][s], threshold) for s in seeds]) for m in (a, b))
            d = qa - qb
            p = float(wilcoxon(qa, qb).pvalue) if np.any(d != 0) else 1.0
            out.append({"column": column, "target": target, "seeds": len(seeds), "a_fewer": int((d < 0).sum()),
                        "b_fewer": int((d > 0).sum()), "ties": int((d == 0).sum()), "p": p})
    return out


def guided_share(runs: list[dict[str, Any]]) -> float | str:
    """Share of the BO-chosen queries (initial random ones excluded) that guided samples proposed;
    "" for methods without a guided pool."""
    counts: dict[str, int] = {}
    for r in runs:
        for source, n in r.get("sources", {}).items():
            counts[source] = counts.get(source, 0) + n
    total = sum(counts.values())
    return round(counts.get("guided", 0) / total, 3) if total and "guided" in counts else ""


def curves(rows: list[dict[str, Any]], column: str, method: str, best: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and 95% CI half-width of best-so-far over seeds. -> ([CURVE_LEN], [CURVE_LEN])."""
    runs = [r for r in rows if r["method"] == method and r["column"] == column]
    traj = np.full((len(runs), CURVE_LEN), np.nan)
    for i, r in enumerate(runs):
        run = np.maximum.accumulate(np.asarray(r["values"][:CURVE_LEN], dtype=float))
        traj[i, : len(run)] = run
        traj[i, len(run):] = run[-1] if run[-1] >= best - 1e-9 or len(r["values"]) >= CURVE_LEN else np.nan
    n = np.sum(np.isfinite(traj), axis=0)
    mean, ci = np.full(CURVE_LEN, np.nan), np.zeros(CURVE_LEN)  # NaN where no run got this far (a low cap)
    mean[n > 0] = np.nanmean(traj[:, n > 0], axis=0)
    ci[n > 1] = 1.96 * np.nanstd(traj[:, n > 1], axis=0, ddof=1) / np.sqrt(n[n > 1])
    return mean, ci


def write_outputs(rows: list[dict[str, Any]], summary: list[dict[str, Any]], csv: str, methods: list[str], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nag.io import atomic_write_text

    table = _table(csv)
    lines = ["method,column,queries,best_so_far_mean,best_so_far_ci95"]
    columns = [c for c in COLUMNS if any(r["column"] == c for r in rows)] or list(COLUMNS)  # a panel per column searched
    fig, axes = plt.subplots(1, len(columns), figsize=(6 * len(columns), 4.5))
    for ax, column in zip(np.atleast_1d(axes), columns):
        best = float(table.values(column).max())
        for method in methods:
            if not any(r["method"] == method and r["column"] == column for r in rows):
                continue
            mean, ci = curves(rows, column, method, best)
            x = np.arange(1, CURVE_LEN + 1)
            ax.plot(x, mean, label=method)
            ax.fill_between(x, mean - ci, mean + ci, alpha=0.2)
            lines += [f"{method},{column},{i + 1},{mean[i]:.4f},{ci[i]:.4f}" for i in range(CURVE_LEN)]
        ax.axhline(best, color="k", lw=0.8, ls="--")
        ax.set_ylim(best - 3.0, best + 0.3)
        ax.set_xscale("log")
        ax.set_xlabel("queries")
        ax.set_ylabel(f"best {column} (%)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = out / ".nb201_search.png.tmp"
    fig.savefig(tmp, format="png", dpi=120)
    os.replace(tmp, out / "nb201_search.png")
    atomic_write_text(out / "nb201_search_curves.csv", "\n".join(lines) + "\n")
    keys = list(summary[0]) if summary else []
    atomic_write_text(out / "nb201_search_summary.csv",
                      "\n".join([",".join(keys)] + [",".join(str(s[k]) for k in keys) for s in summary]) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", nargs="?", default=str(DEFAULT_CSV), help="NB201 table (default: %(default)s)")
    parser.add_argument("--methods", nargs="+", default=list(COLD_METHODS), choices=ALL_METHODS,
                        help="default: every cold method; warm starts: %(choices)s")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="5 seeds")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="seeds first-seed .. first-seed + seeds - 1 (tune on other seeds than you report)")
    parser.add_argument("--seed-list", type=int, nargs="+", default=None,
                        help="these seeds instead of a range (e.g. to pool several seed sets with --report)")
    parser.add_argument("--columns", nargs="+", default=list(COLUMNS), choices=COLUMNS)
    parser.add_argument("--max-queries", type=int, default=DEFAULT_CAP, help="cap for every method but random")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--report", action="store_true", help="only summarise the runs already in --out")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "nb201_search")
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"), default=None,
                        help="also print a seed-by-seed comparison of two methods (wins and Wilcoxon p)")
    add_set_argument(parser)
    args = parser.parse_args(argv)
    if args.compare and not set(args.compare) <= set(args.methods):
        parser.error(f"--compare {' '.join(args.compare)}: both methods must be in --methods ({' '.join(args.methods)})")
    seeds = 5 if args.quick else args.seeds
    overrides = parse_set(args.set, parser)

    from nag.io import append_jsonl, read_jsonl

    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "runs.jsonl"
    rows = [r for r in read_jsonl(log, missing_ok=True)]
    done = {(r["method"], r["column"], r["seed"]) for r in rows}
    # seed-major order: a benchmark stopped early still has comparable seeds for every method
    seed_range = args.seed_list or range(args.first_seed, args.first_seed + seeds)
    jobs = [(m, c, s) for s in seed_range for m in args.methods for c in args.columns if (m, c, s) not in done]
    if args.report:
        jobs = []
    print(f"{len(jobs)} runs to do ({len(done)} already in {log})", flush=True)
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        futures = {pool.submit(run_one, args.csv, m, c, s, CAPS.get(m, args.max_queries), overrides): (m, c, s)
                   for m, c, s in jobs}
        for i, fut in enumerate(as_completed(futures), 1):
            row = fut.result()
            append_jsonl(log, row)
            rows.append(row)
            print(f"[{i}/{len(jobs)}] {row['method']} {row['column']} seed {row['seed']}: "
                  f"{len(row['values'])} queries, {row['wall_s']:.1f}s", flush=True)
    wanted = [r for r in rows if r["method"] in args.methods and r["seed"] in seed_range and r["column"] in args.columns]
    summary = summarise(wanted, args.csv, args.methods)
    write_outputs(wanted, summary, args.csv, args.methods, args.out)
    print(f"\nNB201 search efficiency, median queries over {len(seed_range)} seeds (wall {time.perf_counter() - start:.0f}s)")
    width = max(14, *(len(m) + 2 for m in args.methods))
    print(f"{'method':<{width}}{'column':<20}{'top0.1%':>9}{'optimum':>9}{'found':>7}{'s/run':>8}{'guided':>8}")
    for s in summary:
        print(f"{s['method']:<{width}}{s['column']:<20}{s['median_q_top0.1%']:>9.1f}{s['median_q_optimum']:>9.1f}"
              f"{s['found_optimum']:>4}/{s['seeds']:<3}{s['mean_wall_s']:>7.1f}{s['guided_share']!s:>8}")
    if args.compare:
        a, b = args.compare
        print(f"\nseed by seed, {a} vs {b}: seeds where each needed fewer queries (Wilcoxon signed-rank p)")
        for c in paired(wanted, args.csv, a, b):
            print(f"{c['column']:<20}{c['target']:<9} {a} {c['a_fewer']:>3}  {b} {c['b_fewer']:>3}  "
                  f"ties {c['ties']:>3}  p={c['p']:.2g}  ({c['seeds']} seeds)")
    print(f"outputs: {args.out}/nb201_search.png, nb201_search_curves.csv, nb201_search_summary.csv")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
