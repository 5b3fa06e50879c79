"""Surrogate input encodings of (noisy) architecture states, derived from a space's graph.

``onehot``: the flat state, preconditioned. ``paths``: a soft *path encoding* (BANANAS'
encoding, generalised to any fixed DAG): for every path of up to ``max_len`` free nodes along
the space's edges, the outer product of the nodes' op probabilities. On NB201 this holds the
four input-to-output paths of the cell (and their sub-paths); on a chain (mbv3) the pairs of
neighbouring slots. A path's feature says "this sequence of ops is present", which a one-hot
MLP has to learn from few examples.

Op probabilities come from the noisy state: ``x_t = alpha x_0 + std eps`` with ``x_0`` a
{-1, 1} one-hot gives ``p(op | x_t) = softmax(2 alpha x_t / std^2)`` over the node's allowed
ops. It is the one-hot itself at t = 0 and differentiable everywhere, so the same encoding
serves ranking and guidance.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from nag.errors import ConfigError
from nag.registry import Registry
from nag.spaces.base import SearchSpace

ENCODINGS: Registry[Any] = Registry("surrogate encoding", group="nag.encodings")


@ENCODINGS.register("onehot")
class OneHotEncoding:
    """The flat state scaled to unit variance: x: [B, N, V] -> [B, N*V]."""

    def __init__(self, space: SearchSpace) -> None:
        self.dim = space.num_nodes * space.num_ops

    def __call__(self, x: Tensor, alpha: Tensor, std: Tensor) -> Tensor:
        return (torch.rsqrt(alpha.pow(2) + std.pow(2)).view(-1, 1, 1) * x).flatten(1)


def dag_paths(space: SearchSpace, max_len: int) -> list[tuple[int, ...]]:
    """Every path of 1..``max_len`` free nodes (more than one allowed op) along the space's edges.

    Fixed nodes (input, output) carry no information and are skipped over, so NB201's
    input -> op -> output path is the 1-node path of that op.
    """
    adj = space.adjacency.bool()
    free = (space.allowed_ops().sum(1) > 1).tolist()
    n = space.num_nodes
    # successors among free nodes, looking through fixed nodes
    succ: list[list[int]] = []
    for i in range(n):
        seen, stack, out = set(), [j for j in range(n) if adj[i, j]], []
        while stack:
            j = stack.pop()
            if j in seen:
                continue
            seen.add(j)
            if free[j]:
                out.append(j)
            else:
                stack.extend(k for k in range(n) if adj[j, k])
        succ.append(sorted(out))
    paths = [(i,) for i in range(n) if free[i]]
    frontier = list(paths)
    for _ in range(max_len - 1):
        frontier = [p + (j,) for p in frontier for j in succ[p[-1]]]
        paths += frontier
    return paths


@ENCODINGS.register("paths")
class PathEncoding:
    """Soft path encoding: x: [B, N, V] -> [B, F], F = sum over paths of the product of the
    nodes' allowed-op counts. Paths are as long as ``max_len`` allows while F <= ``max_features``
    (the longest length that fits; at least single nodes).
    """

    def __init__(self, space: SearchSpace, max_len: int = 3, max_features: int = 1024) -> None:
        if max_len < 1:
            raise ConfigError(f"paths encoding needs max_len >= 1, got {max_len}")
        allowed = space.allowed_ops()
        self.mask = allowed  # [N, V]
        self.ops = [torch.nonzero(allowed[i]).flatten() for i in range(space.num_nodes)]
        for length in range(max_len, 0, -1):
            paths = dag_paths(space, length)
            dim = sum(math.prod(len(self.ops[i]) for i in p) for p in paths)
            if dim <= max_features or length == 1:
                break
        self.paths, self.dim = paths, dim

    def op_probs(self, x: Tensor, alpha: Tensor, std: Tensor) -> Tensor:
        """p(op | x_t) per node, zero on disallowed ops. [B, N, V]."""
        scale = (2 * alpha / std.clamp_min(1e-3).pow(2)).view(-1, 1, 1)
        logits = (scale * x).masked_fill(~self.mask.to(x.device), float("-inf"))
        return torch.softmax(logits, dim=-1)

    def __call__(self, x: Tensor, alpha: Tensor, std: Tensor) -> Tensor:
        p = self.op_probs(x, alpha, std)
        nodes = [p[:, i, ops.to(x.device)] for i, ops in enumerate(self.ops)]  # [B, V_i]
        out = []
        for path in self.paths:
            f = nodes[path[0]]
            for i in path[1:]:
                f = (f.unsqueeze(2) * nodes[i].unsqueeze(1)).flatten(1)
            out.append(f)
        return torch.cat(out, dim=1)


def build_encoding(name: str, space: SearchSpace, **params: Any) -> Any:
    """The encoding registered as ``name`` for ``space`` (has ``dim`` and ``__call__``)."""
    return ENCODINGS.build(name, space, **params)
