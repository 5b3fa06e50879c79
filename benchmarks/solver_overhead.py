"""Per-step overhead of the solvers' loops (trivial score function), and of guidance.

    python benchmarks/solver_overhead.py [--batch 256] [--repeats 5] [--threads N]

Samples ``[batch, 8, 7]`` (NB201's state) under the VE SDE (sigma 0.1..5) with a score function
that does no work (returns a preallocated zero tensor), so the time is the solver's own:
its time grid, noise draws and in-place updates. A second row per solver uses ``-x`` as the
score (one allocation, as a real network's output). The guidance rows wrap the zero score
with one analytic linear predictor (``Guide``) or a ``DiversityGuide``: their extra cost is
the autograd pass per evaluation. Prints the median time per step and per score evaluation
in microseconds.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from nag.diffusion.guidance import DiversityGuide, Guide, guided_score_fn
from nag.diffusion.sde import VESDE
from nag.diffusion.solvers import get_solver

N, V = 8, 7

SOLVERS = {
    "pc (EM + Langevin)": dict(name="pc", steps=1000),
    "pc (EM, no corrector)": dict(name="pc", steps=1000, corrector="none"),
    "pc (reverse diffusion, no corrector)": dict(name="pc", steps=1000, predictor="reverse_diffusion", corrector="none"),
    "ode (heun)": dict(name="ode", steps=500),
    "ode (euler)": dict(name="ode", steps=1000, method="euler"),
}


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    b = args.batch
    sde = VESDE(0.1, 5.0)
    zero = torch.zeros(b, N, V)
    weights = torch.randn(N, V)
    scores = {
        "zero score": lambda x, t: zero,
        "score = -x": lambda x, t: torch.neg(x),
        "zero + Guide(linear)": guided_score_fn(
            lambda x, t: zero, [Guide(lambda x, t: (x * weights).sum((1, 2)), weight=1.0, scale="absolute")], sde=sde
        ),
        "zero + DiversityGuide": guided_score_fn(lambda x, t: zero, [DiversityGuide(weight=1.0)], sde=sde),
    }
    print(f"batch {b}, state [{b}, {N}, {V}], torch threads {torch.get_num_threads()}, median of {args.repeats}")
    print(f"{'solver':40s} {'score':24s} {'steps':>6s} {'NFE':>6s} {'us/step':>9s} {'us/NFE':>9s}")
    for label, cfg in SOLVERS.items():
        solver = get_solver(cfg)
        for score_name, score in scores.items():
            if "Guide" in score_name and label not in ("pc (EM + Langevin)", "ode (heun)"):
                continue
            gen = torch.Generator().manual_seed(0)
            solver.sample(score, sde, (b, N, V), gen)  # warm-up (and the per-SDE plan)
            sec = median_seconds(lambda: solver.sample(score, sde, (b, N, V), gen), args.repeats)
            steps = solver.config()["steps"]
            print(f"{label:40s} {score_name:24s} {steps:6d} {solver.nfe:6d} "
                  f"{1e6 * sec / steps:9.1f} {1e6 * sec / solver.nfe:9.1f}")


if __name__ == "__main__":
    main()
