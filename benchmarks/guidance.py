"""Does predictor guidance work on NAS-Bench-201? The must-show numbers of docs/guidance.md.

    python benchmarks/guidance.py [--csv PATH] [--prior PATH] [--n 256] [--n-labeled 1000]
        [--targets cifar10_test_acc=2.5 cifar100_test_acc=1.75] [--seeds 0 1 2]
        [--steps 100] [--fit-steps 1000] [--ensemble 3] [--constraint 0.5]
        [--multi-weights 4 5] [--no-multi] [--threads 1]

For each ``target=weight``: fit a noise-aware predictor on ``--n-labeled`` table archs (seed 0)
under the prior's SDE and print its Spearman on 2,000 held-out archs, clean and at t = 0.1 /
0.3 / 0.5; then, per seed, draw ``--n`` unguided and ``--n`` guided samples from the same prior
and solver (PC, ``--steps`` steps) and print their true-table scores: fraction in the true top
5% / 1%, mean and max true value, uniqueness, and sampling seconds. The last line per target is
the mean over seeds.

Multi-objective (unless ``--no-multi``): one predictor of CIFAR-10 accuracy and
params_M_cifar10, then unguided, accuracy-only and accuracy + params-constraint guidance
(``params_M_cifar10 <= --constraint``, weights ``--multi-weights``: accuracy, constraint);
prints the fraction satisfying the constraint, the mean accuracy of those that do, and the
fraction that are feasible and in the top 5% of the feasible table archs.

Everything reuses the parts experiment=guided_generation composes (table, predictor, GuideSpec, sampler, metrics); every figure is printed, nothing asserted.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from nag.diffusion.guidance import GuidedSampler, GuideSpec
from nag.diffusion.prior import load_prior
from nag.diffusion.sampling import timed_sample
from nag.metrics import constraint_scores, predictor_spearman, sample_scores
from nag.modules.predictor import fit_on_table
from nag.spaces import get_space
from nag.tables.table import load_benchmark

DEFAULT_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "nb201" / "nb201.csv"
ACC, PARAMS = "cifar10_test_acc", "params_M_cifar10"


def rounded(d: dict) -> dict:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in d.items()}


def emit(row: dict) -> None:
    print(json.dumps(rounded(row)), flush=True)


def mean_rows(rows: list[dict]) -> dict:
    """Mean of each numeric key over seeds, ignoring NaN (e.g. no feasible sample in one seed)."""
    keys = [k for k, v in rows[0].items() if isinstance(v, (int, float)) and k != "seed"]
    out = {}
    for k in keys:
        finite = [r[k] for r in rows if r[k] == r[k]]
        out[k] = statistics.fmean(finite) if finite else float("nan")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV, help="NB201 table (docs/benchmark_tables.md)")
    parser.add_argument("--prior", default=None, help="prior checkpoint (default: the shipped NB201 prior)")
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--n-labeled", type=int, default=1000)
    parser.add_argument("--n-heldout", type=int, default=2000)
    parser.add_argument("--targets", nargs="+", default=["cifar10_test_acc=2.5", "cifar100_test_acc=1.75"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=100, help="PC solver steps")
    parser.add_argument("--fit-steps", type=int, default=1000)
    parser.add_argument("--ensemble", type=int, default=3)
    parser.add_argument("--constraint", type=float, default=0.5, help="params_M_cifar10 <= this")
    parser.add_argument("--multi-weights", nargs=2, type=float, default=[4.0, 5.0], help="accuracy, constraint")
    parser.add_argument("--no-multi", action="store_true")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--scale", default="absolute", choices=("absolute", "standardized"),
                        help="guide units (docs/guidance.md); the figures recorded with this script use absolute weights")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    space = get_space("nb201")
    table = load_benchmark({"path": str(args.csv)}, space)
    prior = load_prior(args.prior, space)
    solver = {"name": "pc", "steps": args.steps}
    labeled, heldout = table.split(args.n_labeled, args.n_heldout, seed=0)
    held_archs = [table.archs[i] for i in heldout]
    fit_opts = {"steps": args.fit_steps, "ensemble": args.ensemble}
    print(f"# NB201, prior {args.prior or 'shipped'} ({prior.sde.config()}), solver {solver}, n={args.n}, "
          f"{len(labeled)} labeled archs, predictor {fit_opts}, threads {args.threads}", flush=True)

    def sample(guides, seed):
        sampler = GuidedSampler(prior, guides, solver=solver, batch_size=args.n)
        _, archs, sec = timed_sample(sampler, args.n, seed)
        return archs, sec

    for spec in args.targets:
        metric, _, weight = spec.partition("=")
        start = time.perf_counter()
        pred = fit_on_table(table, labeled, [metric], prior.sde.config(), seed=0, **fit_opts)
        fit_s = time.perf_counter() - start
        rho = {f"t={t}": predictor_spearman(pred, space, held_archs, table.values(metric)[heldout], metric, t)
               for t in (0.0, 0.1, 0.3, 0.5)}
        emit({"target": metric, "predictor_fit_s": fit_s, "spearman_heldout": rounded(rho)})
        guides = [GuideSpec(weight=float(weight), scale=args.scale).build(pred, metric)]
        per_mode: dict[str, list[dict]] = {"unguided": [], "guided": []}
        for seed in args.seeds:
            for mode, g in (("unguided", []), ("guided", guides)):
                archs, sec = sample(g, seed)
                row = {"target": metric, "mode": mode, "weight": float(weight) if g else 0.0, "seed": seed,
                       **sample_scores(archs, table, metric), "sample_s": sec}
                per_mode[mode].append(row)
                emit(row)
        for mode, rows in per_mode.items():
            emit({"target": metric, "mode": mode, "seeds": len(rows), "summary": "mean over seeds", **mean_rows(rows)})

    if args.no_multi:
        return
    start = time.perf_counter()
    pred = fit_on_table(table, labeled, [ACC, PARAMS], prior.sde.config(), seed=0, **fit_opts)
    fit_s = time.perf_counter() - start
    emit({"target": [ACC, PARAMS], "predictor_fit_s": fit_s,
          "spearman_heldout": {k: round(predictor_spearman(pred, space, held_archs, table.values(k)[heldout], k), 4)
                               for k in (ACC, PARAMS)}})
    w_acc, w_con = args.multi_weights
    constraint = [GuideSpec(metric=PARAMS, direction=None, weight=w_con, constraint=f"<={args.constraint}", scale=args.scale)]
    modes = {
        "unguided": [],
        f"accuracy only (w={w_acc})": [GuideSpec(weight=w_acc, scale=args.scale).build(pred, ACC)],
        f"accuracy (w={w_acc}) + params<={args.constraint} (w={w_con})": [
            GuideSpec(weight=w_acc, scale=args.scale).build(pred, ACC), *(c.build(pred) for c in constraint)],
    }
    for mode, guides in modes.items():
        rows = []
        for seed in args.seeds:
            archs, sec = sample(guides, seed)
            row = {"mode": mode, "seed": seed, **sample_scores(archs, table, ACC),
                   **constraint_scores(archs, table, ACC, constraint), "sample_s": sec}
            rows.append(row)
            emit(row)
        emit({"mode": mode, "seeds": len(rows), "summary": "mean over seeds", **mean_rows(rows)})


if __name__ == "__main__":
    main()
