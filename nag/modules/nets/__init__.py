"""Plain nn.Modules (no training logic). Score networks are registered by name in SCORE_NETS."""
from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from nag.errors import ConfigError
from nag.registry import Registry

SCORE_NETS: Registry[nn.Module] = Registry("score network", group="nag.score_nets")


def _register_builtins() -> None:
    from nag.modules.nets.transformer import DAGTransformer

    if "dag_transformer" not in SCORE_NETS._items:
        SCORE_NETS.register("dag_transformer", DAGTransformer)


def build_score_net(
    net_config: Mapping[str, Any], num_nodes: int, num_ops: int, adjacency: Tensor, positions: Tensor
) -> nn.Module:
    """Score network from ``{"name": ..., **kwargs}`` for a graph of N nodes and V ops.

    A score network takes ``(num_nodes, num_ops, adjacency, positions, **kwargs)`` and maps
    x [B, N, V], t [B] -> [B, N, V].
    """
    _register_builtins()
    cfg = dict(net_config)
    name = cfg.pop("name", "dag_transformer")
    factory = SCORE_NETS.get(name)
    accepted = set(inspect.signature(factory).parameters) - {"num_nodes", "num_ops", "adjacency", "positions"}
    unknown = sorted(set(cfg) - accepted)
    if unknown:
        raise ConfigError(f"unknown {name} option(s) {unknown} in the net config; accepted: {sorted(accepted)}")
    return SCORE_NETS.build(name, num_nodes=num_nodes, num_ops=num_ops, adjacency=adjacency, positions=positions, **cfg)


__all__ = ["SCORE_NETS", "build_score_net"]
