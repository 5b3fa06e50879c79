"""A plugin space with a rule across nodes, written from docs/plugins.md as a new user would:
6 layer slots on a chain, 5 ops each, and "at least 2 non-skip layers" (5^6 - 1 - 6 * 4 = 15,600
archs). It does not override ``decode_tokens``: ``SearchSpace.decode`` must stay total.

Imported by tests/test_plugins.py, which installs it through entry points (``nag.spaces`` and
``nag.priors``) from a package written into a temporary folder.
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Annotated, Any

import torch
from pydantic import Field
from torch import Tensor, nn

from nag.errors import InvalidArchError
from nag.spaces import SearchSpace

OPS = ("conv3x3", "conv5x5", "dwconv3x3", "maxpool3x3", "skip")
SLOTS = 6
MIN_LAYERS = 2


def rule_holds(arch: Sequence[str]) -> bool:
    return sum(op != "skip" for op in arch) >= MIN_LAYERS


class RuleChainSpace(SearchSpace):
    """6 slots on a chain; an arch needs at least 2 non-skip layers."""

    name = "rule_chain"
    ops = OPS
    num_nodes = SLOTS

    def __init__(self, C: Annotated[int, Field(ge=1)] = 8) -> None:
        self.C = C

    @property
    def adjacency(self) -> Tensor:  # a chain 0 -> 1 -> ... -> 5
        return torch.diag(torch.ones(SLOTS - 1), 1)

    def to_tokens(self, arch: Any) -> tuple[int, ...]:
        if not (isinstance(arch, tuple) and len(arch) == SLOTS and all(op in OPS for op in arch) and rule_holds(arch)):
            raise InvalidArchError(f"{arch!r} is not a rule_chain arch: {SLOTS} ops of {OPS}, {MIN_LAYERS}+ not skip")
        return tuple(OPS.index(op) for op in arch)

    def from_tokens(self, tokens: Sequence[int]) -> tuple[str, ...]:
        tokens = [int(t) for t in tokens]
        if len(tokens) != SLOTS or not all(0 <= t < len(OPS) for t in tokens):
            raise InvalidArchError(f"tokens {tokens}: expected {SLOTS} ints in 0..{len(OPS) - 1}")
        arch = tuple(OPS[t] for t in tokens)
        if not rule_holds(arch):
            raise InvalidArchError(f"{'-'.join(arch)} has fewer than {MIN_LAYERS} non-skip layers")
        return arch

    def parse(self, text: str) -> tuple[str, ...]:
        arch = tuple(str(text).split("-"))
        self.to_tokens(arch)
        return arch

    def format(self, arch: Any) -> str:
        self.to_tokens(arch)
        return "-".join(arch)

    def build(self, arch: Any, task: Any = None) -> nn.Module:
        c_in = task.input_shape[0] if task is not None else 3
        k = task.num_classes if task is not None else 10
        layers: list[nn.Module] = [nn.Conv2d(c_in, self.C, 3, padding=1)]
        for op in arch:
            if op in ("conv3x3", "conv5x5"):
                layers += [nn.Conv2d(self.C, self.C, int(op[4]), padding=int(op[4]) // 2), nn.ReLU()]
            elif op == "dwconv3x3":
                layers += [nn.Conv2d(self.C, self.C, 3, padding=1, groups=self.C), nn.ReLU()]
            elif op == "maxpool3x3":
                layers.append(nn.MaxPool2d(3, stride=1, padding=1))
        return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(self.C, k))

    @property
    def size(self) -> int:
        return len(OPS) ** SLOTS - 1 - SLOTS * (len(OPS) - 1)

    def enumerate(self) -> list[tuple[str, ...]]:
        return [a for a in itertools.product(OPS, repeat=SLOTS) if rule_holds(a)]
