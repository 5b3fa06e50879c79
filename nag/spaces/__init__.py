"""Search spaces: the SearchSpace contract, the registry, and the built-in plugins."""
from __future__ import annotations

from typing import Any

from nag.registry import Registry
from nag.spaces.base import EMPTY, Arch, SearchSpace, as_rng, coerce_arch

SPACES: Registry[SearchSpace] = Registry("search space", group="nag.spaces")

_BUILTINS = {"nb201": "nag.spaces.nb201:NB201Space", "mbv3": "nag.spaces.mbv3:MBv3Space"}


def _register_builtins() -> None:
    for name, target in _BUILTINS.items():  # imported on first use (mbv3 pulls in timm)
        SPACES.register_lazy(name, target)


def get_space(name: str, **kwargs: Any) -> SearchSpace:
    """Instantiate the space registered as ``name`` (built-in or entry point)."""
    _register_builtins()
    return SPACES.build(name, **kwargs)


def builtin_spaces() -> list[str]:
    """Names of the spaces nag itself ships."""
    return sorted(_BUILTINS)


def list_spaces(pattern: str = "*") -> list[str]:
    """Names of all registered spaces matching an fnmatch ``pattern``."""
    _register_builtins()
    return SPACES.names(pattern)


__all__ = ["SPACES", "SearchSpace", "Arch", "EMPTY", "as_rng", "coerce_arch", "builtin_spaces", "get_space", "list_spaces"]
