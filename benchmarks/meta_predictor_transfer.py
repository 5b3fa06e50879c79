"""Does the shipped digits meta-predictor know anything about NAS-Bench-201's CIFAR accuracies?

It was meta-trained on tiny NB201 networks trained for 2 epochs on digits subsets
(docs/transfer_nas.md). If its ranking carried over to CIFAR, it could serve BO as prior
knowledge that the baselines lack. Bound to a digits task, it ranks all 15,625 cells; printed
per table column: Spearman with the true accuracies, and how many of its 50 / 500 favourites lie
in the true top 1%.

    python benchmarks/meta_predictor_transfer.py
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
    args = parser.parse_args(argv)

    import torch
    from scipy.stats import spearmanr

    from nag.tables.table import BenchmarkTable
    from nag.data import get_task
    from nag.meta.features import build_extractor
    from nag.modules.meta_predictor import MetaPredictor
    from nag.spaces import get_space

    torch.set_num_threads(1)
    space = get_space("nb201")
    table = BenchmarkTable.from_csv(args.csv, space)
    extractor = build_extractor({"backbone": "resnet18", "pretrained_path": None})  # as transfer_nas runs offline
    predictor = MetaPredictor.load(args.meta, space).for_task(
        extractor.task_features(get_task("digits", classes=args.classes), 20, 0))
    archs = table.archs
    score = np.concatenate([predictor.predict_archs(archs[i:i + 2048], t=0.0)[0][:, 0].numpy()
                            for i in range(0, len(archs), 2048)])
    order = np.argsort(-score)
    print(f"meta-predictor {Path(args.meta).name} bound to digits {args.classes}; {len(archs)} NB201 cells")
    print(f"{'column':<20}{'spearman':>9}{'top50 in top1%':>16}{'top500 in top1%':>17}")
    for column in COLUMNS:
        values = table.values(column)
        top1 = values >= np.quantile(values, 0.99)
        print(f"{column:<20}{spearmanr(score, values)[0]:>9.3f}{int(top1[order[:50]].sum()):>16d}"
              f"{int(top1[order[:500]].sum()):>17d}")


if __name__ == "__main__":
    main()
