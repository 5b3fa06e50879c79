"""Bayesian optimisation over architectures with an ensemble surrogate and a pluggable pool.

Each round (after ``n_init`` random queries):

1. refit the surrogate (an ensemble predictor, clean t=0 predictions) on every evaluated arch,
   its targets the observed values under ``target_transform`` (``nag.search.targets``),
2. build a candidate pool with the acquisition optimiser (``POOL_OPTIMIZERS``):
   ``random_pool`` (uniform samples), ``mutation_pool`` (BANANAS: mutations of the best archs),
   ``diffusion`` (guided generation from a trained prior) or ``prior_filter`` (unguided prior
   samples, filtered by the acquisition),
3. score the pool by the acquisition (``ACQUISITIONS``: ei, pi, ucb, ts),
4. evaluate the top ``q`` candidates; ``ctx.extra["sources"]`` counts the queries per part of the
   pool that proposed them (``PoolOptimizer.source_of``: e.g. ``guided`` vs ``mutation``).

Pools never contain an evaluated arch nor, by default, one isomorphic to an evaluated arch
(``space.canonical``): such a query would cost budget and teach the surrogate nothing.
"""
from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Annotated, Any, Callable, ClassVar

import numpy as np
from pydantic import Field

from nag.errors import ConfigError
from nag.registry import Registry
from nag.schema import checked
from nag.search.acquisition import get_acquisition
from nag.search.loop import SEARCHERS, SearchContext, Searcher
from nag.search.targets import TARGET_TRANSFORMS, transform_targets
from nag.search.surrogate import DEFAULT_SDE, check_surrogate, fit_surrogate, predict_mean_std, takes_trainer, torch_threads
from nag.spaces.base import Arch, SearchSpace


PositiveInt = Annotated[int, Field(ge=1)]


# ----- acquisition optimisers (candidate pools) ------------------------------------------------
class PoolOptimizer(ABC):
    """Builds the candidates that the acquisition ranks. ``propose`` returns fresh archs only."""

    name: ClassVar[str] = "pool"

    def __init__(self, space: SearchSpace, pool_size: PositiveInt = 200, by_canonical: bool = True) -> None:
        self.space = space
        self.pool_size = pool_size
        self.by_canonical = by_canonical
        self.origin: dict[Arch, str] = {}  # where candidates of the last proposal came from, if mixed
        self.warm_start: Any = None  # a nag.search.transfer.WarmStart, set by BayesOpt when it has sources

    @abstractmethod
    def propose(self, ctx: SearchContext, surrogate: Any, targets: np.ndarray | None = None) -> list[Arch]:
        """Candidate archs, none evaluated yet, no repeats.

        ``targets`` [n]: the values of ``ctx.history`` the surrogate was fitted on (BO's
        transformed values; None = as observed).
        """

    def source_of(self, arch: Arch) -> str:
        """Which part of the optimiser proposed ``arch`` in the last round (default: its name)."""
        return self.origin.get(arch, self.name)

    def sde_config(self) -> dict[str, Any]:
        """The SDE the surrogate is trained under (a guided pool needs its prior's)."""
        return dict(DEFAULT_SDE)


POOL_OPTIMIZERS: Registry[PoolOptimizer] = Registry("acquisition optimiser", group="nag.pool_optimizers")


@POOL_OPTIMIZERS.register("random_pool")
class RandomPool(PoolOptimizer):
    """``pool_size`` uniformly drawn fresh archs."""

    name = "random_pool"

    def propose(self, ctx: SearchContext, surrogate: Any, targets: np.ndarray | None = None) -> list[Arch]:
        return ctx.sample_unseen(self.pool_size, by_canonical=self.by_canonical)


