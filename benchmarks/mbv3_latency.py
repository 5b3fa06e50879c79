"""CPU latency of MobileNetV3 (OFA) subnets built through timm, and what one measurement costs.

    python benchmarks/mbv3_latency.py [--random 3] [--runs 10] [--warmup 3] [--threads N]

Prints, per arch (smallest, largest, random ones): params, FLOPs, latency in ms (median of
``--runs`` timed forward passes after ``--warmup``) at batch 1 and 224 px, and the wall time of
the whole uncached ``space.latency`` call (build + warm-up + runs).
"""
from __future__ import annotations

import argparse
import time

import torch

from nag.spaces.mbv3 import MBv3Space


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--random", type=int, default=3, help="number of random subnets")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--width-mult", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    space = MBv3Space(width_mult=args.width_mult, resolution=args.resolution)
    smallest = tuple(((3, 3),) * 2 for _ in range(5))
    largest = tuple(((7, 6),) * 4 for _ in range(5))
    archs = [("smallest", smallest), ("largest", largest)]
    archs += [(f"random{i}", a) for i, a in enumerate(space.sample(args.random, args.seed))]

    print(
        f"mbv3 latency: batch {args.batch_size}, {args.resolution} px, width {args.width_mult:g}, "
        f"torch threads {torch.get_num_threads()}, median of {args.runs} runs after {args.warmup} warm-up"
    )
    print(f"{'name':<9} {'params_M':>8} {'flops_M':>8} {'latency_ms':>10} {'measure_s':>9}  arch")
    for name, arch in archs:
        cost = space.cost(arch)
        start = time.perf_counter()
        ms = space.latency(arch, batch_size=args.batch_size, runs=args.runs, warmup=args.warmup)
        measure_s = time.perf_counter() - start
        start = time.perf_counter()
        space.latency(arch, batch_size=args.batch_size, runs=args.runs, warmup=args.warmup)
        cached_us = 1e6 * (time.perf_counter() - start)
        print(
            f"{name:<9} {cost['params_M']:>8.3f} {cost['flops_M']:>8.1f} {ms:>10.2f} {measure_s:>9.2f}  "
            f"{space.format(arch)}  (cached lookup {cached_us:.0f} us)"
        )


if __name__ == "__main__":
    main()
