"""Does a shipped meta-predictor know anything about NAS-Bench-201's CIFAR accuracies?

The meta-predictors were meta-trained on tiny NB201 networks (C=8, N=1) trained briefly on
small offline tasks (docs/transfer_nas.md); NB201's table holds full-size networks trained 200
epochs on CIFAR. No CIFAR images ship offline, so the predictor is bound to offline tasks
instead: a digits subset (``--classes``, the default), or every task of the diverse suite from
one image source (``--suite-source photo_patches``: natural-photo patches, the nearest offline
stand-in for a user's natural images). Bound to each, it ranks the table's cells (all 15,625,
or a seeded ``--sample``); printed per binding and column: Spearman with the true accuracies,
and how many of its 50 / 500 favourites lie in the true top 1%.

    python benchmarks/meta_predictor_transfer.py                                  # digits predictor, 20 images per class
    python benchmarks/meta_predictor_transfer.py --meta nag/assets/predictors/meta_nb201_diverse.pt --n-per-class 5
    python benchmarks/meta_predictor_transfer.py --meta nag/assets/predictors/meta_nb201_diverse.pt --n-per-class 5 \\
        --suite-source photo_patches --sample 3000
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CSV = REPO.parent / "shared" / "data" / "nb201" / "nb201.csv"
COLUMNS = ("cifar10_test_acc", "cifar100_test_acc")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", nargs="?", default=str(DEFAULT_CSV))
    parser.add_argument("--meta", default=str(REPO / "nag" / "assets" / "predictors" / "meta_nb201_digits.pt"))
    parser.add_argument("--classes", type=int, nargs="+", default=[0, 2, 4, 6, 8, 9], help="the digits task it is bound to")
    parser.add_argument("--suite-source", default=None, help="bind to every diverse-suite task of this source instead")
    parser.add_argument("--n-per-class", type=int, default=20, help="images per class through the dataset encoder "
                        "(as the meta-predictor was trained with: 20 for the digits one, 5 for the diverse one)")
    parser.add_argument("--sample", type=int, default=None, help="rank this many cells (seeded) instead of all")
    parser.add_argument("--encoder", default=None, help="dataset encoder weights (dataset_encoder.pretrained_path) the "
                        "meta-predictor was trained with; default: the fixed-seed random backbone")
    args = parser.parse_args(argv)

    import torch

    from nag.data import get_task
    from nag.data.suites import get_suite
    from nag.meta.features import build_extractor
    from nag.metrics import spearman
    from nag.modules.meta_predictor import MetaPredictor
    from nag.spaces import get_space
    from nag.tables.table import BenchmarkTable

    torch.set_num_threads(1)
    space = get_space("nb201")
    table = BenchmarkTable.from_csv(args.csv, space)
    extractor = build_extractor({"backbone": "resnet18", "pretrained_path": args.encoder})  # None: as transfer_nas runs offline
    meta = MetaPredictor.load(args.meta, space)
    meta.check_encoder(extractor.identity())  # features of the encoder it was trained with, or an error
    idx = np.arange(len(table.archs))
    if args.sample:
        idx = np.sort(np.random.default_rng(0).permutation(len(idx))[: args.sample])
    archs = [table.archs[i] for i in idx]
    if args.suite_source:
        bindings = [(s.id, s.build()) for s in get_suite("diverse") if s.source == args.suite_source]
        if not bindings:
            raise SystemExit(f"no task of the diverse suite has source {args.suite_source!r}")
    else:
        bindings = [(f"digits[{','.join(map(str, args.classes))}]", get_task("digits", classes=args.classes))]
    print(f"meta-predictor {Path(args.meta).name}; {len(archs)} NB201 cells; {args.n_per_class} images per class")
    print(f"{'bound to':<48}{'column':<20}{'spearman':>9}{'top50 in top1%':>16}{'top500 in top1%':>17}")
    totals: dict[str, list[float]] = {c: [] for c in COLUMNS}
    for name, task in bindings:
        predictor = meta.for_task(extractor.task_features(task, args.n_per_class, 0))
        score = np.concatenate([predictor.predict_archs(archs[i:i + 2048], t=0.0)[0][:, 0].numpy()
                                for i in range(0, len(archs), 2048)])
        order = np.argsort(-score)
        for column in COLUMNS:
            values = np.asarray(table.values(column))[idx]
            top1 = values >= np.quantile(values, 0.99)
            rho = spearman(score.tolist(), values.tolist())
            totals[column].append(np.nan if rho is None else rho)
            print(f"{name.replace(' ', '')[:47]:<48}{column:<20}{rho if rho is not None else float('nan'):>9.3f}"
                  f"{int(top1[order[:50]].sum()):>16d}{int(top1[order[:500]].sum()):>17d}")
    if len(bindings) > 1:
        print("mean over bindings: " + ", ".join(f"{c} {np.nanmean(v):.3f}" for c, v in totals.items()))


if __name__ == "__main__":
    main()
