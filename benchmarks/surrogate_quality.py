"""How well BO's fast surrogate ranks the top of NAS-Bench-201, per input view, encoding and target transform.

For each training size n and draw, the surrogate is fitted on n random cells and ranks all
15,625. Printed, mean over draws:
- rho_top: Spearman among the better half of the table,
- top1%@50: share of its 50 favourites in the true top 1%,
- best@50: best true value among its 50 favourites.

Views: ``raw`` archs as drawn, ``normal`` their ``space.normal_form`` (dead edges fixed; BO's ``normal_form`` option).

    python benchmarks/surrogate_quality.py                       # CIFAR-10, n = 20 40 80, 8 draws
    python benchmarks/surrogate_quality.py --column cifar100_test_acc --sizes 40
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CSV = REPO.parent / "shared" / "data" / "nb201" / "nb201.csv"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", nargs="?", default=str(DEFAULT_CSV))
    parser.add_argument("--column", default="cifar10_test_acc")
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 40, 80])
    parser.add_argument("--draws", type=int, default=8)
    parser.add_argument("--transforms", nargs="+", default=["none", "rank_gauss"])
    parser.add_argument("--encodings", nargs="+", default=["onehot", "paths"])
    parser.add_argument("--views", nargs="+", default=["raw", "normal"], choices=["raw", "normal"])
    args = parser.parse_args(argv)

    import torch
    from scipy.stats import spearmanr

    from nag.tables.table import BenchmarkTable
    from nag.search.surrogate import fit_surrogate, predict_mean_std
    from nag.search.targets import transform_targets
    from nag.spaces import get_space

    torch.set_num_threads(1)
    space = get_space("nb201")
    table = BenchmarkTable.from_csv(args.csv, space)
    values = table.values(args.column)
    good = values > np.median(values)
    top1 = values >= np.quantile(values, 0.99)
    start = time.perf_counter()
    views = {"raw": table.archs, "normal": [space.normal_form(a) for a in table.archs]}
    print(f"{'n':>4} {'view':<6} {'encoding':<8} {'targets':<11} {'rho_top':>8} {'top1%@50':>9} {'best@50':>8}")
    for n in args.sizes:
        for view in args.views:
            archs = views[view]
            for encoding in args.encodings:
                for transform in args.transforms:
                    scores = []
                    for draw in range(args.draws):
                        idx = np.random.default_rng(draw).choice(len(values), n, replace=False)
                        y = transform_targets(transform, values[idx])
                        sur = fit_surrogate("fast", space, [archs[i] for i in idx], y, seed=draw, encoding=encoding)
                        mean, _ = predict_mean_std(sur, archs)
                        fav = np.argsort(-mean)[:50]
                        scores.append((spearmanr(mean[good], values[good])[0], top1[fav].mean(), values[fav].max()))
                    rho, share, best = np.mean(scores, axis=0)
                    print(f"{n:>4} {view:<6} {encoding:<8} {transform:<11} {rho:>8.3f} {share:>9.3f} {best:>8.3f}", flush=True)
    print(f"wall {time.perf_counter() - start:.0f}s, column {args.column}, {args.draws} draws")


if __name__ == "__main__":
    main()