@POOL_OPTIMIZERS.register("mutation_pool")
class MutationPool(PoolOptimizer):
    """BANANAS-style pool: mutations (1..``max_edits`` node changes) of the ``n_parents`` best archs.

    A fraction ``random_frac`` of the pool is uniform samples, which keeps the search from
    collapsing onto one basin.
    """

    name = "mutation_pool"

    @checked
    def __init__(
        self,
        space: SearchSpace,
        pool_size: PositiveInt = 200,
        n_parents: PositiveInt = 10,
        max_edits: PositiveInt = 1,
        random_frac: Annotated[float, Field(ge=0, le=1)] = 0.0,
        by_canonical: bool = True,
    ) -> None:
        super().__init__(space, pool_size, by_canonical)
        self.n_parents = n_parents
        self.max_edits = max_edits
        self.random_frac = random_frac

    def propose(self, ctx: SearchContext, surrogate: Any, targets: np.ndarray | None = None) -> list[Arch]:
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
        extra = ctx.sample_unseen(self.pool_size - len(pool), self.by_canonical)  # random share, dry neighbourhoods
        return ctx.fresh(pool + extra, self.by_canonical)[: self.pool_size]


EXHAUSTIVE_MAX = 1_000_000


@POOL_OPTIMIZERS.register("exhaustive")
class ExhaustivePool(PoolOptimizer):
    """Every fresh arch of a finite space (one per isomorphism class with ``by_canonical``).

    The acquisition then picks its global maximum: the ceiling of what any acquisition optimiser
    (random, mutation or guided pool) can reach with the same surrogate and acquisition.
    ``pool_size`` is ignored.
    """

    name = "exhaustive"

    def __init__(self, space: SearchSpace, pool_size: PositiveInt = 200, by_canonical: bool = True) -> None:
        super().__init__(space, pool_size, by_canonical)
        if space.size is None or space.size > EXHAUSTIVE_MAX:
            size = "not finite" if space.size is None else f"{space.size:.3g} archs"
            raise ConfigError(f"the exhaustive pool scores every arch of the space each round; {space.name!r} is {size} "
                              f"(at most {EXHAUSTIVE_MAX:,}). Use optimizer random_pool, mutation_pool or diffusion")

    def propose(self, ctx: SearchContext, surrogate: Any, targets: np.ndarray | None = None) -> list[Arch]:
        return ctx.fresh(self.space.enumerate(), self.by_canonical)


class AcquisitionObjective:
    """Differentiable guidance target from a surrogate: ``mean + kappa * std`` at ``(x_t, t)``.

    Its ``Guide`` standardizes it by the spread of the observed values (``guidance_scale``), so
    ``weight`` is unit-free: guidance with weight w samples roughly from
    ``prior(x) * exp(w * objective(x) / unit)``. Carries the surrogate's ``sde_config``/``space_name``
    so GuidedSampler can check it against the prior.
    """

    def __init__(self, surrogate: Any, kappa: float = 0.0) -> None:
        self.surrogate = surrogate
        self.kappa = float(kappa)
        self.sde_config = getattr(surrogate, "sde_config", None)
        self.space_name = getattr(surrogate, "space_name", None)

    def __call__(self, x: Any, t: Any) -> Any:
        """x: [B, N, V], t: [B] -> [B]."""
        mean, var = self.surrogate.predict(x, t)
        obj = mean[:, 0]
        if self.kappa:
            obj = obj + self.kappa * var[:, 0].clamp_min(1e-12).sqrt()
        return obj


class IncumbentMixture:
    """Trust region as a guide: the log-density, at noise level t, of a Gaussian mixture around
    the best evaluated archs. x: [B, N, V], t: [B] -> [B].

    Component j sits at ``alpha(t) * c_j`` (c_j = the state of the j-th best arch) with variance
    ``std(t)^2 + r^2`` per entry, ``r^2 = 8 * radius`` (one changed node moves a state by a
    squared distance of 8), and weight ``softmax(z_j / temperature)`` of the standardised
    values ``z_j``. Added to the surrogate guide, samples come from ``prior * mixture *
    exp(w * objective)``: high predicted value, within a few edits of the best archs, where the
    surrogate is trustworthy.
    """

    def __init__(self, sde: Any, centres: Any, values: np.ndarray, radius: float = 1.0, temperature: float = 1.0):
        import torch

        self.sde = sde
        self.sde_config = sde.config()
        self.centres = centres  # [K, N, V]
        z = (values - values.mean()) / max(float(values.std()), 1e-8)
        self.log_w = torch.log_softmax(torch.as_tensor(z / temperature, dtype=torch.float32), 0)  # [K]
        self.r2 = 8.0 * float(radius)

    def __call__(self, x: Any, t: Any) -> Any:
        alpha, std = self.sde.marginal_coeffs(t)  # [B]
        var = (std.pow(2) + self.r2).view(-1, 1)  # [B, 1]
        d2 = (x.unsqueeze(1) - alpha.view(-1, 1, 1, 1) * self.centres.unsqueeze(0)).pow(2).flatten(2).sum(-1)  # [B, K]
        return (self.log_w - d2 / (2 * var)).logsumexp(dim=1)


