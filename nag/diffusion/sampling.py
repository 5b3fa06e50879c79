"""The one sampler builder: a ``GuidedSampler`` from a prior, guides and ``SamplerSettings``.

``SamplerSettings`` are the sampling keys every generating experiment shares (``solver``,
``batch_size``, ``max_norm_ratio``, ``min_uniqueness``, ``diversity``); the ``sampler/`` and ``solver/`` config groups
fill them. ``build_sampler(prior, settings, guides)`` turns them into a sampler, adding a
``DiversityGuide`` (particle guidance) when ``diversity.weight > 0``.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, ClassVar

from pydantic import Field, field_validator
from torch import Tensor

from nag.diffusion.guidance import MIN_UNIQUENESS, BaseGuide, DiversityGuide, GuidedSampler
from nag.diffusion.solvers import DEFAULT_SOLVER, SolverConfig
from nag.schema import FactoryConfig, Settings, plain, signature_defaults


def time_window(lo: float, hi: float) -> Callable[[Tensor], Tensor]:
    """Guidance schedule that is 1 for ``lo < t < hi`` and 0 elsewhere. t: [B] -> [B]."""

    def window(t: Tensor) -> Tensor:
        return ((t > lo) & (t < hi)).to(t.dtype)

    return window


class DiversityConfig(FactoryConfig):
    """The ``diversity:`` block: particle guidance (``DiversityGuide``'s settings) and its time
    ``window``. ``weight`` 0 samples iid.

    ``window: [lo, hi]`` limits the repulsion to ``lo < t < hi``, where the samples choose their
    architecture: earlier, the denoised estimates of all samples are close and the repulsion only
    throws states off the data; later, it fights the score.
    """

    kind: ClassVar[str] = "diversity guide"

    weight: Annotated[float, Field(ge=0)] = 0.0
    window: tuple[Annotated[float, Field(ge=0)], float] | None = None

    @classmethod
    def factory_for(cls, data: Mapping[str, Any]) -> Any:
        return DiversityGuide

    @field_validator("window")
    @classmethod
    def _ordered(cls, window: tuple[float, float] | None) -> tuple[float, float] | None:
        if window is not None and not window[0] < window[1]:
            raise ValueError(f"a window is [lo, hi] with 0 <= lo < hi; got {list(window)}")
        return window

    def guide(self) -> DiversityGuide | None:
        """The DiversityGuide of these settings, or None for weight 0."""
        if not self.weight:
            return None
        settings = self.settings()
        if self.window is not None:
            settings["schedule"] = time_window(*self.window)
        return DiversityGuide(weight=self.weight, **settings)


_SAMPLER_DEFAULTS = signature_defaults(GuidedSampler)  # GuidedSampler states them; not repeated here


class SamplerSettings(Settings):
    """How to sample from a prior: the keys ``solver``, ``batch_size``, ``max_norm_ratio``,
    ``min_uniqueness`` (the collapse guard, ``GuidedSampler``'s) and ``diversity`` of a generating
    experiment (config groups ``solver/`` and ``sampler/``)."""

    settings_name: ClassVar[str] = "sampler"

    solver: SolverConfig = SolverConfig(name=DEFAULT_SOLVER)
    batch_size: Annotated[int, Field(ge=1)] = _SAMPLER_DEFAULTS["batch_size"]
    max_norm_ratio: Annotated[float, Field(gt=0)] | None = _SAMPLER_DEFAULTS["max_norm_ratio"]
    min_uniqueness: Annotated[float, Field(gt=0, le=1)] | None = MIN_UNIQUENESS
    diversity: DiversityConfig = DiversityConfig()

    @classmethod
    def pick(cls, cfg: Any) -> SamplerSettings:
        """The sampler settings among the keys of an experiment config."""
        cfg = plain(cfg) or {}
        return cls(**{k: cfg[k] for k in cls.model_fields if k in cfg})


def build_sampler(
    prior: Any, settings: SamplerSettings | Mapping[str, Any] | None = None, guides: Sequence[BaseGuide] = (),
    progress: bool = False,
) -> GuidedSampler:
    """The GuidedSampler of ``settings`` over ``prior``: ``guides`` first (e.g. predictor guides),
    then the DiversityGuide of ``settings.diversity`` when its weight is > 0."""
    settings = SamplerSettings.from_any(settings)
    guides = list(guides)
    diversity = settings.diversity.guide()
    if diversity is not None:
        guides.append(diversity)
    solver = {"name": settings.solver.name, **settings.solver.settings()}
    return GuidedSampler(
        prior, guides=guides, solver=solver, batch_size=settings.batch_size,
        max_norm_ratio=settings.max_norm_ratio, progress=progress, min_uniqueness=settings.min_uniqueness,
    )


def timed_sample(sampler: GuidedSampler, n: int, seed: int) -> tuple[Tensor, list[Any], float]:
    """``n`` raw samples ``[n, N, V]``, their decoded archs, and the seconds it took (decoding included)."""
    start = time.perf_counter()
    x = sampler.sample_tensor(n, seed=seed)
    archs = sampler.prior.space.decode(x) if n else []
    return x, archs, time.perf_counter() - start


__all__ = ["DiversityConfig", "SamplerSettings", "build_sampler", "time_window", "timed_sample"]
