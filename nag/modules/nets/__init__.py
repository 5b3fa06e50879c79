"""Plain nn.Modules (no training logic). Score networks are registered by name in SCORE_NETS."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from torch import Tensor, nn

from nag.registry import Registry
from nag.schema import PluginConfig

SCORE_NETS: Registry[nn.Module] = Registry("score network", group="nag.score_nets")


def _register_builtins() -> None:
    from nag.modules.nets.transformer import DAGTransformer

    if "dag_transformer" not in SCORE_NETS._items:
        SCORE_NETS.register("dag_transformer", DAGTransformer)


class ScoreNetConfig(PluginConfig):
    """The ``net:`` config block: ``{name, **settings}`` of a registered score network (the graph
    arguments come from the space)."""

    kind: ClassVar[str] = "score network"
    skip: ClassVar[int] = 4  # num_nodes, num_ops, adjacency, positions

    @classmethod
    def factory(cls, name: str) -> Any:
        _register_builtins()
        return SCORE_NETS.get(name)


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
    return SCORE_NETS.build(name, num_nodes, num_ops, adjacency, positions, **cfg)  # the graph comes first


__all__ = ["SCORE_NETS", "ScoreNetConfig", "build_score_net"]