@POOL_OPTIMIZERS.register("diffusion")
class DiffusionPool(PoolOptimizer):
    """DiffusionNAG as the acquisition optimiser: the pool is sampled from a trained prior guided
    by the surrogate (``Guide(AcquisitionObjective(surrogate, kappa), weight)``).

    The guide is a noise-aware surrogate under the prior's SDE, fitted here each round;
    BO's own (clean) surrogate ranks the pool. ``weight=0`` samples the prior unguided (the ``prior_filter`` preset: sample, then filter
    by the acquisition). Generated archs that are evaluated (or isomorphic to one) are dropped;
    ``n_samples`` archs are generated per round, ``pool_size`` kept at most.

    Args:
        prior: a loaded Prior, a path to one (``save_prior``), or None for the shipped prior of
            the space (``nag.diffusion.prior.default_prior_path``).
        weight: guidance weight; with ``scale="standardized"`` in units of ``guidance_scale`` of the
            observed values (the spread of their better half), with ``"absolute"`` on the
            surrogate's raw output.
        kappa: exploration bonus of the guidance objective (UCB), in ensemble stds.
        schedule: guidance weight schedule ("constant", "linear", "cosine").
        solver: solver name or config (None: ``nag.diffusion.solvers.DEFAULT_SOLVER``).
        trust_top, trust_radius, trust_weight: an ``IncumbentMixture`` guide around the
            ``trust_top`` best archs (0 = none), radius in changed nodes, and its weight.
        diversity: weight of a ``DiversityGuide`` (particle guidance: the samples of a batch repel
            each other); 0 = none. Strong guidance alone sends most samples to the same few archs.
        guide_surrogate, guide_params: the noise-aware surrogate fitted for guidance (name in
            ``SURROGATES`` and its settings).
        mutations: also add this many ``mutation_pool`` candidates (local moves from the best
            archs) to the generated ones; 0 = generated candidates only.
        alternate: with ``mutations``, rounds alternate between a pool of generated candidates
            only and one of mutation candidates only (generated first), instead of one mixed pool.
        scale: "standardized" or "absolute" (``nag.diffusion.guidance.Guide``).
    """

    name = "diffusion"

    @checked
    def __init__(
        self,
        space: SearchSpace,
        pool_size: PositiveInt = 200,
        n_samples: PositiveInt = 200,
        prior: Any = None,
        weight: float = 10.0,
        kappa: float = 0.0,
        schedule: str = "constant",
        solver: Any = None,
        batch_size: PositiveInt = 256,
        trust_top: Annotated[int, Field(ge=0)] = 0,
        trust_radius: Annotated[float, Field(gt=0)] = 1.0,
        trust_weight: float = 1.0,
        diversity: Annotated[float, Field(ge=0)] = 0.0,
        guide_surrogate: str = "fast",
        guide_params: dict[str, Any] | None = None,
        mutations: Annotated[int, Field(ge=0)] = 0,
        alternate: bool = False,
        scale: str = "standardized",
        by_canonical: bool = True,
    ) -> None:
        super().__init__(space, pool_size, by_canonical)
        from nag.diffusion.guidance import SCALES

        if scale not in SCALES:
            raise ConfigError(f"unknown guidance scale {scale!r}; accepted: {list(SCALES)}")
        self.scale = scale
        if alternate and not mutations:
            raise ConfigError("alternate=True needs mutations > 0: it alternates generated and mutation pools. "
                              "For generated candidates only, set alternate=false too "
                              "(bo_nas: +method_params.optimizer_params.alternate=false)")
        self.alternate = alternate
        self._prior = prior
        self.local = MutationPool(space, pool_size=mutations, by_canonical=by_canonical) if mutations else None
        self.guide_surrogate_name = guide_surrogate
        self.guide_params = dict(guide_params or {})
        check_surrogate(guide_surrogate, {"noise_aware": True, **self.guide_params}, role="guide surrogate")
        self.trust_top, self.trust_radius, self.trust_weight = trust_top, trust_radius, trust_weight
        self.diversity = float(diversity)
        self.n_samples = n_samples
        self.weight = float(weight)
        self.kappa = float(kappa)
        self.schedule = schedule
        self.solver = solver
        self.batch_size = batch_size

    @property
    def prior(self) -> Any:
        """The prior, loaded on first use."""
        if self._prior is None or isinstance(self._prior, (str, bytes)) or hasattr(self._prior, "__fspath__"):
            from nag.diffusion.prior import load_prior

            self._prior = load_prior(self._prior, space=self.space)
        return self._prior

    def sde_config(self) -> dict[str, Any]:
        from nag.diffusion.sde import build_sde

        return build_sde(self.prior.sde).config()

    def propose(self, ctx: SearchContext, surrogate: Any, targets: np.ndarray | None = None) -> list[Arch]:
        from nag.diffusion.guidance import Guide
        from nag.diffusion.sampling import build_sampler

        y = history_values(ctx) if targets is None else np.asarray(targets, dtype=float)
        if self.alternate:
            n = ctx.extra.get("pool_rounds", 0)  # in the search state, so a resumed search keeps the rhythm
            ctx.extra["pool_rounds"] = n + 1
            if n % 2:
                local = self.local.propose(ctx, surrogate, y)
                self.origin = dict.fromkeys(local, "mutation")
                return local
        guides = []
        if self.weight:
            objective = AcquisitionObjective(self.guide_surrogate(ctx, y), self.kappa)
            unit = guidance_scale(y) if self.scale == "standardized" else None
            guides.append(Guide(objective, weight=self.weight, direction="max", schedule=self.schedule,
                                scale=self.scale, unit=unit))
        if self.trust_top and self.trust_weight:
            from nag.diffusion.sde import build_sde
            from nag.modules.arch_data import to_state

            top = sorted(ctx.history, key=lambda q: -q.value)[: self.trust_top]
            mixture = IncumbentMixture(build_sde(self.prior.sde), to_state(self.space, [q.arch for q in top]),
                                       np.array([q.value for q in top]), self.trust_radius)
            guides.append(Guide(mixture, weight=self.trust_weight, direction="max", scale="absolute"))  # a log-density
        # No collapse guard: the pool keeps only fresh archs, and the acquisition's kappa sets exploration.
        settings = {"batch_size": self.batch_size, "diversity": {"weight": self.diversity}, "min_uniqueness": None}
        if self.solver is not None:  # a name, a config mapping or a Solver
            solver = self.solver.config() if hasattr(self.solver, "config") else self.solver
            settings["solver"] = {"name": solver} if isinstance(solver, str) else solver
        sampler = build_sampler(self.prior, settings, guides)
        archs = ctx.fresh(sampler.sample(self.n_samples, seed=ctx.torch_seed()), self.by_canonical)[: self.pool_size]
        self.origin = dict.fromkeys(archs, "guided" if guides else "prior")
        if self.local is not None and not self.alternate:
            local = self.local.propose(ctx, surrogate, y)
            archs = ctx.fresh(archs + local, self.by_canonical)
            self.origin.update((a, "mutation") for a in archs[len(self.origin):])
        return archs

    def guide_surrogate(self, ctx: SearchContext, y: np.ndarray) -> Any:
        """A noise-aware surrogate under the prior's SDE, fitted on every evaluated arch (targets ``y`` [n]).

        BO ranks the pool with its own (clean) surrogate; as in DiffusionNAG, guidance needs a
        predictor that reads noisy states, and ranking is best done by a clean one.
        """
        params = {"noise_aware": True, **self.guide_params, "sde_config": self.sde_config()}
        archs = [q.arch for q in ctx.history]
        seed = ctx.torch_seed()
        if self.warm_start is not None:  # the sources' surrogates, noise-aware under the prior's SDE, plus residuals
            return self.warm_start.fit(
                lambda r: fit_surrogate(self.guide_surrogate_name, self.space, archs, r, seed=seed, **params),
                archs, y, params["sde_config"], noise_aware=True)
        return fit_surrogate(self.guide_surrogate_name, self.space, archs, y, seed=seed, **params)


