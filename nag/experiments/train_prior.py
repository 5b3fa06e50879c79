"""experiment=train_prior: train a diffusion prior on a space's architectures and measure it.

Writes into the run folder: ``prior.pt`` (EMA weights, see nag.diffusion.prior), ``last.ckpt``
(Lightning training state; rerunning with the same ``hydra.run.dir`` resumes from it),
``archs.txt`` (the evaluation samples) and results.json. ``save_default=true`` also writes
the space's default prior: ``nag/assets/priors/<space>.pt`` for nag's own spaces, the path a
plugin declares (entry-point group ``nag.priors``) for a plugin's; a plugin space that declares
none is refused before training.
"""
from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from omegaconf import DictConfig

from nag.diffusion.prior import Prior, save_prior, writable_default_prior_path
from nag.diffusion.sampling import SamplerSettings, build_sampler, timed_sample
from nag.diffusion.sde import SDEConfig
from nag.experiments import build_space, experiment, plain, run_dir, trainer_settings
from nag.experiments.config import PositiveInt, SamplingConfig
from nag.io import atomic_write_text
from nag.metrics import sampling_report
from nag.modules.arch_data import ArchDataConfig, ArchDataModule, to_state
from nag.modules.nets import ScoreNetConfig
from nag.modules.score import ScoreModule, ScoreTrainConfig, dsm_loss
from nag.modules.trainer import build_trainer


class TrainPriorConfig(SamplingConfig):
    save_default: bool
    data: ArchDataConfig
    sde: SDEConfig
    net: ScoreNetConfig
    train: ScoreTrainConfig
    n: PositiveInt


@torch.no_grad()
def dataset_loss(prior: Prior, x0: torch.Tensor, repeats: int = 4, seed: int = 0, batch: int = 4096) -> float:
    """Mean DSM loss of the prior's (EMA) network over ``x0`` [M, N, V], with fixed noise draws."""
    gen = torch.Generator().manual_seed(seed)
    total, count = 0.0, 0
    for _ in range(repeats):
        for chunk in x0.split(batch):
            total += dsm_loss(prior.net, prior.sde, chunk, gen).item() * len(chunk)
            count += len(chunk)
    return total / count


def _trainer(cfg: DictConfig, out: Path) -> Any:
    from nag.wandb_utils import lightning_logger

    train = cfg.train
    return build_trainer(
        trainer_settings(cfg),
        max_steps=int(train.max_steps),
        logger=lightning_logger("prior/"),
        callbacks=[
            ModelCheckpoint(dirpath=out, filename="step{step}", save_last=True, save_top_k=0,
                            every_n_train_steps=int(train.ckpt_every)),
            TQDMProgressBar(refresh_rate=int(train.get("progress_every", 50))),
        ],
        log_every_n_steps=int(train.get("log_every", 50)),
        default_root_dir=str(out),
        enable_checkpointing=True,
        limit_val_batches=0,
    )


@experiment("train_prior", schema=TrainPriorConfig)
def train_prior(cfg: DictConfig) -> dict[str, Any]:
    out = run_dir()
    space = build_space(cfg)
    default_path = writable_default_prior_path(space.name) if cfg.save_default else None  # refused before training
    seed_everything(int(cfg.seed), workers=True, verbose=False)
    data = ArchDataModule(space, **plain(cfg.data))
    optim = {k: cfg.train[k] for k in ("lr", "warmup_steps", "ema_decay", "grad_clip")}
    module = ScoreModule.for_space(space, plain(cfg.sde), plain(cfg.net), **optim)

    last = out / "last.ckpt"
    start = time.perf_counter()
    with warnings.catch_warnings():  # the EMA copy is in eval mode on purpose
        warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode")
        _trainer(cfg, out).fit(module, datamodule=data, ckpt_path=str(last) if last.is_file() else None)
    train_s = time.perf_counter() - start

    module.cpu()  # sampling and checkpoints live on the CPU whatever the trainer used
    prior = Prior(space, module.sde, module.ema, plain(cfg.net), data.split_info())
    train_loss = dataset_loss(prior, data.train_states)
    losses = {"train_loss": train_loss}
    heldout = data.heldout_archs[: len(data.train_archs)]
    if heldout:  # the same loss on archs never trained on: a gap to train_loss means memorisation
        losses["heldout_loss"] = dataset_loss(prior, to_state(space, heldout))
    extra = {"steps": int(module.global_step), "train_loss": train_loss, "recipe": plain(cfg.train)}
    save_prior(prior, out / "prior.pt", extra=extra)
    if default_path is not None:
        save_prior(prior, default_path, extra=extra)

    sampler = build_sampler(prior, SamplerSettings.pick(cfg))  # evaluation: as experiment=generate
    x, archs, wall = timed_sample(sampler, cfg.n, cfg.seed)
    atomic_write_text(out / "archs.txt", "".join(space.format(a) + "\n" for a in archs))
    sampled = sampling_report(x, archs, space, prior.train_archs(), wall, sampler.solver.nfe)
    return {
        **losses,
        "steps": int(module.global_step),
        "train_wall_s": train_s,
        "n_params": prior.n_params,
        "n_train": len(data.train_archs),
        **{k: v for k, v in sampled.items() if k not in ("wall_s",)},
        "sample_wall_s": sampled["wall_s"],
        "wall_s": time.perf_counter() - start,
    }


__all__ = ["TrainPriorConfig", "dataset_loss", "train_prior"]
