"""Bayesian optimisation over architectures with an ensemble surrogate and a pluggable pool.

Each round (after ``n_init`` random queries):

1. refit the surrogate (an ensemble predictor, clean t=0 predictions) on every evaluated arch,
2. build a candidate pool with the acquisition optimiser (``POOL_OPTIMIZERS``):
   ``random_pool`` (uniform samples), ``mutation_pool`` (BANANAS: mutations of the best archs),
   ``diffusion`` (guided generation from a trained prior) or ``prior_filter`` (unguided prior
   samples, filtered by the acquisition),
3. score the pool by the acquisition (``ACQUISITIONS``: ei, pi, ucb, ts),
4. evaluate the top ``q`` candidates.

Pools never contain an evaluated arch nor, by default, one isomorphic to an evaluated arch
(``space.canonical``): such a query would cost budget and teach the surrogate nothing.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar, Protocol

import numpy as np

from nag.errors import ConfigError
from nag.registry import Registry
from nag.search.acquisition import get_acquisition
from nag.search.loop import SEARCHERS, SearchContext, Searcher
from nag.spaces.base import Arch, SearchSpace


class Surrogate(Protocol):
    """What BO needs from a fitted model: ``predict(archs) -> (mean [B], std [B])``."""

    def predict(self, archs: Sequence[Arch]) -> tuple[np.ndarray, np.ndarray]: ...


# ----- acquisition optimisers (candidate pools) ------------------------------------------------
class PoolOptimizer(ABC):
    """Builds the candidates that the acquisition ranks. ``propose`` returns fresh archs only."""

    name: ClassVar[str] = "pool"

    def __init__(self, space: SearchSpace, pool_size: int = 200, by_canonical: bool = True) -> None:
        if pool_size < 1:
            raise ConfigError(f"pool_size must be >= 1, got {pool_size}")
        self.space = space
        self.pool_size = pool_size
        self.by_canonical = by_canonical

    @abstractmethod
    def propose(self, ctx: SearchContext, surrogate: Any) -> list[Arch]:
        """Candidate archs, none evaluated yet, no repeats."""


POOL_OPTIMIZERS: Registry[PoolOptimizer] = Registry("acquisition optimiser", group="nag.pool_optimizers")


@POOL_OPTIMIZERS.register("random_pool")
class RandomPool(PoolOptimizer):
    """``pool_size`` uniformly drawn fresh archs."""

    name = "random_pool"

    def propose(self, ctx: SearchContext, surrogate: Any) -> list[Arch]:
        return ctx.sample_unseen(self.pool_size, by_canonical=self.by_canonical)


@POOL_OPTIMIZERS.register("mutation_pool")
class MutationPool(PoolOptimizer):
    """BANANAS-style pool: mutations (1..``max_edits`` node changes) of the ``n_parents`` best archs.

    A fraction ``random_frac`` of the pool is uniform samples, which keeps the search from
    collapsing onto one basin.
    """

    name = "mutation_pool"

    def __init__(
        self,
        space: SearchSpace,
        pool_size: int = 200,
        n_parents: int = 10,
        max_edits: int = 1,
        random_frac: float = 0.0,
        by_canonical: bool = True,
    ) -> None:
        super().__init__(space, pool_size, by_canonical)
        if n_parents < 1 or max_edits < 1 or not 0.0 <= random_frac <= 1.0:
            raise ConfigError(
                f"mutation_pool needs n_parents >= 1, max_edits >= 1, 0 <= random_frac <= 1; got "
                f"{n_parents}, {max_edits}, {random_frac}"
            )
        self.n_parents = n_parents
        self.max_edits = max_edits
        self.random_frac = random_frac

    def propose(self, ctx: SearchContext, surrogate: Any) -> list[Arch]:
        n_random = int(round(self.random_frac * self.pool_size))
        n_mut = self.pool_size - n_random
        parents = [q.arch for q in sorted(ctx.history, key=lambda q: -q.value)[: self.n_parents]]
        pool: list[Arch] = []
        for _ in range(20):  # a few passes; stop once the pool is full or the neighbourhoods run dry
            children = []
            for i in range(n_mut - len(pool)):
                child = parents[i % len(parents)]
                for _ in range(int(ctx.rng.integers(1, self.max_edits + 1))):
                    child = self.space.mutate(child, ctx.rng)
                children.append(child)
            pool = ctx.fresh(pool + children, self.by_canonical)
            if len(pool) >= n_mut:
                break
        extra = ctx.sample_unseen(n_random + n_mut - len(pool), self.by_canonical) if len(pool) < self.pool_size else []
        return ctx.fresh(pool + extra, self.by_canonical)[: self.pool_size]


def build_pool_optimizer(name: str, space: SearchSpace, **kwargs: Any) -> PoolOptimizer:
    return POOL_OPTIMIZERS.get(name)(space, **kwargs)


# ----- surrogate ---------------------------------------------------------------------------------
class PredictorSurrogate:
    """An ensemble predictor fitted on the evaluated archs (targets standardised).

    ``predict`` returns the clean (t=0) ensemble mean and standard deviation, in standardised units.
    """

    def __init__(self, predictor: Any) -> None:
        self.predictor = predictor

    @classmethod
    def fit(
        cls, space: SearchSpace, archs: Sequence[Arch], y: np.ndarray, seed: int, **kwargs: Any
    ) -> "PredictorSurrogate":
        from nag.modules.predictor import fit_predictor

        return cls(fit_predictor(space, list(archs), y, ensemble=kwargs.pop("ensemble", 5), seed=seed, **kwargs))

    def predict(self, archs: Sequence[Arch]) -> tuple[np.ndarray, np.ndarray]:
        mean, var = self.predictor.predict_archs(list(archs), t=0.0)
        mean = np.asarray(mean.detach().cpu() if hasattr(mean, "detach") else mean, dtype=float).reshape(len(archs), -1)[:, 0]
        var = np.asarray(var.detach().cpu() if hasattr(var, "detach") else var, dtype=float).reshape(len(archs), -1)[:, 0]
        return mean, np.sqrt(np.maximum(var, 0.0))


def standardise(y: np.ndarray) -> np.ndarray:
    """(y - mean) / std, with std floored so a flat history stays finite."""
    return (y - y.mean()) / max(float(y.std()), 1e-8)


# ----- the BO searcher ---------------------------------------------------------------------------
@SEARCHERS.register("bo")
class BayesOpt(Searcher):
    """BO with an ensemble surrogate, an acquisition and a pluggable acquisition optimiser.

    Args:
        space: the search space.
        acquisition: name in ``ACQUISITIONS`` (ei, pi, ucb, ts); ``acquisition_params`` bind its
            parameters (e.g. ``{"kappa": 2.0}`` for ucb).
        optimizer: name in ``POOL_OPTIMIZERS``; ``optimizer_params`` go to its constructor.
        n_init: random queries before the first surrogate fit.
        q: archs evaluated per round.
        surrogate_params: keyword arguments of ``fit_predictor`` (``ensemble`` = members).
    """

    name = "bo"

    def __init__(
        self,
        space: SearchSpace,
        acquisition: str = "ts",
        optimizer: str = "mutation_pool",
        n_init: int = 10,
        q: int = 1,
        acquisition_params: dict[str, Any] | None = None,
        optimizer_params: dict[str, Any] | None = None,
        surrogate_params: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(space)
        if n_init < 1 or q < 1:
            raise ConfigError(f"bo needs n_init >= 1 and q >= 1, got n_init={n_init}, q={q}")
        self.acquisition_name = acquisition
        self.acquisition = get_acquisition(acquisition, **(acquisition_params or {}))
        self.optimizer = build_pool_optimizer(optimizer, space, **(optimizer_params or {}))
        self.n_init = n_init
        self.q = q
        self.surrogate_params = dict(surrogate_params or {})

    def fit_surrogate(self, ctx: SearchContext) -> Surrogate:
        archs = [q.arch for q in ctx.history]
        y = standardise(np.array([q.value for q in ctx.history], dtype=float))
        return PredictorSurrogate.fit(self.space, archs, y, seed=ctx.torch_seed(), **self.surrogate_params)

    def step(self, ctx: SearchContext) -> None:
        if ctx.n_queries < self.n_init:
            for arch in ctx.sample_unseen(1):
                ctx.query(arch)
            return
        surrogate = self.fit_surrogate(ctx)
        pool = self.optimizer.propose(ctx, surrogate)
        if not pool:
            pool = ctx.sample_unseen(1)
        mean, std = surrogate.predict(pool)
        best = float(np.max(surrogate.predict([ctx.best().arch])[0]))
        scores = self.acquisition(mean, std, best, rng=ctx.rng)
        for i in np.argsort(-scores, kind="stable")[: min(self.q, ctx.remaining)]:
            ctx.query(pool[int(i)])
