"""``experiment=generate``: sample ``n`` architectures from a trained prior and measure them.

Writes ``archs.txt`` (one ``space.format`` string per line). Results
(``nag.metrics.sampling_report``): ``n``, ``validity``, ``uniqueness``, ``uniqueness_iso``,
``novelty``, ``op_kl`` (against the prior's training split), ``validity_threshold``,
``n_unique``, ``wall_s``, ``archs_per_s``, ``unique_archs_per_s``, ``nfe``.
"""
from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from nag.diffusion.prior import load_prior
from nag.diffusion.sampling import SamplerSettings, build_sampler, timed_sample
from nag.experiments import build_space, experiment, run_dir
from nag.experiments.config import PositiveInt, SamplingConfig
from nag.io import atomic_write_text
from nag.metrics import sampling_report


class GenerateConfig(SamplingConfig):
    n: PositiveInt


@experiment("generate", schema=GenerateConfig)
def generate(cfg: DictConfig) -> dict[str, Any]:
    space = build_space(cfg)
    prior = load_prior(cfg.prior.path, space)
    sampler = build_sampler(prior, SamplerSettings.pick(cfg))
    x, archs, wall = timed_sample(sampler, cfg.n, cfg.seed)
    atomic_write_text(run_dir() / "archs.txt", "".join(space.format(a) + "\n" for a in archs))
    return sampling_report(x, archs, space, prior.train_archs(), wall, sampler.solver.nfe)


__all__ = ["GenerateConfig", "generate"]
