"""Noise-aware predictor quality and cost on NAS-Bench-201.

    python benchmarks/predictor.py [--csv PATH] [--targets cifar10_test_acc cifar100_test_acc]
        [--n-train 1000] [--n-test 2000] [--steps 1000] [--ensemble 1] [--hidden 64]
        [--clean-baseline] [--multi] [--threads 1] [--seed 0]

For each target: fit a noise-aware predictor (VE SDE, sigma 0.1 -> 5) on ``--n-train`` random
archs, then print the Spearman rank correlation on ``--n-test`` other archs, clean (t = 0) and on
states perturbed with the SDE at t in {0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0} (one noise draw per arch,
shared by all rows), plus the fit wall time. ``--clean-baseline`` also fits a clean-only
predictor (noise_aware=False) for comparison; ``--multi`` fits accuracy, params and a latency in
one multi-output predictor. Last, the cost of one guidance evaluation (forward + grad_x on a
batch of 256 noisy states). Every figure is printed; nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from nag.tables.table import BenchmarkTable
from nag.diffusion.sde import build_sde, perturb
from nag.modules.arch_data import to_state
from nag.modules.predictor import DEFAULT_NET, Predictor, fit_predictor
from nag.spaces import get_space

VE = {"name": "ve", "sigma_min": 0.1, "sigma_max": 5.0}
TIMES = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
DEFAULT_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "nb201" / "nb201.csv"


def noisy_states(x0: torch.Tensor, seed: int) -> dict[float, torch.Tensor]:
    """x0 perturbed by the VE SDE at each t in TIMES (t = 0: clean)."""
    sde = build_sde(VE)
    g = torch.Generator().manual_seed(seed)
    out = {}
    for t in TIMES:
        tt = torch.full((x0.shape[0],), t)
        out[t] = x0 if t == 0 else perturb(sde, x0, tt, generator=g)[0]
    return out


def spearman_by_t(pred: Predictor, states: dict[float, torch.Tensor], truth: np.ndarray, col: int) -> dict[str, float]:
    res = {}
    with torch.no_grad():
        for t, x in states.items():
            mean = pred(x, torch.full((x.shape[0],), t))[:, col].numpy()
            res[f"t={t}"] = round(float(spearmanr(mean, truth).statistic), 4)
    return res


def guidance_cost_ms(pred: Predictor, space, repeats: int = 20) -> float:
    x = torch.randn(256, space.num_nodes, space.num_ops, requires_grad=True)
    t = torch.rand(256)
    for _ in range(3):
        torch.autograd.grad(pred(x, t).sum(), x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.autograd.grad(pred(x, t).sum(), x)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV, help="NB201 table (docs/benchmark_tables.md)")
    parser.add_argument("--targets", nargs="+", default=["cifar10_test_acc", "cifar100_test_acc"])
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--n-test", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--ensemble", type=int, default=1)
    parser.add_argument("--hidden", type=int, default=DEFAULT_NET["hidden"])
    parser.add_argument("--layers", type=int, default=DEFAULT_NET["layers"])
    parser.add_argument("--clean-baseline", action="store_true", help="also fit a clean-only predictor")
    parser.add_argument("--multi", action="store_true", help="also fit accuracy + params + latency jointly")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    space = get_space("nb201")
    table = BenchmarkTable.from_csv(args.csv, space)
    archs = table.archs
    order = np.random.default_rng(args.seed).permutation(len(archs))
    train, test = order[: args.n_train], order[args.n_train : args.n_train + args.n_test]
    train_archs, test_archs = [archs[i] for i in train], [archs[i] for i in test]
    states = noisy_states(to_state(space, test_archs), args.seed + 1)
    net = {**DEFAULT_NET, "hidden": args.hidden, "layers": args.layers}
    common = dict(steps=args.steps, ensemble=args.ensemble, seed=args.seed, net_config=net)
    print(f"# NB201, {len(train)} train / {len(test)} held-out archs, VE SDE {VE}, net {net}, "
          f"steps {args.steps}, ensemble {args.ensemble}, threads {args.threads}")

    last = None
    for target in args.targets:
        variants = [("noise-aware", True)] + ([("clean-only", False)] if args.clean_baseline else [])
        for label, noise_aware in variants:
            start = time.perf_counter()
            pred = fit_predictor(
                space, train_archs, {target: table.values(target)[train]}, VE, noise_aware=noise_aware, **common
            )
            fit_s = time.perf_counter() - start
            rho = spearman_by_t(pred, states, table.values(target)[test], 0)
            print(json.dumps({"target": target, "predictor": label, "fit_s": round(fit_s, 1), "spearman": rho}))
            last = pred

    if args.multi:
        targets = [args.targets[0], "params_M_cifar10", "latency_ms_pixel3"]
        start = time.perf_counter()
        pred = fit_predictor(space, train_archs, {k: table.values(k)[train] for k in targets}, VE, **common)
        fit_s = time.perf_counter() - start
        for j, k in enumerate(pred.targets):
            rho = spearman_by_t(pred, states, table.values(k)[test], j)
            print(json.dumps({"target": k, "predictor": f"multi-output {pred.targets}", "fit_s": round(fit_s, 1),
                              "spearman": rho}))

    if last is not None:
        print(json.dumps({"guidance_eval_ms_batch256": round(guidance_cost_ms(last, space), 2),
                          "ensemble": last.ensemble, "hidden": args.hidden}))


if __name__ == "__main__":
    main()
