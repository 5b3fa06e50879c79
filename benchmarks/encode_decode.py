"""Time encoding and decoding the whole NB201 space (15,625 archs).

    python benchmarks/encode_decode.py [--repeats 7] [--threads N]

Prints the median wall time of ``encode_batch(all archs)`` and of ``decode`` of that tensor
(in the diffusion scale [-1, 1]), after one warm-up call that builds the space's caches.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from nag.spaces.nb201 import NB201Space


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    space = NB201Space()
    archs = space.enumerate()
    start = time.perf_counter()
    x = space.encode_batch(archs)  # warm-up: builds the arch/token/one-hot caches
    assert space.decode(2 * x - 1) == archs
    first = time.perf_counter() - start
    state = 2 * x - 1

    enc = median_seconds(lambda: space.encode_batch(archs), args.repeats)
    dec = median_seconds(lambda: space.decode(state), args.repeats)
    print(f"archs: {len(archs)}  torch threads: {torch.get_num_threads()}  repeats: {args.repeats}")
    print(f"first call (builds caches), encode+decode: {first * 1e3:.1f} ms")
    print(f"encode_batch: {enc * 1e3:.2f} ms  ({enc / len(archs) * 1e6:.3f} us/arch)")
    print(f"decode:       {dec * 1e3:.2f} ms  ({dec / len(archs) * 1e6:.3f} us/arch)")
    print(f"round trip:   {(enc + dec) * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
