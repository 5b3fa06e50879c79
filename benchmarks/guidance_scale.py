"""One guidance weight for every metric? Standardized guidance on NB201 table columns.

    python benchmarks/guidance_scale.py --columns latency_ms_raspi4:min params_M_cifar10:max \
        --seeds 0 1 --weights 1 1.5 2 3 --out runs/guidance_scale
    python benchmarks/guidance_scale.py --report --out runs/guidance_scale

For every ``column:direction`` and seed it does what ``experiment=guided_generation`` does with
that seed (``n_labeled`` table archs drawn with the seed, a noise-aware predictor fitted with the
experiment's predictor options, ``n`` samples from the shipped prior with the experiment's
solver), once per weight (and diversity weight), and scores the samples by the true table:
``frac_top5`` (in the column's true best 5%, for its direction) and ``uniqueness``. The predictor
is fitted once per column and seed. Each sampling appends a row to ``<out>/rows.jsonl``; a rerun
skips the rows that are there.

``--scale`` picks the Guide's units (standardized, the default; or absolute). The report prints,
per setting, every column's mean over seeds and the worst case over all (column, seed) pairs of
``min(frac_top5, uniqueness)``: the rule used to choose ``DEFAULT_WEIGHT`` on columns the
must-show columns are not (docs/guidance.md). Predictors are kept in ``<out>/predictors`` (one per
column, seed and ``n_labeled``), so a grid can grow without refitting.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CSV = REPO.parent / "shared" / "data" / "nb201" / "nb201.csv"


def experiment_defaults() -> dict[str, Any]:
    """The predictor and sampler settings of experiment=guided_generation (so this measures its setting)."""
    from nag.diffusion.sampling import SamplerSettings
    from nag.modules.predictor import PredictorOptions
    from nag.run import compose_config
    from nag.schema import plain

    cfg = compose_config(["experiment=guided_generation"])
    return {"predictor": PredictorOptions(**plain(cfg.predictor)).settings(), "sampler": SamplerSettings.pick(cfg),
            "n_heldout": int(cfg.n_heldout)}


# How standardized guides are calibrated now (rows of earlier calibrations stay apart in the report):
# "noise_levels" = the unit measured at every noise level; rows without the key used the clean unit only.
CALIBRATION = "noise_levels"


def calibration(row: dict[str, Any]) -> str:
    return row.get("calibration", "clean") if row["scale"] == "standardized" else "-"


def setting_key(row: dict[str, Any]) -> tuple:
    return (row["column"], row["direction"], row["seed"], row["scale"], calibration(row), row.get("schedule", "constant"),
            row["weight"], row["diversity"], row.get("min_uniqueness"))


def run(args: argparse.Namespace) -> None:
    import torch

    from nag.diffusion.guidance import GuideSpec
    from nag.diffusion.prior import load_prior
    from nag.diffusion.sampling import build_sampler, timed_sample
    from nag.io import append_jsonl, read_jsonl
    from nag.metrics import predictor_spearman, sample_scores
    from nag.modules.predictor import Predictor, fit_on_table
    from nag.spaces import get_space
    from nag.tables.table import load_benchmark

    torch.set_num_threads(1)
    defaults = experiment_defaults()
    space = get_space("nb201")
    table = load_benchmark({"path": str(args.csv)}, space)
    prior = load_prior(None, space)
    log = args.out / "rows.jsonl"
    done = {setting_key(r) for r in read_jsonl(log, missing_ok=True)}
    for spec in args.columns:
        column, _, direction = spec.partition(":")
        for seed in args.seeds:
            kind = CALIBRATION if args.scale == "standardized" else "-"
            settings = [(w, d) for w in args.weights for d in args.diversity
                        if (column, direction, seed, args.scale, kind, args.schedule, w, d, args.min_uniqueness) not in done]
            if not settings:
                continue
            labeled, heldout = table.split(args.n_labeled, defaults["n_heldout"], seed)
            cached = args.out / "predictors" / f"{column}_seed{seed}_n{args.n_labeled}.pt"
            start = time.perf_counter()
            if cached.is_file():  # a predictor depends on (column, seed, n_labeled) only: fit once
                pred = Predictor.load(cached, space)
            else:
                pred = fit_on_table(table, labeled, [column], prior.sde.config(), seed, **defaults["predictor"])
                cached.parent.mkdir(parents=True, exist_ok=True)
                pred.save(cached)
            fit_s = time.perf_counter() - start
            rho = predictor_spearman(pred, space, [table.archs[i] for i in heldout], table.values(column)[heldout], column,
                                     0.0, seed)
            for weight, diversity in settings:
                guides = [GuideSpec(weight=weight, direction=direction, scale=args.scale, schedule=args.schedule).build(pred, column)]
                settings = defaults["sampler"].with_(batch_size=args.n, diversity={"weight": diversity},
                                                     min_uniqueness=args.min_uniqueness)
                sampler = build_sampler(prior, settings, guides)
                _, archs, sec = timed_sample(sampler, args.n, seed)
                scores = sample_scores(archs, table, column, direction != "min")
                row = {"column": column, "direction": direction, "seed": seed, "scale": args.scale, "calibration": kind,
                       "schedule": args.schedule, "weight": weight,
                       "diversity": diversity, "min_uniqueness": args.min_uniqueness,
                       "weight_factor": sampler.weight_factor, "unit": guides[0].unit, "predictor_spearman": rho,
                       "predictor_fit_s": fit_s, "sample_s": sec, **scores}
                append_jsonl(log, row)
                print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)


def report(args: argparse.Namespace) -> None:
    from collections import defaultdict
    from statistics import fmean

    from nag.io import read_jsonl

    rows = read_jsonl(args.out / "rows.jsonl", missing_ok=True)
    if args.columns:
        wanted = {tuple(c.split(":")) for c in args.columns}
        rows = [r for r in rows if (r["column"], r["direction"]) in wanted]
    by_setting: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        by_setting[(r["scale"], calibration(r), r.get("schedule", "constant"), r["weight"], r["diversity"],
                    r.get("min_uniqueness"))].append(r)
    columns = sorted({(r["column"], r["direction"]) for r in rows})
    print(f"frac_top5 / uniqueness, mean over seeds; worst = min over (column, seed) of min(frac_top5, uniqueness)")
    print("scale         calibration  schedule  weight  div  guard  " + "  ".join(f"{c}:{d}"[:26].ljust(26) for c, d in columns)
          + "  worst")
    for (scale, kind, schedule, weight, div, guard), rs in sorted(
            by_setting.items(), key=lambda kv: [(v is None, 0 if v is None else v) for v in kv[0]]):
        cells = []
        for c, d in columns:
            cr = [r for r in rs if r["column"] == c and r["direction"] == d]
            cells.append(f"{fmean(r['frac_top5'] for r in cr):.3f} / {fmean(r['uniqueness'] for r in cr):.3f} "
                         f"({len(cr)})" if cr else "-")
        worst = min(min(r["frac_top5"], r["uniqueness"]) for r in rs)
        print(f"{scale:<13} {kind:<12} {schedule:<9} {weight:>6} {div:>4}  {guard or '-':>5}  " + "  ".join(c.ljust(26) for c in cells)
              + f"  {worst:.3f}")


def simulate_guard(args: argparse.Namespace, floors: tuple[float, ...] = (0.6, 0.65, 0.7), start: float = 2.5) -> None:
    """How would the collapse guard have done on the grid? Per (column, seed), walk the weights
    ``start * 0.9^k`` (the nearest weight in the grid's unguarded rows) until uniqueness >= floor;
    print the rows it stops at and, per floor, the worst min(frac_top5, uniqueness): the rule that
    chose MIN_UNIQUENESS on the tuning pairs (docs/guidance.md, "The collapse guard")."""
    from collections import defaultdict

    from nag.io import read_jsonl

    grid: dict[tuple, dict[float, dict]] = defaultdict(dict)
    for r in read_jsonl(args.out / "rows.jsonl", missing_ok=True):
        if (r["scale"], calibration(r), r.get("schedule", "constant"), r["diversity"], r.get("min_uniqueness")) == (
                "standardized", CALIBRATION, "constant", 0.0, None):
            grid[(r["column"], r["seed"])][r["weight"]] = r
    for floor in floors:
        worst, stops = 1.0, []
        for (column, seed), by_weight in sorted(grid.items()):
            for k in range(6):
                w = min(by_weight, key=lambda x: abs(x - start * 0.9**k))
                row = by_weight[w]
                if row["uniqueness"] >= floor:
                    break
            worst = min(worst, row["frac_top5"], row["uniqueness"])
            stops.append(f"{column}:s{seed} w={w} {row['frac_top5']:.2f}/{row['uniqueness']:.2f}")
        print(f"floor {floor}: worst {worst:.3f} | " + "; ".join(stops))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--columns", nargs="+", default=[], metavar="COLUMN:DIRECTION",
                        help="e.g. latency_ms_raspi4:min params_M_cifar10:max")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--weights", nargs="+", type=float, default=[2.0])
    parser.add_argument("--diversity", nargs="+", type=float, default=[0.0],
                        help="DiversityGuide weights (every weight is run with each)")
    parser.add_argument("--scale", default="standardized", choices=("standardized", "absolute"))
    parser.add_argument("--min-uniqueness", type=float, default=None,
                        help="the collapse guard's floor (GuidedSampler min_uniqueness); default: off, as the grid ran")
    parser.add_argument("--schedule", default="constant", help="guidance weight schedule (nag.diffusion.guidance.SCHEDULES)")
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--n-labeled", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "guidance_scale")
    parser.add_argument("--report", action="store_true", help="only print the report of the rows in --out")
    parser.add_argument("--simulate-guard", action="store_true",
                        help="only replay the collapse guard on the grid's unguarded rows in --out")
    args = parser.parse_args(argv)
    for spec in args.columns:
        if spec.partition(":")[2] not in ("max", "min"):
            parser.error(f"--columns {spec!r}: write COLUMN:max or COLUMN:min")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.simulate_guard:
        return simulate_guard(args)
    if not args.report:
        if not args.columns:
            parser.error("give --columns (or --report)")
        run(args)
    report(args)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
