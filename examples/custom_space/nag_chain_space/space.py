"""A complete nag search-space plugin: a 4-slot chain CNN.

The network is ``stem -> slot 0 -> slot 1 -> downsample -> slot 2 -> slot 3 -> pool -> linear``;
every slot holds one of 5 ops, all mapping [B, C, H, W] -> [B, C, H, W]. So the space has
5^4 = 625 architectures, and its graph is a 4-node chain.

An architecture is a tuple of 4 op names; its string form joins them with '-', e.g.
``conv3x3-skip-conv5x5-maxpool3x3``.
"""
from __future__ import annotations

import itertools
from collections.abc import Hashable, Sequence
from typing import Annotated, Any, ClassVar

import torch
from pydantic import Field
from torch import Tensor, nn

from nag.errors import InvalidArchError
from nag.spaces import SearchSpace

OPS: tuple[str, ...] = ("conv3x3", "conv5x5", "dwconv3x3", "maxpool3x3", "skip")
SLOTS = 4
STAGES = ((0, 1), (2, 3))  # slots per resolution stage; the resolution halves between stages

ChainArch = tuple[str, ...]


def make_op(name: str, C: int) -> nn.Module:
    """One slot's layer: x [B, C, H, W] -> [B, C, H, W]."""
    if name == "conv3x3":
        return nn.Sequential(nn.Conv2d(C, C, 3, padding=1, bias=False), nn.BatchNorm2d(C), nn.ReLU())
    if name == "conv5x5":
        return nn.Sequential(nn.Conv2d(C, C, 5, padding=2, bias=False), nn.BatchNorm2d(C), nn.ReLU())
    if name == "dwconv3x3":  # depthwise-separable
        return nn.Sequential(
            nn.Conv2d(C, C, 3, padding=1, groups=C, bias=False),
            nn.Conv2d(C, C, 1, bias=False),
            nn.BatchNorm2d(C),
            nn.ReLU(),
        )
    if name == "maxpool3x3":
        return nn.MaxPool2d(3, stride=1, padding=1)
    if name == "skip":
        return nn.Identity()
    raise InvalidArchError(f"unknown chain_cnn op {name!r}; accepted: {', '.join(OPS)}")


class ChainNet(nn.Module):
    """x [B, C_in, H, W] -> logits [B, num_classes]."""

    def __init__(self, arch: ChainArch, C: int, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C), nn.ReLU())
        layers: list[nn.Module] = []
        for s, slots in enumerate(STAGES):
            if s > 0:
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            layers += [make_op(arch[i], C) for i in slots]
        self.body = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(C, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(self.stem(x)))


class ChainCNNSpace(SearchSpace):
    """4 layer slots on a chain, 5 ops per slot (625 architectures).

    Args:
        C: channels of every layer.
    """

    name: ClassVar[str] = "chain_cnn"
    ops: tuple[str, ...] = OPS
    num_nodes: int = SLOTS

    def __init__(self, C: Annotated[int, Field(ge=1)] = 16) -> None:  # the schema of space.C: an int >= 1
        self.C = C

    # ----- graph: a fixed chain 0 -> 1 -> 2 -> 3 ----------------------------------------
    @property
    def adjacency(self) -> Tensor:
        a = torch.zeros(SLOTS, SLOTS)
        for i in range(SLOTS - 1):
            a[i, i + 1] = 1.0
        return a

    # ----- tokens and strings -------------------------------------------------------------
    def to_tokens(self, arch: Any) -> tuple[int, ...]:
        if not (isinstance(arch, tuple) and len(arch) == SLOTS and all(op in OPS for op in arch)):
            raise InvalidArchError(
                f"{arch!r} is not a chain_cnn arch: expected a tuple of {SLOTS} op names from {OPS}"
            )
        return tuple(OPS.index(op) for op in arch)

    def from_tokens(self, tokens: Sequence[int]) -> ChainArch:
        tokens = [int(t) for t in tokens]
        if len(tokens) != SLOTS or not all(0 <= t < len(OPS) for t in tokens):
            raise InvalidArchError(f"tokens {tokens} are not a chain_cnn arch: expected {SLOTS} ints in 0..{len(OPS) - 1}")
        return tuple(OPS[t] for t in tokens)

    def parse(self, text: str) -> ChainArch:
        parts = tuple(text.strip().split("-")) if isinstance(text, str) else ()
        if len(parts) != SLOTS or not all(p in OPS for p in parts):
            raise InvalidArchError(
                f"invalid chain_cnn arch string {text!r}: expected {SLOTS} ops joined by '-', "
                f"each one of {', '.join(OPS)} (e.g. 'conv3x3-skip-conv5x5-maxpool3x3')"
            )
        return parts

    def format(self, arch: Any) -> str:
        self.to_tokens(arch)  # validates
        return "-".join(arch)

    # ----- the network ------------------------------------------------------------------
    def build(self, arch: Any, task: Any = None) -> nn.Module:
        self.to_tokens(arch)
        in_channels = task.input_shape[0] if task is not None else self.default_input_shape()[0]
        num_classes = task.num_classes if task is not None else 10
        return ChainNet(arch, self.C, in_channels, num_classes)

    # ----- optional extras ----------------------------------------------------------------
    def canonical(self, arch: Any) -> Hashable:
        """A skip is the identity, so only the order of the other ops within each stage matters."""
        self.to_tokens(arch)
        return tuple(tuple(arch[i] for i in slots if arch[i] != "skip") for slots in STAGES)

    @property
    def size(self) -> int:
        return len(OPS) ** SLOTS

    def enumerate(self) -> list[ChainArch]:
        return [tuple(a) for a in itertools.product(OPS, repeat=SLOTS)]
