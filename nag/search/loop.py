"""The one search loop every method runs in: rounds, budget, stopping, resumable state.

A ``Searcher`` implements ``step(ctx)``: one round that evaluates one or more new archs through
``ctx.query``. Everything a searcher carries between rounds lives in the evaluator's history,
in ``ctx.rng`` and in ``ctx.extra`` (JSON-able), so ``run_search`` can save it every round and a
killed search resumes exactly where it stopped.
"""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from nag.errors import ConfigError
from nag.registry import Registry
from nag.evaluation.evaluators import Evaluator, Query
from nag.search.state import SearchState
from nag.spaces.base import Arch, SearchSpace

MAX_IDLE_ROUNDS = 100  # rounds in a row without a new query before the loop gives up


class SearchContext:
    """What a searcher sees during a round."""

    def __init__(
        self, space: SearchSpace, evaluator: Evaluator, rng: np.random.Generator, extra: dict[str, Any], budget: int
    ) -> None:
        self.space = space
        self.evaluator = evaluator
        self.rng = rng
        self.extra = extra
        self.budget = budget
        self._canon: set[Hashable] = set()
        self._canon_seen = 0
        self._keys: dict[Arch, Hashable] = {}  # arch -> space.canonical(arch): pools ask for the same archs every round

    # ----- budget and queries ------------------------------------------------------------
    @property
    def n_queries(self) -> int:
        return self.evaluator.n_queries

    @property
    def remaining(self) -> int:
        return self.budget - self.evaluator.n_queries

    @property
    def history(self) -> list[Query]:
        return self.evaluator.history

    def query(self, arch: Arch) -> float | None:
        """Evaluate ``arch``; None when it is new and the budget is spent."""
        if not self.evaluator.is_evaluated(arch) and self.remaining <= 0:
            return None
        return self.evaluator.evaluate(arch)

    def seen(self, arch: Arch) -> bool:
        return self.evaluator.is_evaluated(arch)

    def canonical(self, arch: Arch) -> Hashable:
        """``space.canonical(arch)``, computed once per arch in this search."""
        key = self._keys.get(arch)
        if key is None:
            key = self._keys[arch] = self.space.canonical(arch)
        return key

    def seen_canonical(self, arch: Arch) -> bool:
        """Whether an arch isomorphic to ``arch`` has been evaluated."""
        hist = self.evaluator.history
        for q in hist[self._canon_seen:]:
            self._canon.add(self.canonical(q.arch))
        self._canon_seen = len(hist)
        return self.canonical(arch) in self._canon

    def best(self) -> Query:
        return self.evaluator.best()

    def torch_seed(self) -> int:
        """A seed for torch work in this round, drawn from the search's generator."""
        return int(self.rng.integers(2**31 - 1))

    # ----- proposals ------------------------------------------------------------------------
    def fresh(self, archs: Iterable[Arch], by_canonical: bool = False) -> list[Arch]:
        """``archs`` without the evaluated ones and without repeats, order kept.

        With ``by_canonical`` an arch isomorphic to an evaluated one, or to an earlier one in the
        list, is dropped too.
        """
        out, keys = [], set()
        for a in archs:
            key = self.canonical(a) if by_canonical else a
            if key in keys or self.seen(a) or (by_canonical and self.seen_canonical(a)):
                continue
            keys.add(key)
            out.append(a)
        return out

    def sample_unseen(self, n: int, by_canonical: bool = False) -> list[Arch]:
        """Up to ``n`` distinct unevaluated archs drawn uniformly (fewer only if the space runs out)."""
        out: list[Arch] = []
        tries = 0
        while len(out) < n and tries < 20 * n + 100:
            batch = self.space.sample(n - len(out), self.rng)
            tries += len(batch)
            out = self.fresh(out + batch, by_canonical)
        if len(out) < n and self.space.size is not None:  # nearly exhausted finite space: draw from the rest
            taken = set(out)
            rest = [a for a in self.fresh(self.space.enumerate(), by_canonical) if a not in taken]
            take = self.rng.permutation(len(rest))[: n - len(out)]
            out = self.fresh(out + [rest[i] for i in take], by_canonical)
        return out[:n]


