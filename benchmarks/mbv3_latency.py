"""CPU latency of MobileNetV3 (OFA) subnets built through timm, and how repeatable a measurement is.

    python benchmarks/mbv3_latency.py [--random 3] [--runs 10] [--warmup 3] [--threads N]
    python benchmarks/mbv3_latency.py --retest 40 --resolution 128 --threads 1 [--out retest.json]

Default: prints, per arch (smallest, largest, random ones): params, FLOPs, latency in ms (median of
``--runs`` timed forward passes after ``--warmup``, ``space.latency``) and the wall time of the whole
uncached call (build + warm-up + runs).

``--retest K``: test-retest of the two ways nag times an arch, on K random subnets measured twice
(two passes over the same list): the plain median (``space.latency``, no cache) and the paired
``nag.evaluation.latency.LatencyMeter`` (median of t_arch / t_ref against a fixed reference, one reference_ms
for both passes). Prints the Spearman between the passes for each, the 1-minute load average
before and after, and the wall time. On an idle machine both agree; under load (other jobs on
the cores) the plain median follows the load, which is why measured latencies are paired.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from nag.evaluation.latency import LatencyMeter, Timing
from nag.io import atomic_write_json
from nag.spaces.mbv3 import MBv3Space


def table(space: MBv3Space, args: argparse.Namespace) -> None:
    """Per-arch params, FLOPs, latency and the wall time of one uncached measurement."""
    smallest = tuple(((3, 3),) * 2 for _ in range(5))
    largest = tuple(((7, 6),) * 4 for _ in range(5))
    archs = [("smallest", smallest), ("largest", largest)]
    archs += [(f"random{i}", a) for i, a in enumerate(space.sample(args.random, args.seed))]
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


def retest(space: MBv3Space, args: argparse.Namespace) -> dict:
    """Spearman between two measurement passes of ``--retest`` archs, plain median vs paired meter."""
    from scipy.stats import spearmanr

    archs = space.sample(args.retest, args.seed)
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    meter = LatencyMeter(space, Timing(batch_size=args.batch_size, runs=args.runs, warmup=args.warmup))
    plain: list[list[float]] = [[], []]
    paired: list[list[float]] = [[], []]
    for rep in range(2):
        for arch in archs:
            fresh = MBv3Space(width_mult=args.width_mult, resolution=args.resolution)  # empty cache: times again
            plain[rep].append(fresh.latency(arch, batch_size=args.batch_size, runs=args.runs, warmup=args.warmup))
            paired[rep].append(meter(arch))
    out = {
        "n": args.retest, "resolution": args.resolution, "batch_size": args.batch_size, "runs": args.runs,
        "torch_threads": torch.get_num_threads(), "reference": meter.reference, "reference_ms": meter.reference_ms,
        "plain_spearman": float(spearmanr(*plain).statistic), "paired_spearman": float(spearmanr(*paired).statistic),
        "plain_median_ms": [float(np.median(p)) for p in plain], "paired_median_ms": [float(np.median(p)) for p in paired],
        "load1_before": load_before, "load1_after": os.getloadavg()[0], "wall_s": time.perf_counter() - start,
    }
    print(f"retest of {args.retest} archs ({args.resolution} px, batch {args.batch_size}, {args.runs} runs, "
          f"{out['torch_threads']} thread(s)); load average {load_before:.2f} -> {out['load1_after']:.2f}")
    print(f"  plain median (space.latency):  Spearman(pass 1, pass 2) = {out['plain_spearman']:.3f}  "
          f"medians {out['plain_median_ms'][0]:.2f} / {out['plain_median_ms'][1]:.2f} ms")
    print(f"  paired (LatencyMeter):         Spearman(pass 1, pass 2) = {out['paired_spearman']:.3f}  "
          f"medians {out['paired_median_ms'][0]:.2f} / {out['paired_median_ms'][1]:.2f} ms")
    print(f"  wall {out['wall_s']:.0f} s")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--random", type=int, default=3, help="number of random subnets")
    parser.add_argument("--retest", type=int, default=0, help="test-retest on this many random subnets instead")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--width-mult", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=None, help="--retest: also write the figures to this JSON file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    space = MBv3Space(width_mult=args.width_mult, resolution=args.resolution)
    print(
        f"mbv3 latency: batch {args.batch_size}, {args.resolution} px, width {args.width_mult:g}, "
        f"torch threads {torch.get_num_threads()}, median of {args.runs} runs after {args.warmup} warm-up"
    )
    if args.retest:
        out = retest(space, args)
        if args.out is not None:
            atomic_write_json(args.out, out)
    else:
        table(space, args)


if __name__ == "__main__":
    main()
