"""Is accuracy guidance real? Train guided and unguided mbv3 samples of a pareto_generation run.

    OMP_NUM_THREADS=1 python benchmarks/mbv3_accuracy_check.py [--k 16] [--samples benchmarks/results/mbv3_guidance/pareto_samples.csv]

Reads ``samples.csv`` of ``experiment=pareto_generation`` (default: the one ``benchmarks/mbv3_guidance.py
--part pareto`` wrote), takes the first ``k`` guided samples that meet every measured bound of the
run's constraints (default: ``latency_ms <= 5.5``) and the first ``k`` unguided samples (all, and
separately counted those meeting the bound), and really trains each on the task with the budget
the accuracy predictor was fit with (its saved record: task, budget, training seed), through the
same path as its training data (``nag.evaluation.measure.measure_accuracies``; resumable JSONL in ``--work``).
Prints and writes (``accuracy_check.csv`` / ``.json`` in ``--out``) the true val/test accuracy of
each set next to the predicted one.
"""
from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from nag.evaluation.measure import measure_accuracies
from nag.modules.cost_predictor import cost_predictor_info
from nag.data.tasks import get_task
from nag.evaluation.measure import interleave
from nag.io import atomic_write_csv as write_csv
from nag.io import atomic_write_json
from nag.spaces import get_space

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "mbv3_guidance"


def stats(values: list[float]) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    return {"n": int(len(v)), "mean": float(v.mean()), "median": float(np.median(v)), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=Path, default=RESULTS / "pareto_samples.csv")
    parser.add_argument("--predictor", default="mbv3_digits_acc", help="the accuracy predictor whose training setting is reused")
    parser.add_argument("--target", default="val_acc")
    parser.add_argument("--bound", default="latency_ms<=5.5", help="feasibility of guided samples: <column><=<value>")
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--work", type=Path, default=Path("/tmp/nag_mbv3_guidance"), help="resumable training rows")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()

    column, bound = args.bound.split("<=")
    with open(args.samples, newline="") as f:
        rows = list(csv.DictReader(f))
    pred_col = f"pred_{args.target}"
    feasible = lambda r: float(r[column]) <= float(bound)  # noqa: E731
    guided = [r for r in rows if r["set"] == "guided" and feasible(r)][: args.k]
    unguided = [r for r in rows if r["set"] == "unguided"][: args.k]

    info = cost_predictor_info(args.predictor)
    ctx = info["measure_context"]
    task_cfg = dict(ctx["task"])
    task = get_task(task_cfg.pop("name"), **task_cfg)
    space_cfg = dict(ctx["space"])
    space = get_space(space_cfg.pop("name"), **space_cfg)
    args.work.mkdir(parents=True, exist_ok=True)
    order = interleave(guided, unguided)  # load and drift hit both sets alike
    trained = measure_accuracies(
        space, [space.parse(r["arch"]) for r in order], args.work / "accuracy_check.jsonl", task, ctx["budget"],
        seed=ctx["train_seed"], context={"space": ctx["space"], "task": ctx["task"]},
    )
    by_arch = {t["arch"]: t for t in trained}

    table = []
    for r in order:
        t = by_arch[r["arch"]]
        table.append({"set": r["set"], "arch": r["arch"], pred_col: float(r[pred_col]), column: float(r[column]),
                      "meets_bound": feasible(r), "val_acc": t["val_acc"], "test_acc": t["test_acc"], "train_s": t["train_s"]})
    write_csv(args.out / "accuracy_check.csv", table, list(table[0]))

    out: dict = {"samples": str(args.samples), "k": args.k, "bound": args.bound, "predictor": args.predictor,
                 "budget": ctx["budget"], "task": ctx["task"]}
    for name, sel in (("guided_feasible", lambda t: t["set"] == "guided"),
                      ("unguided", lambda t: t["set"] == "unguided"),
                      ("unguided_feasible", lambda t: t["set"] == "unguided" and t["meets_bound"])):
        part = [t for t in table if sel(t)]
        if not part:
            continue
        out[name] = {m: stats([t[m] for t in part]) for m in ("val_acc", "test_acc", pred_col, column)}
        print(f"{name:<18} n={len(part):>2}  true val_acc mean {out[name]['val_acc']['mean']:.1f} median "
              f"{out[name]['val_acc']['median']:.1f} | test_acc mean {out[name]['test_acc']['mean']:.1f} median "
              f"{out[name]['test_acc']['median']:.1f} | predicted {args.target} median {out[name][pred_col]['median']:.1f} "
              f"| {column} median {out[name][column]['median']:.2f}")
    rho = spearmanr([t[pred_col] for t in table], [t[args.target] for t in table]).statistic
    out["spearman_pred_true"] = float(rho)
    print(f"Spearman(predicted, true {args.target}) over the {len(table)} trained samples: {rho:.3f}")
    out["wall_s"] = time.perf_counter() - start
    atomic_write_json(args.out / "accuracy_check.json", out)
    print(f"wall {out['wall_s']:.0f} s; written to {args.out / 'accuracy_check.json'}")


if __name__ == "__main__":
    main()
