"""Time of one BO round's surrogate work, per surrogate: fit on n evaluated archs, then predict a pool.

Side by side in one run, on the same archs and targets: the ``fast`` ensemble MLP (the presets'
surrogate) and the exact ``gp``. No benchmark table needed: the archs are random NB201 cells and
the targets a fixed function of them (timing does not depend on the values).

    python benchmarks/surrogate_speed.py                       # n = 10 25 50 100 200, pool 264, 1 thread
    python benchmarks/surrogate_speed.py --sizes 50 --repeats 20
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 25, 50, 100, 200])
    parser.add_argument("--pool", type=int, default=264, help="candidates predicted per round (diffusion_bo: 64 + 200)")
    parser.add_argument("--surrogates", nargs="+", default=["fast", "gp"])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    import torch

    from nag.search.surrogate import fit_surrogate, predict_mean_std
    from nag.spaces import get_space

    torch.set_num_threads(args.threads)
    space = get_space("nb201")
    rng = np.random.default_rng(0)
    pool = space.sample(args.pool, rng)
    print(f"surrogate fit + pool prediction, median of {args.repeats} (ms), pool {args.pool}, {args.threads} thread(s)")
    print(f"{'n':>5}" + "".join(f"{name:>12}" for name in args.surrogates) + f"{'ratio':>8}")
    for n in args.sizes:
        archs = space.sample(n, rng)
        y = np.array([sum(op.startswith("nor_conv") for op in a) + 0.1 * rng.standard_normal() for a in archs])
        ms = {}
        for name in args.surrogates:
            times = []
            for r in range(args.repeats):
                start = time.perf_counter()
                predict_mean_std(fit_surrogate(name, space, archs, y, seed=r), pool)
                times.append(1e3 * (time.perf_counter() - start))
            ms[name] = float(np.median(times))
        ratio = ms[args.surrogates[0]] / ms[args.surrogates[-1]] if len(ms) > 1 else 1.0
        print(f"{n:>5}" + "".join(f"{ms[name]:>12.1f}" for name in args.surrogates) + f"{ratio:>7.1f}x")


if __name__ == "__main__":
    main()
