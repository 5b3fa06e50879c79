"""NAS-Bench-201 network: cell operations, the cell, and the macro network.

Replicates the official NB201 ``TinyNetwork`` module for module, so parameter counts equal the
benchmark's published ones. Every edge op is built and run, also on paths that a 'none' edge
cuts off, as the official network does (their parameters count).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

# Cell edges as (to_node, from_node), in the order of the arch tuple / string.
EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))


class ReLUConvBN(nn.Sequential):
    """ReLU -> Conv2d(bias=False) -> BatchNorm2d(affine). x: [B, C_in, H, W] -> [B, C_out, H', W']."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(c_out, affine=True),
        )


class Zero(nn.Module):
    """The 'none' op: an all-zero output of the input's shape."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.zeros_like(x)


def _avg_pool_3x3(c: int) -> nn.Module:
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


CELL_OPS: dict[str, Callable[[int], nn.Module]] = {
    "none": lambda c: Zero(),
    "skip_connect": lambda c: nn.Identity(),
    "nor_conv_1x1": lambda c: ReLUConvBN(c, c, 1),
    "nor_conv_3x3": lambda c: ReLUConvBN(c, c, 3),
    "avg_pool_3x3": _avg_pool_3x3,
}


class NB201Cell(nn.Module):
    """A 4-node NB201 cell: node j = sum of op_(j<-i)(node i). x: [B, C, H, W] -> [B, C, H, W]."""

    def __init__(self, arch: Sequence[str], channels: int) -> None:
        super().__init__()
        self.edges = nn.ModuleList(CELL_OPS[op](channels) for op in arch)

    def forward(self, x: Tensor) -> Tensor:
        nodes = [x]
        for to in (1, 2, 3):
            nodes.append(sum(op(nodes[src]) for op, (dst, src) in zip(self.edges, EDGES) if dst == to))
        return nodes[3]


class ResNetBasicBlock(nn.Module):
    """NB201 reduction block (C -> 2C, stride 2). x: [B, C, H, W] -> [B, 2C, H/2, W/2]."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride=2)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, stride=1)
        self.downsample = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2, padding=0),
            nn.Conv2d(c_in, c_out, kernel_size=1, stride=1, padding=0, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


class NB201Network(nn.Module):
    """Stem, 3 stages of N cells (C, 2C, 4C) joined by reduction blocks, BN-ReLU, pool, linear.

    x: [B, in_channels, H, W] -> logits [B, num_classes].
    """

    def __init__(self, arch: Sequence[str], C: int = 16, N: int = 5, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        layers: list[nn.Module] = []
        for stage, width in enumerate((C, 2 * C, 4 * C)):
            if stage > 0:
                layers.append(ResNetBasicBlock(width // 2, width))
            layers.extend(NB201Cell(arch, width) for _ in range(N))
        self.cells = nn.Sequential(*layers)
        self.lastact = nn.Sequential(nn.BatchNorm2d(4 * C), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(4 * C, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.lastact(self.cells(self.stem(x)))
        return self.classifier(self.global_pooling(x).flatten(1))
