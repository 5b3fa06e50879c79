"""Seeded image corruptions for derived tasks: ``fn(x [N, C, H, W] float, gen, **params) -> x``.

They act on standardised images (about zero mean, unit variance per channel), which is what
every nag task yields, so a parameter means the same thing on digits, photos and shapes:
``noise(std=0.5)`` adds noise of half the data's spread, ``occlude`` paints the mean. Each draws
its randomness from the ``torch.Generator`` it is given only, so a recipe rebuilds bit for bit.

Register another one with ``@CORRUPTIONS.register("name")``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from nag.errors import ConfigError
from nag.registry import Registry

CORRUPTIONS: Registry[Tensor] = Registry("corruption", group="nag.corruptions")


def _check(name: str, ok: bool, what: str) -> None:
    if not ok:
        raise ConfigError(f"corruption {name!r}: {what}")


@CORRUPTIONS.register("rotate")
def rotate(x: Tensor, gen: torch.Generator, degrees: float = 30.0) -> Tensor:
    """Rotate each image by an angle drawn uniformly in [-degrees, degrees] (edges repeat)."""
    _check("rotate", 0 < degrees <= 180, f"degrees must be in (0, 180], got {degrees}")
    n = x.shape[0]
    angle = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(degrees)
    cos, sin = angle.cos(), angle.sin()
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, -sin, sin, cos
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


@CORRUPTIONS.register("blur")
def blur(x: Tensor, gen: torch.Generator, sigma: float = 1.0) -> Tensor:
    """Gaussian blur with standard deviation ``sigma`` pixels (reflected edges)."""
    _check("blur", 0 < sigma <= 10, f"sigma must be in (0, 10] pixels, got {sigma}")
    radius = max(1, math.ceil(2 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    pad = min(radius, x.shape[-1] - 1, x.shape[-2] - 1)
    k = k[radius - pad : radius + pad + 1]
    out = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    out = F.conv2d(out, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(out, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


@CORRUPTIONS.register("noise")
def noise(x: Tensor, gen: torch.Generator, std: float = 0.5) -> Tensor:
    """Add Gaussian pixel noise of standard deviation ``std`` (in units of the data's spread)."""
    _check("noise", 0 < std <= 10, f"std must be in (0, 10], got {std}")
    return x + std * torch.randn(x.shape, generator=gen)


@CORRUPTIONS.register("invert")
def invert(x: Tensor, gen: torch.Generator, p: float = 1.0) -> Tensor:
    """Invert the contrast (x -> -x around the mean) of a fraction ``p`` of the images."""
    _check("invert", 0 < p <= 1, f"p must be in (0, 1], got {p}")
    flip = torch.rand(x.shape[0], generator=gen) < p
    out = x.clone()
    out[flip] = -out[flip]
    return out


@CORRUPTIONS.register("occlude")
def occlude(x: Tensor, gen: torch.Generator, fraction: float = 0.4) -> Tensor:
    """Paint one square of side ``fraction`` x the image side, at a random place, with the mean (0)."""
    _check("occlude", 0 < fraction < 1, f"fraction must be in (0, 1), got {fraction}")
    n, _, h, w = x.shape
    sh, sw = max(1, round(fraction * h)), max(1, round(fraction * w))
    top = torch.randint(0, h - sh + 1, (n,), generator=gen)
    left = torch.randint(0, w - sw + 1, (n,), generator=gen)
    rows = torch.arange(h).view(1, h, 1)
    cols = torch.arange(w).view(1, 1, w)
    inside = (rows >= top.view(n, 1, 1)) & (rows < (top + sh).view(n, 1, 1))
    inside = inside & (cols >= left.view(n, 1, 1)) & (cols < (left + sw).view(n, 1, 1))
    return x.masked_fill(inside.unsqueeze(1), 0.0)


@CORRUPTIONS.register("translate")
def translate(x: Tensor, gen: torch.Generator, fraction: float = 0.2) -> Tensor:
    """Shift each image by up to ``fraction`` of its side in x and y (edges repeat)."""
    _check("translate", 0 < fraction < 1, f"fraction must be in (0, 1), got {fraction}")
    n = x.shape[0]
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, :, 2] = (torch.rand(n, 2, generator=gen) * 2 - 1) * 2 * fraction  # grid units span 2
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def apply_corruption(name: str, x: Tensor, gen: torch.Generator, **params: float) -> Tensor:
    """``CORRUPTIONS[name](x, gen, **params)``; an unknown parameter names the accepted ones."""
    return CORRUPTIONS.build(name, x, gen, **params)


def list_corruptions(pattern: str = "*") -> list[str]:
    return CORRUPTIONS.names(pattern)