def history_values(ctx: SearchContext) -> np.ndarray:
    """The observed values of ``ctx.history``, in query order. [n]."""
    return np.array([q.value for q in ctx.history], dtype=float)


def guidance_scale(y: np.ndarray) -> float:
    """Spread of the better half of the values ``y`` [n]: the unit of the guidance objective.

    The whole spread is dominated by broken archs (NB201: ~10% accuracy); measured on the better
    half, a unit is a difference that matters among good archs. The same rule as every
    standardized guide (``nag.diffusion.guidance.preferred_spread``), on the observed values.
    """
    from nag.diffusion.guidance import preferred_spread

    return preferred_spread(y, "upper")


POOL_OPTIMIZERS.register("prior_filter", functools.partial(DiffusionPool, weight=0.0),
                         source="nag.search.bo:DiffusionPool(weight=0)")


def build_pool_optimizer(name: str, space: SearchSpace, **kwargs: Any) -> PoolOptimizer:
    return POOL_OPTIMIZERS.build(name, space, **kwargs)


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
        q: archs evaluated per round, together (in flight at once on a parallel executor); the
            next round starts when all q are back (synchronous batches, docs/scale.md). The
            ``n_init`` random queries go q at a time too, the same archs as one at a time. The
            default n_init 5 is every BO preset's (NB201, tuning seeds 100-139, rank_gauss targets:
            5 beat 10 for both diffusion_bo and bananas; docs/search.md), so presets compare fairly.
        surrogate: name in ``SURROGATES`` ("fast" ensemble MLP, or "predictor" = fit_predictor);
            ``surrogate_params`` go to it (``ensemble`` = members M).
        trainer: Lightning settings (``nag.modules.trainer.TrainerSettings`` keys) for a surrogate
            that trains with Lightning ("predictor"); ignored by the others. A ``trainer`` in
            ``surrogate_params`` wins.
        target_transform: name in ``TARGET_TRANSFORMS`` (``rank_gauss``, ``none``): the observed
            values are mapped by it before every fit; the pool and the acquisition see the same units.
        normal_form: the surrogate reads every arch as ``space.normal_form(arch)`` (dead choices
            fixed), so it needs no data to learn that they do not matter. Off by default: on
            NB201 it ranks random cells better but did not shorten searches (docs/search.md).
        threads: torch intra-op threads during a round (1: tiny tensors; None: unchanged).
        sources: results of related tasks (``nag.search.sources.Source``): the initial design is
            their best archs and the surrogate a transfer surrogate (``nag.search.transfer``).
        transfer_strength: how many target observations the transfer surrogate's prior (equal,
            positive source weights) is worth.

    ``on_pool``: if set, called every model round as ``on_pool(ctx, pool, mean, std, scores)``
    before the queries (``pool`` fresh archs, the others [len(pool)]); for diagnostics
    (``benchmarks/bo_pool_diagnostics.py``). Not saved with the state.
    """

    name = "bo"
    on_pool: Callable[..., None] | None = None

    @checked
    def __init__(
        self,
        space: SearchSpace,
        acquisition: str = "ts",
        optimizer: str = "mutation_pool",
        n_init: PositiveInt = 5,
        q: PositiveInt = 1,
        acquisition_params: dict[str, Any] | None = None,
        optimizer_params: dict[str, Any] | None = None,
        surrogate: str = "fast",
        surrogate_params: dict[str, Any] | None = None,
        trainer: dict[str, Any] | None = None,
        target_transform: str = "rank_gauss",
        normal_form: bool = False,
        threads: PositiveInt | None = 1,
        sources: Sequence[Any] = (),
        transfer_strength: Annotated[float, Field(ge=0)] = 1.0,
    ) -> None:
        super().__init__(space)
        self.acquisition_name = acquisition
        self.acquisition = get_acquisition(acquisition, **(acquisition_params or {}))
        self.optimizer = build_pool_optimizer(optimizer, space, **(optimizer_params or {}))
        self.n_init = n_init
        self.q = q
        self.surrogate = surrogate
        self.surrogate_params = dict(surrogate_params or {})
        if trainer is not None and takes_trainer(surrogate):
            self.surrogate_params.setdefault("trainer", dict(trainer))
        self.threads = threads
        self.target_transform = target_transform
        self.normal_form = normal_form
        check_surrogate(surrogate, self.surrogate_params)  # fails now, not after n_init queries
        TARGET_TRANSFORMS.get(target_transform)
        self.warm_start = None
        if sources:
            from nag.search.transfer import WarmStart

            self.warm_start = WarmStart(sources, space, surrogate, self.surrogate_params, transfer_strength,
                                        view=self.surrogate_view)
        self.optimizer.warm_start = self.warm_start

    def targets(self, ctx: SearchContext) -> np.ndarray:
        """The surrogate's targets: the observed values under ``target_transform``. [n]."""
        return transform_targets(self.target_transform, history_values(ctx))

    def surrogate_view(self, archs: list[Arch]) -> list[Arch]:
        """``archs`` as the surrogate reads them (normal forms, if ``normal_form``)."""
        return [self.space.normal_form(a) for a in archs] if self.normal_form else archs

    def fit_surrogate(self, ctx: SearchContext, y: np.ndarray) -> Any:
        """The surrogate refitted on every evaluated arch, targets ``y`` [n] (seeded from the search's generator)."""
        archs = self.surrogate_view([q.arch for q in ctx.history])
        params = {"sde_config": self.optimizer.sde_config(), **self.surrogate_params}
        seed = ctx.torch_seed()
        if self.warm_start is not None:
            return self.warm_start.fit(lambda r: fit_surrogate(self.surrogate, self.space, archs, r, seed=seed, **params),
                                       archs, y, params["sde_config"], noise_aware=bool(params.get("noise_aware")))
        return fit_surrogate(self.surrogate, self.space, archs, y, seed=seed, **params)

    def step(self, ctx: SearchContext) -> None:
        if ctx.n_queries < self.n_init:  # source designs first, then up to q random archs at once
            design = self.warm_start.next_design(ctx) if self.warm_start is not None else None
            n = min(self.q, self.n_init - ctx.n_queries, ctx.remaining)
            ctx.query_many([design] if design is not None else ctx.draw_unseen(n))
            return
        y = self.targets(ctx)
        with torch_threads(self.threads):
            surrogate = self.fit_surrogate(ctx, y)
            pool = self.optimizer.propose(ctx, surrogate, y)
            fallback = not pool  # the optimiser found nothing fresh: a random arch keeps the search going
            pool = pool or ctx.sample_unseen(1)
            mean, std = predict_mean_std(surrogate, self.surrogate_view(pool))
        scores = self.acquisition(mean, std, float(y.max()), rng=ctx.rng)
        if self.on_pool is not None:
            self.on_pool(ctx, pool, mean, std, scores)
        sources = ctx.extra.setdefault("sources", {})  # queries per part of the pool that proposed them
        chosen = [pool[int(i)] for i in np.argsort(-scores, kind="stable")[: min(self.q, ctx.remaining)]]
        for arch in chosen:
            source = "random" if fallback else self.optimizer.source_of(arch)
            sources[source] = sources.get(source, 0) + 1
        ctx.query_many(chosen)  # a synchronous batch: the next round sees all q results (docs/scale.md)
