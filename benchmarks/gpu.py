"""nag on an accelerator: prior training, sampling, train_eval throughput, packed evaluations.

    python benchmarks/gpu.py [--device auto|cuda|cpu] [--out benchmarks/results/gpu.json] [--quick]

Runs on whatever ``--device`` gives (``auto``: CUDA when there is one, else the CPU) and prints
one table; ``--out`` also writes the figures as JSON. It needs only torch, lightning and nag:
no Hydra, OmegaConf, W&B or Ray (the GPU machines this is run on may lack them).

1. Prior training: optimiser steps/s of the NB201 score model (batch 256) through nag's Trainer
   factory, at nag's default size (4 layers, d 64) and the paper's (12 layers, 8 heads).
2. Sampling: archs/s with the paper's solver (predictor-corrector, 1000 steps, one Langevin
   corrector step each: 2,000 score calls) on the paper-size net, and with nag's default
   (probability-flow ODE, 15 Heun steps) on the shipped prior. ``--paper-steps`` below 1000 times
   that many steps and scales the time to 1000 (marked "extrapolated").
3. train_eval: images/s of a real training run of an NB201 cell network (C=16, N=5) on 32x32
   RGB inputs (random images and labels: the cost does not depend on the pixels).
4. Packing: ``--pack`` small evaluations (NB201 C=8, N=1) in separate processes on the same
   device at once, against the same evaluations one at a time: total images/s of each.

``--quick`` shrinks every size so the script finishes in about a minute on a CPU (the test runs it).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import TensorDataset

from nag.data.tasks import Task
from nag.diffusion.guidance import GuidedSampler
from nag.diffusion.prior import Prior, default_prior_path, load_prior
from nag.diffusion.sde import build_sde
from nag.evaluation.training import TrainBudget, train_eval_model
from nag.io import atomic_write_json
from nag.modules.arch_data import ArchDataModule
from nag.modules.nets import build_score_net
from nag.modules.score import ScoreModule
from nag.modules.trainer import TrainerSettings, build_trainer, quiet_lightning
from nag.spaces import get_space

SDE = {"name": "ve", "sigma_min": 0.1, "sigma_max": 5.0}
NAG_NET = {"name": "dag_transformer", "d_model": 64, "n_layers": 4, "n_heads": 4, "d_ff": 128, "mask": "adjacency"}
PAPER_NET = {"name": "dag_transformer", "d_model": 64, "n_layers": 12, "n_heads": 8, "d_ff": 128, "mask": "adjacency"}
PAPER_SOLVER = {"name": "pc", "steps": 1000, "predictor": "euler_maruyama", "corrector": "langevin", "snr": 0.16,
                "n_corrector": 1, "denoise": True}
NAG_SOLVER = {"name": "ode", "steps": 15, "method": "heun", "denoise": True}


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def prior_training(device: str, net: dict[str, Any], steps: int, batch: int) -> float:
    """Optimiser steps/s of the score model (time of the last ``steps`` of ``steps + 5``)."""
    space = get_space("nb201")
    data = ArchDataModule(space, split_ratio=1.0, batch_size=batch)
    module = ScoreModule.for_space(space, SDE, net)
    times: list[float] = []

    from lightning.pytorch.callbacks import Callback

    class StepClock(Callback):
        def on_train_batch_end(self, *args: Any) -> None:
            sync(device)
            times.append(time.perf_counter())

    settings = TrainerSettings(accelerator="gpu" if device.startswith("cuda") else device, devices=1)
    with quiet_lightning():
        build_trainer(settings, max_steps=steps + 5, logger=False, enable_progress_bar=False, limit_val_batches=0,
                      callbacks=[StepClock()]).fit(module, datamodule=data)
    return steps / (times[-1] - times[4])


def sampling(device: str, prior: Prior, solver: dict[str, Any], n: int, paper_steps: int | None = None) -> dict[str, Any]:
    """archs/s of ``n`` samples (one batch); with ``paper_steps``, time that many steps and scale."""
    solver = dict(solver)
    full = int(solver["steps"])
    if paper_steps is not None and paper_steps < full:
        solver["steps"] = paper_steps
    prior.net.to(device)
    sampler = GuidedSampler(prior, solver=solver, batch_size=n)
    sampler.sample_tensor(min(n, 8), seed=1)  # warm-up (kernels, allocator)
    sync(device)
    start = time.perf_counter()
    x = sampler.sample_tensor(n, seed=0)
    sync(device)
    wall = (time.perf_counter() - start) * full / int(solver["steps"])
    valid = sum(a is not None for a in prior.space.decode(x.cpu()))
    prior.net.to("cpu")
    return {"archs_per_s": n / wall, "valid": valid / n, "steps_timed": int(solver["steps"]),
            "extrapolated": int(solver["steps"]) != full}


def random_task(n_train: int, side: int = 32, classes: int = 10, seed: int = 0) -> Task:
    gen = torch.Generator().manual_seed(seed)

    def split(n: int) -> TensorDataset:
        return TensorDataset(torch.randn(n, 3, side, side, generator=gen), torch.randint(0, classes, (n,), generator=gen))

    return Task("random32", classes, (3, side, side), split(n_train), split(256), split(256), tuple(range(classes)))


def train_images_per_s(device: str, C: int, N: int, n_train: int, epochs: int, seed: int = 0) -> float:
    space = get_space("nb201", C=C, N=N)
    task = random_task(n_train)
    arch = space.sample(1, seed)[0]
    settings = TrainerSettings(accelerator="gpu" if device.startswith("cuda") else device)
    out = train_eval_model(lambda: space.build(arch, task), task, TrainBudget(epochs=epochs, batch_size=128, lr=0.05),
                           seed=seed, trainer=settings)
    return n_train * out["epochs"] / out["wall_s"]


def _packed_worker(args: tuple[str, int, int, int, int, int]) -> tuple[float, float]:
    device, C, N, n_train, epochs, seed = args
    torch.set_num_threads(1)
    start = time.perf_counter()
    train_images_per_s(device, C, N, n_train, epochs, seed)
    return start, time.perf_counter()


def packing(device: str, k: int, n_train: int, epochs: int) -> dict[str, float]:
    """Total images/s of ``k`` small evaluations one at a time, and all ``k`` at once (k processes)."""
    import multiprocessing as mp

    jobs = [(device, 8, 1, n_train, epochs, seed) for seed in range(k)]
    ctx = mp.get_context("spawn")  # CUDA cannot be used in forked children
    with ctx.Pool(1) as pool:
        pool.map(_packed_worker, jobs[:1])  # warm-up: imports, CUDA context
        start = time.perf_counter()
        pool.map(_packed_worker, jobs)
        serial = time.perf_counter() - start
    with ctx.Pool(k) as pool:
        pool.map(_packed_worker, jobs)  # warm-up of every worker
        start = time.perf_counter()
        pool.map(_packed_worker, jobs)
        packed = time.perf_counter() - start
    images = k * n_train * epochs
    return {"k": k, "serial_images_per_s": images / serial, "packed_images_per_s": images / packed,
            "speedup": serial / packed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures here as JSON")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a CPU smoke run)")
    parser.add_argument("--paper-steps", type=int, default=None, help="PC steps to time (default: 1000, quick: 10)")
    parser.add_argument("--pack", type=int, default=4, help="evaluations packed on the device at once")
    args = parser.parse_args()
    device = resolve_device(args.device)
    quick = args.quick
    paper_steps = args.paper_steps or (10 if quick else 1000)
    n = 64 if quick else 1024

    info = {"device": torch.cuda.get_device_name(0) if device.startswith("cuda") else platform.processor() or "cpu",
            "torch": torch.__version__, "threads": torch.get_num_threads(), "quick": quick}
    rows: dict[str, Any] = {"info": info}
    rows["prior_steps_per_s"] = {
        "nag (4x64)": prior_training(device, NAG_NET, 10 if quick else 200, 64 if quick else 256),
        "paper (12x64)": prior_training(device, PAPER_NET, 5 if quick else 200, 64 if quick else 256),
    }
    space = get_space("nb201")
    paper_prior = Prior(space, build_sde(SDE), build_score_net(PAPER_NET, space.num_nodes, space.num_ops,
                                                                space.adjacency, space.positions))
    rows["sampling"] = {
        "paper: PC 1000 + corrector, 12x64 net": sampling(device, paper_prior, PAPER_SOLVER, n, paper_steps),
        "nag default: ODE Heun 15, shipped prior": sampling(device, load_prior(default_prior_path("nb201"), space=space),
                                                           NAG_SOLVER, n),
    }
    rows["train_eval_images_per_s"] = {
        "NB201 C=16 N=5, 32x32": train_images_per_s(device, 16, 5, 256 if quick else 10000, 1),
    }
    rows["packing"] = packing(device, 2 if quick else args.pack, 128 if quick else 5000, 1)

    print(f"device: {info['device']} ({device}), torch {info['torch']}, {info['threads']} threads"
          + (", QUICK sizes" if quick else ""))
    for name, value in rows["prior_steps_per_s"].items():
        print(f"prior training   {name:<45} {value:10.1f} steps/s")
    for name, r in rows["sampling"].items():
        note = f" (timed {r['steps_timed']} steps, extrapolated)" if r["extrapolated"] else ""
        print(f"sampling         {name:<45} {r['archs_per_s']:10.1f} archs/s{note}")
    for name, value in rows["train_eval_images_per_s"].items():
        print(f"train_eval       {name:<45} {value:10.0f} images/s")
    p = rows["packing"]
    print(f"packing          {p['k']} x NB201 C=8 N=1 at once vs one at a time: {p['packed_images_per_s']:.0f} vs "
          f"{p['serial_images_per_s']:.0f} images/s ({p['speedup']:.2f}x)")
    if args.out is not None:
        atomic_write_json(args.out, rows)


if __name__ == "__main__":
    os.environ.setdefault("WANDB_MODE", "disabled")
    main()
