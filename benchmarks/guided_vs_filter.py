"""Guided generation vs sample-then-filter: time to find 10 unique archs in the TRUE top 1%.

    python benchmarks/guided_vs_filter.py [--csv PATH] [--prior PATH] [--metric cifar10_test_acc]
        [--weight 2.5] [--want 10] [--top 0.01] [--batch 64] [--k 16] [--seeds 0 1 2]
        [--solver ode|pc] [--steps 15] [--fit-steps 1000] [--ensemble 3] [--max-batches 200] [--threads 1]

One prior and one noise-aware predictor (fit once on 1,000 labeled table archs; its fit time is
printed and charged to neither side). Each method repeats rounds of: draw a batch of ``--batch``
samples, drop archs it has already evaluated, optionally keep only the ``--k`` the clean
predictor ranks highest, and "evaluate" those by table lookup; it stops when ``--want`` unique
evaluated archs reach the table's true top ``--top`` threshold. Methods:

  - ``guided``:            guided batches, every new unique arch evaluated (no filter);
  - ``guided+filter``:     guided batches, top ``k`` by predictor evaluated;
  - ``unguided+filter``:   unguided batches from the same prior, top ``k`` by predictor evaluated
                           (sample-then-filter);
  - ``unguided``:          unguided batches, every new unique arch evaluated (plain sampling).

Wall time counts sampling + predictor ranking (table lookups are free here; in real NAS each
evaluation is a training run, so the number of evaluations is printed too). A method that has
not succeeded after ``--max-batches`` batches is reported with ``found < want``. Per seed and
the median over seeds; the ratios are sample-then-filter over guided, in time and in
evaluations.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from nag.diffusion.guidance import GuidedSampler, GuideSpec
from nag.diffusion.prior import load_prior
from nag.modules.predictor import fit_on_table
from nag.spaces import get_space
from nag.tables.table import BenchmarkTable, load_benchmark

DEFAULT_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "nb201" / "nb201.csv"


def search_until(
    sampler: GuidedSampler,
    predictor: Any,
    table: BenchmarkTable,
    metric: str,
    threshold: float,
    want: int,
    batch: int,
    k: int | None,
    max_batches: int,
    seed: int,
) -> dict[str, float]:
    """Sample batches (optionally filtered to the predicted top ``k``) until ``want`` hits are evaluated."""
    col = predictor.target_index(metric)
    evaluated: set = set()
    hits: set = set()
    sample_s = predict_s = 0.0
    n_samples = batches = 0
    for i in range(max_batches):
        start = time.perf_counter()
        archs = sampler.sample(batch, seed=seed * 100_003 + i)
        sample_s += time.perf_counter() - start
        n_samples += len(archs)
        batches += 1
        new = [a for a in dict.fromkeys(archs) if a not in evaluated]
        if k is not None and len(new) > k:
            start = time.perf_counter()
            mean, _ = predictor.predict_archs(new)
            order = torch.argsort(mean[:, col], descending=True)[:k].tolist()
            new = [new[j] for j in order]
            predict_s += time.perf_counter() - start
        for a in new:
            evaluated.add(a)
            if table.query(a, metric) >= threshold:
                hits.add(a)
        if len(hits) >= want:
            break
    return {
        "found": len(hits),
        "wall_s": sample_s + predict_s,
        "sample_s": sample_s,
        "predict_s": predict_s,
        "batches": batches,
        "samples": n_samples,
        "evaluations": len(evaluated),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--prior", default=None, help="prior checkpoint (default: the shipped NB201 prior)")
    parser.add_argument("--metric", default="cifar10_test_acc")
    parser.add_argument("--weight", type=float, default=2.5, help="guidance weight (docs/guidance.md)")
    parser.add_argument("--scale", default="absolute", choices=("absolute", "standardized"),
                        help="guide units (docs/guidance.md); the figures recorded with this script use absolute weights")
    parser.add_argument("--want", type=int, default=10)
    parser.add_argument("--top", type=float, default=0.01)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--k", type=int, default=16, help="evaluations per batch of the filtered methods")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--solver", default="ode", choices=["pc", "ode"], help="solver of both samplers")
    parser.add_argument("--steps", type=int, default=15, help="solver steps (ode: Heun, 2 score calls a step)")
    parser.add_argument("--fit-steps", type=int, default=1000)
    parser.add_argument("--ensemble", type=int, default=3)
    parser.add_argument("--n-labeled", type=int, default=1000)
    parser.add_argument("--max-batches", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    space = get_space("nb201")
    table = load_benchmark({"path": str(args.csv)}, space)
    prior = load_prior(args.prior, space)
    threshold = table.quantile_threshold(args.metric, args.top)
    labeled, _ = table.split(args.n_labeled, 0, seed=0)
    start = time.perf_counter()
    pred = fit_on_table(table, labeled, [args.metric], prior.sde.config(), seed=0, steps=args.fit_steps,
                        ensemble=args.ensemble)
    fit_s = time.perf_counter() - start
    solver = {"name": args.solver, "steps": args.steps}
    print(f"# NB201 {args.metric}: find {args.want} unique archs >= {threshold:.4f} (true top {args.top:.0%}, "
          f"{sum(table.values(args.metric) >= threshold)} archs); batch {args.batch}, k {args.k}, solver {solver}, "
          f"guidance weight {args.weight}, threads {args.threads}; predictor fit {fit_s:.1f}s (shared, not counted)",
          flush=True)

    guided = GuidedSampler(prior, [GuideSpec(weight=args.weight, scale=args.scale).build(pred, args.metric)], solver=solver,
                           batch_size=args.batch)
    unguided = GuidedSampler(prior, (), solver=solver, batch_size=args.batch)
    methods = {
        "guided": (guided, None),
        "guided+filter": (guided, args.k),
        "unguided+filter": (unguided, args.k),
        "unguided": (unguided, None),
    }
    for sampler in (guided, unguided):  # warm-up: first calls pay one-off costs that no method should carry
        sampler.sample(args.batch, seed=999_999)
    results: dict[str, list[dict]] = {m: [] for m in methods}
    for seed in args.seeds:
        for name, (sampler, k) in methods.items():
            row = search_until(sampler, pred, table, args.metric, threshold, args.want, args.batch, k,
                               args.max_batches, seed)
            results[name].append(row)
            print(json.dumps({"method": name, "seed": seed, **{k2: round(v, 2) for k2, v in row.items()}}), flush=True)

    med = {m: {k: statistics.median(r[k] for r in rows) for k in rows[0]} for m, rows in results.items()}
    for m, row in med.items():
        print(json.dumps({"method": m, "summary": f"median over {len(args.seeds)} seeds",
                          **{k: round(v, 2) for k, v in row.items()}}))
    for base in ("unguided+filter", "unguided"):
        for m in ("guided", "guided+filter"):
            print(json.dumps({"speedup": f"{base} / {m}",
                              "time_ratio": round(med[base]["wall_s"] / med[m]["wall_s"], 2),
                              "evaluations_ratio": round(med[base]["evaluations"] / med[m]["evaluations"], 2)}))


if __name__ == "__main__":
    main()
