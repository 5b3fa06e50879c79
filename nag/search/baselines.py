"""Baseline search methods: random search, regularised evolution, local search.

All run in ``nag.search.loop.run_search`` with the same budget semantics (distinct queries).
"""
from __future__ import annotations

from nag.errors import ConfigError
from nag.search.loop import SEARCHERS, SearchContext, Searcher
from nag.spaces.base import Arch, SearchSpace


@SEARCHERS.register("random")
class RandomSearch(Searcher):
    """Evaluate uniformly drawn, not yet evaluated archs, ``batch`` per round (evaluated together,
    e.g. on parallel workers). The archs drawn do not depend on ``batch``."""

    name = "random"

    def __init__(self, space: SearchSpace, batch: int = 1) -> None:
        super().__init__(space)
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ConfigError(f"random search needs batch >= 1 (archs evaluated per round), got {batch!r}")
        self.batch = batch

    def step(self, ctx: SearchContext) -> None:
        ctx.query_many(ctx.draw_unseen(min(self.batch, ctx.remaining)))


@SEARCHERS.register("evolution")
class RegularizedEvolution(Searcher):
    """Regularised (aging) evolution, Real et al. 2019.

    The population is the ``population`` most recently evaluated archs (so it is derived from
    the history and needs no state of its own). Each round a tournament of ``sample_size`` picks
    the best as parent and one mutation of it (not yet evaluated) is evaluated.
    """

    name = "evolution"

    def __init__(self, space: SearchSpace, population: int = 20, sample_size: int = 5, max_tries: int = 50):
        super().__init__(space)
        if not 1 <= sample_size <= population:
            raise ConfigError(f"evolution needs 1 <= sample_size <= population, got {sample_size}, {population}")
        self.population = population
        self.sample_size = sample_size
        self.max_tries = max_tries

    def step(self, ctx: SearchContext) -> None:
        if ctx.n_queries < self.population:
            for arch in ctx.sample_unseen(1):
                ctx.query(arch)
            return
        pop = ctx.history[-self.population:]
        picks = ctx.rng.choice(len(pop), size=self.sample_size, replace=False)
        parent = max((pop[i] for i in picks), key=lambda q: q.value).arch
        child = self._child(ctx, parent)
        ctx.query(child)

    def _child(self, ctx: SearchContext, parent: Arch) -> Arch:
        for _ in range(self.max_tries):
            child = self.space.mutate(parent, ctx.rng)
            if not ctx.seen(child):
                return child
        return ctx.sample_unseen(1)[0]  # the parent's neighbourhood is used up


@SEARCHERS.register("local")
class LocalSearch(Searcher):
    """First-improvement hill climbing over ``space.neighbours`` with random restarts.

    It starts from the best of ``n_init`` random archs, evaluates the current arch's neighbours
    in random order and moves to the first that is better; when none is, it restarts from a
    random arch. ``extra`` keeps the current arch and its neighbours still to try.
    """

    name = "local"

    def __init__(self, space: SearchSpace, n_init: int = 1):
        super().__init__(space)
        self.n_init = n_init

    def step(self, ctx: SearchContext) -> None:
        if ctx.n_queries < self.n_init:
            for arch in ctx.sample_unseen(1):
                ctx.query(arch)
            if ctx.n_queries == self.n_init:
                self._move_to(ctx, ctx.best().arch)
            return
        while ctx.remaining > 0:
            current = ctx.extra.get("current")
            if current is None:  # restart
                arch = ctx.sample_unseen(1)
                if not arch:
                    return
                ctx.query(arch[0])
                self._move_to(ctx, arch[0])
                return
            pending = ctx.extra["pending"]
            while pending and ctx.seen(self.space.parse(pending[0])):
                pending.pop(0)
            if not pending:  # local optimum: restart next time round the loop
                ctx.extra["current"] = None
                continue
            nbr = self.space.parse(pending.pop(0))
            if ctx.query(nbr) > ctx.evaluator.evaluate(self.space.parse(current)):
                self._move_to(ctx, nbr)
            return

    def _move_to(self, ctx: SearchContext, arch: Arch) -> None:
        nbrs = self.space.neighbours(arch)
        order = ctx.rng.permutation(len(nbrs))
        ctx.extra["current"] = self.space.format(arch)
        ctx.extra["pending"] = [self.space.format(nbrs[i]) for i in order]
