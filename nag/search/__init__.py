"""Search: the resumable search loop, baselines, and BO with pluggable pools (evaluators are in
nag.evaluation).

A *method* is a named preset of a search method and its settings (``METHODS``); the bo_nas
experiment and the NB201 search benchmark pick methods by these names, so both run the same
configurations.
"""
from __future__ import annotations

import copy
from typing import Any

from nag.errors import UnknownNameError
from nag.search.loop import SEARCHERS, SearchContext, Searcher, SearchResult, build_searcher, run_search
from nag.search.state import SearchState

# Shared by every BO preset, so the comparison stays fair: random queries before the first fit
# (NB201, tuning seeds 100-139, rank_gauss targets: 5 beat 10 for both diffusion_bo and bananas;
# docs/search.md) and, for the two presets that sample the prior, the same fast deterministic
# sampler (probability-flow ODE, 15 Heun steps).
BO_N_INIT = 5
PRIOR_SOLVER: dict[str, Any] = {"name": "ode", "steps": 15, "method": "heun"}

# method name -> (search method in SEARCHERS, its default settings)
METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "random": ("random", {}),
    "evolution": ("evolution", {"population": 20, "sample_size": 5}),
    "local": ("local", {}),
    "random_bo": ("bo", {"optimizer": "random_pool", "acquisition": "ts", "n_init": BO_N_INIT}),
    "bananas": ("bo", {"optimizer": "mutation_pool", "acquisition": "ts", "n_init": BO_N_INIT}),
    # the whole (finite) space as the pool: the ceiling of any acquisition optimiser with this surrogate
    "exhaustive_bo": ("bo", {"optimizer": "exhaustive", "acquisition": "ts", "n_init": BO_N_INIT}),
    "prior_filter": ("bo", {"optimizer": "prior_filter", "acquisition": "ts", "n_init": BO_N_INIT,
                            "optimizer_params": {"n_samples": 100, "solver": PRIOR_SOLVER}}),
    # every other round ranks a pool of guided samples, the rounds between a bananas pool; one mixed
    # pool let Thompson sampling pick mutations for lucky draws (docs/search.md, "alternate")
    "diffusion_bo": ("bo", {
        "optimizer": "diffusion", "acquisition": "ts", "n_init": BO_N_INIT,
        "optimizer_params": {"n_samples": 64, "solver": PRIOR_SOLVER, "weight": 10.0, "diversity": 1.0,
                             "trust_top": 10, "trust_weight": 3.0, "mutations": 200, "alternate": True},
    }),
}


def method_settings(method: str, overrides: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """(searcher name, settings) of ``method``, with ``overrides`` merged one level deep."""
    if method not in METHODS:
        raise UnknownNameError(f"unknown search method {method!r}. Known methods: {', '.join(sorted(METHODS))}")
    searcher, settings = METHODS[method]
    settings = copy.deepcopy(settings)
    for key, value in (overrides or {}).items():
        if isinstance(value, dict) and isinstance(settings.get(key), dict):
            settings[key] = {**settings[key], **value}
        else:
            settings[key] = value
    return searcher, settings


def build_method(method: str, space: Any, overrides: dict[str, Any] | None = None) -> Searcher:
    """The searcher of preset ``method`` on ``space``."""
    searcher, settings = method_settings(method, overrides)
    built = build_searcher(searcher, space, **settings)
    built.name = method  # the state file and results name the preset, not the generic searcher
    return built


__all__ = [
    "SEARCHERS",
    "SearchContext",
    "Searcher",
    "SearchResult",
    "SearchState",
    "build_searcher",
    "run_search",
    "METHODS",
    "method_settings",
    "build_method",
]