class Searcher(ABC):
    """A search method. ``step`` runs one round; all carried state goes through ``ctx``."""

    name: ClassVar[str] = "searcher"

    def __init__(self, space: SearchSpace) -> None:
        self.space = space

    @abstractmethod
    def step(self, ctx: SearchContext) -> None:
        """Evaluate at least one new arch via ``ctx.query`` (within ``ctx.remaining``)."""


SEARCHERS: Registry[Searcher] = Registry("search method", group="nag.searchers")


def build_searcher(name: str, space: SearchSpace, **kwargs: Any) -> Searcher:
    """The search method registered as ``name`` (random, evolution, local, bo)."""
    import nag.search.baselines  # noqa: F401  (registers the built-in methods)
    import nag.search.bo  # noqa: F401

    return SEARCHERS.build(name, space, **kwargs)


@dataclass
class SearchResult:
    """Outcome of a search. ``history`` is every distinct query in order."""

    method: str
    best_arch: Arch
    best_value: float
    n_queries: int
    queries_to_best: int
    rounds: int
    wall_s: float
    history: list[Query] = field(repr=False, default_factory=list)

    def best_so_far(self) -> np.ndarray:
        """[n_queries] running maximum of the objective."""
        return np.maximum.accumulate(np.array([q.value for q in self.history], dtype=float))

    def queries_to_reach(self, threshold: float) -> int | None:
        """First query index whose value is >= ``threshold`` (None if never)."""
        for q in self.history:
            if q.value >= threshold:
                return q.index
        return None

    def summary(self, space: SearchSpace) -> dict[str, Any]:
        """Numbers and strings for results.json."""
        return {
            "method": self.method,
            "best_arch": space.format(self.best_arch),
            "best_value": self.best_value,
            "n_queries": self.n_queries,
            "queries_to_best": self.queries_to_best,
            "rounds": self.rounds,
            "wall_s": self.wall_s,
        }


def run_search(
    searcher: Searcher,
    evaluator: Evaluator,
    budget: int,
    seed: int = 0,
    state_path: str | Path | None = None,
    target: float | None = None,
    max_rounds: int | None = None,
    progress: bool = False,
    on_round: Callable[[SearchContext], None] | None = None,
) -> SearchResult:
    """Run ``searcher`` until ``budget`` distinct queries are spent (or ``target`` is reached).

    With ``state_path`` the state is saved after every round and, when the file exists, the
    search resumes from it (same method and seed only). ``max_rounds`` ends this call after that
    many rounds (the state stays resumable).
    """
    if budget < 1:
        raise ConfigError(f"budget must be a positive number of queries, got {budget}")
    space = searcher.space
    if space.size is not None:
        budget = min(budget, space.size)
    start = time.perf_counter()
    state_path = Path(state_path) if state_path is not None else None
    if state_path is not None and state_path.exists():
        state = SearchState.load(state_path)
        state.check_matches(searcher.name, seed, state_path)
        rng = state.restore(space, evaluator)
    else:
        state = SearchState(method=searcher.name, seed=seed)
        rng = np.random.default_rng(seed)
    ctx = SearchContext(space, evaluator, rng, state.extra, budget)

    def done() -> bool:
        if evaluator.n_queries >= budget:
            return True
        return target is not None and evaluator.n_queries > 0 and evaluator.best().value >= target

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=budget, initial=evaluator.n_queries, desc=searcher.name, unit="query")
    rounds, idle = 0, 0
    try:
        while not done() and (max_rounds is None or rounds < max_rounds):
            before = evaluator.n_queries
            searcher.step(ctx)
            state.round += 1
            rounds += 1
            idle = idle + 1 if evaluator.n_queries == before else 0
            if state_path is not None:
                state.capture(space, evaluator, rng)
                state.save(state_path)
            if bar is not None:
                bar.update(evaluator.n_queries - before)
            if on_round is not None:
                on_round(ctx)
            if idle >= MAX_IDLE_ROUNDS:
                break  # the method finds nothing new to evaluate (space exhausted around it)
    finally:
        if bar is not None:
            bar.close()
    if evaluator.n_queries == 0:
        raise ConfigError(f"search method {searcher.name!r} evaluated no architecture")
    best = evaluator.best()
    return SearchResult(
        method=searcher.name,
        best_arch=best.arch,
        best_value=best.value,
        n_queries=evaluator.n_queries,
        queries_to_best=best.index,
        rounds=state.round,
        wall_s=time.perf_counter() - start,
        history=list(evaluator.history),
    )
