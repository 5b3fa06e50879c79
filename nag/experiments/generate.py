"""experiment=generate: sample architectures from a trained prior and measure them.

Also home of the sampling helpers that train_prior reuses for its own evaluation, so both
experiments sample and score in exactly one way.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from nag.diffusion.guidance import BaseGuide, DiversityGuide, GuidedSampler
from nag.diffusion.prior import Prior, default_prior_path, load_prior
from nag.experiments import build_space, call_with_config, experiment, plain, run_dir
from nag.errors import ConfigError
from nag.io import atomic_write_text


def set_threads(cfg: DictConfig) -> None:
    """Apply ``torch_threads`` (null keeps torch's default: one per core)."""
    threads = cfg.get("torch_threads")
    if threads:
        torch.set_num_threads(int(threads))


def time_window(lo: float, hi: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """Guidance schedule that is 1 for ``lo < t < hi`` and 0 elsewhere. t: [B] -> [B]."""
    if not 0.0 <= lo < hi:
        raise ConfigError(f"diversity.window must be [lo, hi] with 0 <= lo < hi, got [{lo}, {hi}]")

    def window(t: torch.Tensor) -> torch.Tensor:
        return ((t > lo) & (t < hi)).to(t.dtype)

    return window


def build_sampler(prior: Prior, cfg: DictConfig, guides: Sequence[BaseGuide] = ()) -> GuidedSampler:
    """The GuidedSampler of ``cfg.solver``, ``cfg.batch_size``, ``cfg.diversity`` and ``cfg.max_norm_ratio``.

    ``diversity.weight`` > 0 adds particle guidance (``DiversityGuide``): samples repel each
    other and ``diversity.memory`` earlier samples, which lifts uniqueness past the iid
    (birthday) bound. ``diversity.window: [lo, hi]`` limits it to ``lo < t < hi``, where the
    samples choose their architecture: earlier, the denoised estimates of all samples are close
    and the repulsion only throws states off the data; later, it fights the score. Weight 0
    samples iid. ``guides`` (e.g. predictor guides) come first.
    """
    diversity = dict(plain(cfg.get("diversity")) or {})
    window = diversity.pop("window", None)
    if window is not None:
        diversity["schedule"] = time_window(*map(float, window))
    guides = list(guides)
    if float(diversity.get("weight", 0.0)) > 0:
        guides.append(call_with_config("diversity guide", "diversity", DiversityGuide, diversity))
    return GuidedSampler(
        prior, guides=guides, solver=plain(cfg.solver), batch_size=int(cfg.batch_size),
        max_norm_ratio=cfg.get("max_norm_ratio"),
    )


def sample_and_measure(prior: Prior, cfg: DictConfig, n: int, seed: int, out_dir: Path | None = None) -> dict[str, Any]:
    """Sample ``n`` archs, time it, and score them (generation metrics against the training split).

    Writes ``archs.txt`` (one ``space.format`` string per line) into ``out_dir`` when given.
    """
    from nag.metrics import generation_metrics, validity_threshold

    space = prior.space
    sampler = build_sampler(prior, cfg)
    start = time.perf_counter()
    x = sampler.sample_tensor(n, seed=seed)
    archs = space.decode(x) if n else []
    wall = time.perf_counter() - start
    metrics = generation_metrics(archs, space, train_archs=prior.train_archs())
    n_unique = len(set(archs))
    if out_dir is not None:
        atomic_write_text(Path(out_dir) / "archs.txt", "".join(space.format(a) + "\n" for a in archs))
    return {
        **{k: v for k, v in metrics.items() if isinstance(v, (int, float, str))},
        "validity_threshold": float(validity_threshold(x, space)),
        "n": n,
        "n_unique": n_unique,
        "wall_s": wall,
        "archs_per_s": n / wall if wall > 0 else float("inf"),
        "unique_archs_per_s": n_unique / wall if wall > 0 else float("inf"),
        "nfe": sampler.solver.nfe,
    }


def load_configured_prior(cfg: DictConfig, space: Any) -> Prior:
    """``prior.path`` if set, else the prior nag ships for the space."""
    path = (plain(cfg.get("prior")) or {}).get("path")
    return load_prior(path or default_prior_path(space.name), space=space)


@experiment("generate")
def generate(cfg: DictConfig) -> dict[str, Any]:
    set_threads(cfg)
    space = build_space(cfg)
    prior = load_configured_prior(cfg, space)
    return sample_and_measure(prior, cfg, int(cfg.n), int(cfg.seed), out_dir=run_dir())


__all__ = ["time_window", "build_sampler", "generate", "load_configured_prior", "sample_and_measure", "set_threads"]
