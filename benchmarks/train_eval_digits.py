"""Wall time and accuracy of one real NB201 train_eval on the digits task.

    python benchmarks/train_eval_digits.py                       # default TrainBudget, 6 archs
    python benchmarks/train_eval_digits.py --epochs 20 --threads 2 --archs 3

Prints one line per architecture (wall seconds, CPU seconds, val/test accuracy) and a summary.
CPU seconds are this process's, so they stay meaningful on a busy shared machine.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from nag.data import get_task
from nag.spaces import get_space
from nag.evaluation.training import TrainBudget, train_eval_model

ALL_CONV = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", type=int, default=6, help="the all-3x3 cell plus archs-1 random ones")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=8, help="digits image size")
    p.add_argument("--C", type=int, default=16)
    p.add_argument("--N", type=int, default=5)
    for f in TrainBudget.keys():
        kind = type(getattr(TrainBudget(), f))
        p.add_argument(f"--{f.replace('_', '-')}", type=float if kind in (float, type(None)) else int, default=None)
    args = p.parse_args()
    budget = TrainBudget.from_any(
        {f: (int(v) if f in ("epochs", "batch_size", "max_steps") else v)
         for f in TrainBudget.keys() if (v := getattr(args, f)) is not None}
    )
    space = get_space("nb201", C=args.C, N=args.N)
    task = get_task("digits", size=args.size)
    archs = [space.parse(ALL_CONV)] + space.sample(args.archs - 1, args.seed)
    print(f"budget={budget.to_dict()} threads={args.threads} task={task} C={args.C} N={args.N}")
    walls, accs = [], []
    for arch in archs:
        cpu = time.process_time()
        r = train_eval_model(lambda: space.build(arch, task), task, budget, seed=args.seed, num_threads=args.threads)
        cpu = time.process_time() - cpu
        walls.append(r["wall_s"])
        accs.append(r["test_acc"])
        print(
            f"wall {r['wall_s']:6.1f}s  cpu {cpu:6.1f}s  val {r['val_acc']:5.1f}  test {r['test_acc']:5.1f}  "
            f"loss {r['train_loss']:.3f}  params {r['params_M']:.3f}M  {space.format(arch)}",
            flush=True,
        )
    print(
        f"median wall {statistics.median(walls):.1f}s  median test {statistics.median(accs):.1f}%  "
        f"min/max test {min(accs):.1f}/{max(accs):.1f}%  (torch threads {args.threads}, {torch.get_num_threads()} default)"
    )


if __name__ == "__main__":
    main()
