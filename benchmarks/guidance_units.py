"""Why standardized guidance uses the better-half spread, at every noise level (docs/guidance.md).

    python benchmarks/guidance_units.py                       # the table part only (seconds)
    python benchmarks/guidance_units.py --predictors runs/guidance_scale/predictors/*.pt

Table part (no sampling): for NB201 columns and directions, the exact exponential tilt of the
table's true values, ``p(arch) ~ exp(w * value / unit)`` with ``unit`` the better-half std
(``preferred_spread``): the share of that distribution in the column's best 5%, and the expected
uniqueness of 256 draws from it, per weight. The same weight gives similar shares on every column;
the whole std would not (printed too).

Predictor part: for each saved predictor (``benchmarks/guidance_scale.py`` keeps them), on 512
uniform archs perturbed by its SDE at several noise levels: the spread of its predictions (the
preferred half's std) relative to the clean one, and the mean gradient norm per clean unit. The
file name says the column (a ``latency`` or ``flops`` column is minimised).
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CSV = REPO.parent / "shared" / "data" / "nb201" / "nb201.csv"
COLUMNS = ("cifar10_test_acc:max", "cifar100_test_acc:max", "latency_ms_pixel3:min", "latency_ms_raspi4:min",
           "latency_ms_gold_6226:min", "latency_ms_titan_rtx_b1:min", "params_M_cifar10:max", "flops_M_cifar10:min")
WEIGHTS = (1.0, 2.0, 2.5, 3.0, 4.0)
TIMES = (0.1, 0.3, 0.5, 0.7, 0.9)


def table_part(csv_path: Path, n: int = 256) -> None:
    from nag.diffusion.guidance import preferred_spread

    with open(csv_path) as fh:
        rows = list(csv.DictReader(fh))
    print(f"exact tilt of the true values, unit = better-half std: share in the best 5% / expected uniqueness of {n} draws")
    print(f"{'column':<30}{'whole std':>10}{'unit':>9}  " + "  ".join(f"w={w:<4}".ljust(13) for w in WEIGHTS))
    for spec in COLUMNS:
        column, direction = spec.split(":")
        v = np.array([float(r[column]) for r in rows])
        sign = 1.0 if direction == "max" else -1.0
        unit = preferred_spread(v, "upper" if direction == "max" else "lower")
        best = sign * v >= np.quantile(sign * v, 0.95)
        cells = []
        for w in WEIGHTS:
            logp = w * sign * v / unit
            p = np.exp(logp - logp.max())
            p /= p.sum()
            cells.append(f"{p[best].sum():.2f} / {np.sum(1 - (1 - p) ** n) / n:.2f}".ljust(13))
        print(f"{spec:<30}{v.std():>10.3f}{unit:>9.3f}  " + "  ".join(cells))


def predictor_part(paths: list[Path]) -> None:
    import torch

    from nag.diffusion.guidance import preferred_spread
    from nag.diffusion.sde import build_sde, perturb
    from nag.modules.predictor import Predictor
    from nag.spaces import get_space

    torch.set_num_threads(1)
    space = get_space("nb201")
    x0 = 2.0 * space.encode_batch(space.sample(512, np.random.default_rng(0))) - 1.0
    print("\npredictions on 512 uniform archs at noise level t: spread / clean spread, mean |grad| / clean unit")
    for path in paths:
        pred = Predictor.load(path, space)
        sde = build_sde(pred.sde_config)
        side = "lower" if ("latency" in path.name or "flops" in path.name) else "upper"
        with torch.no_grad():
            unit = preferred_spread(pred(x0, torch.zeros(len(x0)))[:, 0].numpy(), side)
        cells = []
        for t in TIMES:
            tt = torch.full((len(x0),), t)
            xt = perturb(sde, x0, tt, generator=torch.Generator().manual_seed(0))[0].requires_grad_(True)
            m = pred(xt, tt)[:, 0]
            (grad,) = torch.autograd.grad(m.sum(), xt)
            cells.append(f"t={t}: {preferred_spread(m.detach().numpy(), side) / unit:.2f}, "
                         f"{float(grad.flatten(1).norm(dim=1).mean()) / unit:.2f}")
        print(f"{path.stem:<36} unit {unit:7.3f}  " + "  ".join(cells))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--predictors", type=Path, nargs="*", default=[])
    args = parser.parse_args(argv)
    table_part(args.csv)
    if args.predictors:
        predictor_part(args.predictors)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
