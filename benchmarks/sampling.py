"""Sampling speed: valid unique NB201 architectures per second, paper setting vs nag's default.

    python benchmarks/sampling.py [--n 1024] [--paper-steps 50] [--threads 2]

(a) The paper's setting: predictor-corrector, 1000 steps, one Langevin corrector step each
    (2,000 score calls), 12-layer d=64 DAG transformer (8 heads, FFN 128) with random weights.
    Only ``--paper-steps`` steps of one batch are timed; the per-step time is extrapolated to
    1000 steps, and every sample is counted as valid and unique (an upper bound for the paper).
(b) nag's default (experiments/experiment/generate.yaml: ODE Heun 15 steps + particle guidance)
    with the shipped NB201 prior, on ``--n`` samples: iid, with particle guidance, and guided
    by a noise-aware GNN predictor of CIFAR-10 accuracy (fit here on 1,000 table archs when the
    NB201 table is found, else left untrained: the cost is the same).

Guided rows add ``Guide(predictor, weight)``; the paper setting uses the same predictor. With the
table, the last column is the mean CIFAR-10 test accuracy (%) of the samples.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from nag.diffusion.guidance import Guide, GuidedSampler
from nag.diffusion.prior import Prior, load_prior
from nag.diffusion.sde import VESDE
from nag.diffusion.solvers import get_solver
from nag.diffusion.sampling import SamplerSettings, build_sampler
from nag.metrics import generation_metrics
from nag.modules.nets.transformer import DAGTransformer
from nag.spaces import get_space

REPO = Path(__file__).resolve().parents[1]
TABLE = REPO.parent / "shared" / "data" / "nb201" / "nb201.csv"
BATCH = 256


def table_accuracy():
    """arch -> CIFAR-10 test accuracy from the NB201 table, or None when the table is absent."""
    if not TABLE.is_file():
        return None
    from nag.tables.table import BenchmarkTable

    table = BenchmarkTable.from_csv(TABLE, get_space("nb201"))
    return dict(zip(table.archs, table.values("cifar10_test_acc").tolist()))


ACC = None


def predictor_for(prior: Prior, steps: int):
    """A noise-aware GNN predictor of CIFAR-10 accuracy (fit on 1,000 table archs if the table exists)."""
    from nag.modules.predictor import PredictorModule, fit_predictor

    space = prior.space
    if ACC and steps > 0:
        all_archs = sorted(ACC)
        idx = np.random.default_rng(0).choice(len(all_archs), 1000, replace=False)
        archs = [all_archs[i] for i in idx]
        acc = np.array([ACC[a] for a in archs])
        return fit_predictor(space, archs, {"cifar10_test_acc": acc}, prior.sde.config(), steps=steps), "fit"
    module = PredictorModule(space.describe(), space.adjacency, prior.sde.config(), ["cifar10_test_acc"])
    return module.predictor(space), "untrained"


def run(name: str, sampler: GuidedSampler, n: int, seed: int = 0) -> dict:
    prior = sampler.prior
    sampler.sample(min(n, 16), seed=seed + 1, batch_size=16)  # warm-up
    start = time.perf_counter()
    archs = sampler.sample(n, seed=seed)
    wall = time.perf_counter() - start
    m = generation_metrics(archs, prior.space, prior.train_archs())
    good = len({a for a in archs if prior.space.is_valid(a)})
    acc = float(np.mean([ACC[a] for a in archs])) if ACC else float("nan")
    return {"setting": name, "n": n, "nfe": sampler.solver.nfe, "wall_s": wall, "valid_unique": good,
            "archs_per_s": good / wall, "uniqueness": m["uniqueness"], "novelty": m.get("novelty", float("nan")),
            "acc": acc}


def paper(prior: Prior, guides, steps: int) -> dict:
    """Time ``steps`` PC steps (with corrector) of one batch, extrapolate to 1000."""
    solver = get_solver("pc", steps=steps, corrector="langevin", snr=0.16)
    sampler = GuidedSampler(prior, guides=guides, solver=solver, batch_size=BATCH)
    sampler.sample_tensor(16, seed=1, batch_size=16)  # warm-up
    start = time.perf_counter()
    sampler.sample_tensor(BATCH, seed=0)
    per_step = (time.perf_counter() - start) / steps
    wall = per_step * 1000
    return {"setting": "", "n": BATCH, "nfe": 2000, "wall_s": wall, "valid_unique": BATCH,
            "archs_per_s": BATCH / wall, "s_per_step": per_step}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1024, help="samples per nag setting")
    ap.add_argument("--paper-steps", type=int, default=50, help="PC steps timed for the paper setting")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, one per core)")
    ap.add_argument("--prior", default=None, help="prior.pt (default: the shipped NB201 prior)")
    ap.add_argument("--predictor-steps", type=int, default=300, help="fit steps of the guiding predictor")
    ap.add_argument("--guide-weight", type=float, default=1.0)
    ap.add_argument("--guide-scale", default="absolute", choices=("absolute", "standardized"),
                    help="guide units (docs/guidance.md); the figures recorded with this script use absolute weights")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    global ACC
    ACC = table_accuracy()
    space = get_space("nb201")
    prior = load_prior(args.prior, space=space)
    from nag.run import compose_config  # experiment=generate's sampler, exactly as the CLI composes it

    cfg = SamplerSettings.pick(compose_config(["experiment=generate", "wandb.mode=disabled"]))
    iid = SamplerSettings.pick(compose_config(["experiment=generate", "sampler=iid", "wandb.mode=disabled"]))
    predictor, how = predictor_for(prior, args.predictor_steps)

    torch.manual_seed(0)
    big = DAGTransformer(8, 7, space.adjacency, space.positions, d_model=64, n_layers=12, n_heads=8, d_ff=128)
    paper_prior = Prior(space, VESDE(0.1, 5.0), big, {"n_layers": 12, "n_heads": 8, "d_ff": 128})
    print(f"torch threads: {torch.get_num_threads()}; batch {BATCH}; guiding predictor: GNN ({how}); "
          f"nag prior: {prior.n_params:,} params; paper-size net: {paper_prior.n_params:,} params")

    rows = []
    for label, guided in (("unguided", False), ("guided", True)):
        guides = [Guide(predictor, weight=args.guide_weight, scale=args.guide_scale)] if guided else []
        r = paper(paper_prior, guides, args.paper_steps)
        r["setting"] = f"(a) paper PC 1000+Langevin, 12 layers, {label} [extrapolated from {args.paper_steps} steps]"
        rows.append(r)
        solver = f"{cfg.solver.name}{cfg.solver.steps}"
        if not guided:
            rows.append(run(f"(b) nag {solver}, iid, {label}", build_sampler(prior, iid, guides), args.n))
        rows.append(run(f"(b) nag {solver} + particle guidance, {label}", build_sampler(prior, cfg, guides), args.n))

    print(f"{'setting':<86} {'nfe':>5} {'wall_s':>8} {'valid uniq':>10} {'archs/s':>9} {'uniq':>6} {'novel':>6} "
          f"{'c10 acc':>7}")
    for r in rows:
        print(f"{r['setting']:<86} {r['nfe']:>5} {r['wall_s']:>8.2f} {r['valid_unique']:>10} {r['archs_per_s']:>9.2f} "
              f"{r.get('uniqueness', float('nan')):>6.3f} {r.get('novelty', float('nan')):>6.3f} {r.get('acc', float('nan')):>7.2f}")
    base = rows[0]["archs_per_s"]
    print(f"speed-up of nag's default over the paper setting (unguided): {rows[2]['archs_per_s'] / base:.0f}x")


if __name__ == "__main__":
    main()
