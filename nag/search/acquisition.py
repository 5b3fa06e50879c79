"""Acquisition functions over an ensemble surrogate's mean and standard deviation.

An acquisition maps ``mean [B], std [B]`` (the surrogate's prediction for B candidates, in the
units the surrogate was fitted in), the best observed value ``best`` and a numpy generator to
scores ``[B]``; higher is better. Register new ones with ``@ACQUISITIONS.register(name)``.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np
from scipy.stats import norm

from nag.registry import Registry
from nag.schema import check_settings

Acquisition = Callable[..., np.ndarray]  # (mean, std, best, rng) -> scores

ACQUISITIONS: Registry[np.ndarray] = Registry("acquisition function", group="nag.acquisitions")

_STD_FLOOR = 1e-9


@ACQUISITIONS.register("ei")
def expected_improvement(
    mean: np.ndarray, std: np.ndarray, best: float, rng: np.random.Generator | None = None, xi: float = 0.0
) -> np.ndarray:
    """E[max(f - best - xi, 0)] under f ~ N(mean, std^2)."""
    std = np.maximum(std, _STD_FLOOR)
    z = (mean - best - xi) / std
    return (mean - best - xi) * norm.cdf(z) + std * norm.pdf(z)


@ACQUISITIONS.register("pi")
def probability_of_improvement(
    mean: np.ndarray, std: np.ndarray, best: float, rng: np.random.Generator | None = None, xi: float = 0.0
) -> np.ndarray:
    """P(f > best + xi) under f ~ N(mean, std^2)."""
    return norm.cdf((mean - best - xi) / np.maximum(std, _STD_FLOOR))


@ACQUISITIONS.register("ucb")
def upper_confidence_bound(
    mean: np.ndarray, std: np.ndarray, best: float = 0.0, rng: np.random.Generator | None = None, kappa: float = 1.0
) -> np.ndarray:
    """mean + kappa * std."""
    return mean + kappa * std


@ACQUISITIONS.register("ts")
def thompson_sampling(
    mean: np.ndarray, std: np.ndarray, best: float = 0.0, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Independent Thompson sampling (as in BANANAS): one draw of f ~ N(mean, std^2) per candidate."""
    if rng is None:
        raise ValueError("thompson sampling needs a numpy generator (rng)")
    return mean + std * rng.standard_normal(np.shape(mean))


def get_acquisition(name: str, **params: Any) -> Acquisition:
    """The acquisition registered as ``name`` with its parameters bound (e.g. ``kappa`` for ucb)."""
    fn = ACQUISITIONS.get(name)
    check_settings(f"acquisition function {name!r}", fn, params, skip=4)  # mean, std, best, rng
    return functools.partial(fn, **params) if params else fn


def list_acquisitions(pattern: str = "*") -> list[str]:
    return ACQUISITIONS.names(pattern)
