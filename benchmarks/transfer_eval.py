"""Does transfer_nas transfer? Its embedded defaults on unseen tasks x seeds, guided against random.

    python benchmarks/transfer_eval.py --tasks 59 46 15 --seeds 0 1 2 --out runs/transfer_eval
    python benchmarks/transfer_eval.py --report --out runs/transfer_eval

Each (task, seed) is one real ``python -m nag.run experiment=transfer_nas task=suite
task.index=<i> seed=<s>`` run in ``<out>/<i>_seed<s>`` (a rerun skips finished runs and resumes
killed ones). The tasks are positions in the diverse suite (``nag.data.suites``); pick held-out
ones (the default: one digits, one shapes and one textures task, declared before any run). The
report prints per run the guided and random top-k mean and best test accuracy, the meta-predictor's
Spearman on the task, and the mean over runs; it writes ``<out>/summary.csv``.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

DEFAULT_TASKS = (59, 46, 15)  # held out of the diverse suite: digits[0,2,4,6,8,9], shapes inverted, textures
COLUMNS = ("task", "seed", "guided_mean_test_acc", "random_mean_test_acc", "best_test_acc", "random_best_test_acc",
           "predictor_spearman_on_task", "best_arch", "wall_s")


def run_dir(out: Path, index: int, seed: int) -> Path:
    return out / f"{index}_seed{seed}"


def run(args: argparse.Namespace) -> None:
    env = {**os.environ, "WANDB_MODE": os.environ.get("WANDB_MODE", "disabled")}
    for index in args.tasks:
        for seed in args.seeds:
            folder = run_dir(args.out, index, seed)
            if (folder / "results.json").is_file():
                continue
            cmd = [sys.executable, "-m", "nag.run", "experiment=transfer_nas", "task=suite", f"task.index={index}",
                   f"seed={seed}", f"hydra.run.dir={folder}", *args.overrides]
            print("$", " ".join(cmd), flush=True)
            subprocess.run(cmd, check=True, env=env)


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def report(args: argparse.Namespace) -> None:
    rows = []
    for index in args.tasks:
        for seed in args.seeds:
            path = run_dir(args.out, index, seed) / "results.json"
            if path.is_file():
                res = json.loads(path.read_text())
                rows.append({**{k: res.get(k) for k in COLUMNS}, "task": f"{index}: {res['task']}", "seed": seed})
    if not rows:
        sys.exit(f"no finished runs under {args.out}")
    print(f"| task | seed | guided top-k mean | random top-k mean | guided best | random best | Spearman on task |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['task']} | {r['seed']} | {r['guided_mean_test_acc']:.2f} | {r['random_mean_test_acc']:.2f} | "
              f"{r['best_test_acc']:.2f} | {r['random_best_test_acc']:.2f} | {_num(r['predictor_spearman_on_task'])} |")

    def mean(k: str) -> float:  # over the runs where it is defined (a saturated task's Spearman is null)
        values = [r[k] for r in rows if r[k] is not None]
        return sum(values) / len(values) if values else float("nan")

    wins = sum(r["best_test_acc"] >= r["random_best_test_acc"] for r in rows)
    print(f"| mean of {len(rows)} runs | | {mean('guided_mean_test_acc'):.2f} | {mean('random_mean_test_acc'):.2f} | "
          f"{mean('best_test_acc'):.2f} | {mean('random_best_test_acc'):.2f} | {mean('predictor_spearman_on_task'):.2f} |")
    print(f"guided top-k mean - random top-k mean: {mean('guided_mean_test_acc') - mean('random_mean_test_acc'):+.2f} points; "
          f"guided best >= random best in {wins} of {len(rows)} runs")
    with open(args.out / "summary.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(COLUMNS), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, nargs="+", default=list(DEFAULT_TASKS), help="positions in the diverse suite")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("runs/transfer_eval"))
    parser.add_argument("--report", action="store_true", help="only print the table of finished runs")
    parser.add_argument("overrides", nargs="*", help="more transfer_nas overrides, e.g. top_k=5")
    args = parser.parse_args(argv)
    if not args.report:
        run(args)
    report(args)


if __name__ == "__main__":
    main()
