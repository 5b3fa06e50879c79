"""Search: the resumable search loop, baselines, and BO with pluggable pools (evaluators are in
nag.evaluation).

A *method* is a named preset of a search method and its settings: ``experiments/method/<name>.yaml``
(``{name, searcher, **settings}``), the same file ``python -m nag.run experiment=bo_nas method=<name>``
composes. The bo_nas experiment and the NB201 search benchmark pick methods by these names, so
both run the same configurations. A preset states only what is special about it; every other
setting is the search method's own default (e.g. ``BayesOpt``'s ``n_init=5`` and Thompson
sampling, shared by every BO preset, and the prior pools' solver, ``DEFAULT_SOLVER``).
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, ClassVar

from nag.config_files import group_options, load_option
from nag.schema import FactoryConfig
from nag.search.loop import SEARCHERS, SearchContext, Searcher, SearchResult, build_searcher, run_search
from nag.search.state import SearchState


class MethodConfig(FactoryConfig):
    """The ``method:`` config block (group ``method/``): a preset's ``name``, its ``searcher`` (a
    name in ``SEARCHERS``) and that searcher's settings, checked against its signature."""

    kind: ClassVar[str] = "search method"
    skip: ClassVar[int] = 1  # the space

    name: str
    searcher: str

    @classmethod
    def factory_for(cls, data: Mapping[str, Any]) -> Any:
        import nag.search.baselines  # noqa: F401  (registers the built-in methods)
        import nag.search.bo  # noqa: F401

        searcher = data.get("searcher")
        return SEARCHERS.get(searcher) if isinstance(searcher, str) else None

    @classmethod
    def describe_plugin(cls, data: Mapping[str, Any]) -> str:
        return f"search method {data.get('name')!r} ({data.get('searcher')})"


def list_methods() -> list[str]:
    """Names of the search-method presets (``experiments/method/*.yaml``)."""
    return list(group_options("method"))


def method_settings(method: str | Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """(searcher name, settings) of preset ``method`` (a name, or its loaded ``{name, searcher, ...}``
    mapping), with ``overrides`` merged one level deep."""
    preset = load_option("method", method) if isinstance(method, str) else copy.deepcopy(dict(method))
    preset.pop("name", None)
    searcher = str(preset.pop("searcher"))
    for key, value in (overrides or {}).items():
        if isinstance(value, Mapping) and isinstance(preset.get(key), Mapping):
            preset[key] = {**preset[key], **value}
        else:
            preset[key] = value
    return searcher, preset


def build_method(method: str | Mapping[str, Any], space: Any, overrides: Mapping[str, Any] | None = None) -> Searcher:
    """The searcher of preset ``method`` (a name or a loaded preset) on ``space``."""
    name = method if isinstance(method, str) else str(method.get("name", method.get("searcher")))
    searcher, settings = method_settings(method, overrides)
    built = build_searcher(searcher, space, **settings)
    built.name = name  # the state file and results name the preset, not the generic searcher
    return built


__all__ = [
    "SEARCHERS",
    "SearchContext",
    "Searcher",
    "SearchResult",
    "SearchState",
    "build_searcher",
    "run_search",
    "MethodConfig",
    "build_method",
    "list_methods",
    "method_settings",
]
