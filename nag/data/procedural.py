"""Image tasks nag draws itself, offline and deterministic: "shapes" and "textures".

Both render grey images with numpy from a seeded generator; train, val and test images are
drawn from independent random streams, so no image (or near copy) is shared between splits.

- ``shapes``: 8 classes of filled outlines (circle, ring, square, diamond, triangle, plus,
  cross, half-disc) at a random place, size, small rotation and contrast, on a noisy background.
- ``textures``: 8 classes of stationary patterns (gratings at 0/45/90/135 degrees,
  checkerboard, dot lattice, white noise, smooth noise) at random scale, phase and contrast.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import TensorDataset

from nag.data.tasks import TASKS, Task, param_name
from nag.errors import ConfigError

SHAPES = ("circle", "ring", "square", "diamond", "triangle", "plus", "cross", "half_disc")
TEXTURES = ("grating_0", "grating_45", "grating_90", "grating_135", "checker", "dots", "white_noise", "smooth_noise")
_SPLIT_STREAM = {"train": 0, "val": 1, "test": 2}


def _inside(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Membership of points (u, v) (shape-centred, unit radius) in ``shape``."""
    r = np.hypot(u, v)
    if shape == "circle":
        return r < 1
    if shape == "ring":
        return (r < 1) & (r > 0.55)
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) < 0.8
    if shape == "diamond":
        return np.abs(u) + np.abs(v) < 1
    if shape == "triangle":  # equilateral, pointing up (v grows downwards)
        return (v < 0.5) & (np.sqrt(3) * u - v < 1) & (-np.sqrt(3) * u - v < 1)
    if shape == "plus":
        return ((np.abs(u) < 0.28) & (np.abs(v) < 1)) | ((np.abs(v) < 0.28) & (np.abs(u) < 1))
    if shape == "cross":
        a, b = (u + v) / np.sqrt(2), (u - v) / np.sqrt(2)
        return ((np.abs(a) < 0.28) & (np.abs(b) < 1)) | ((np.abs(b) < 0.28) & (np.abs(a) < 1))
    if shape == "half_disc":
        return (r < 1) & (v < 0)
    raise ConfigError(f"unknown shape {shape!r}; known: {SHAPES}")


def _render_shape(shape: str, size: int, rng: np.random.Generator, max_rotation: float) -> np.ndarray:
    ss = 3 * size  # supersampled, then averaged: anti-aliased edges
    radius = rng.uniform(0.22, 0.42) * ss
    cx, cy = rng.uniform(radius, ss - radius, size=2)
    angle = np.radians(rng.uniform(-max_rotation, max_rotation))
    yy, xx = np.mgrid[0:ss, 0:ss] + 0.5
    dx, dy = (xx - cx) / radius, (yy - cy) / radius
    u = np.cos(angle) * dx + np.sin(angle) * dy
    v = -np.sin(angle) * dx + np.cos(angle) * dy
    mask = _inside(shape, u, v).astype(np.float32).reshape(size, 3, size, 3).mean(axis=(1, 3))
    fg, bg = rng.uniform(0.55, 1.0), rng.uniform(0.0, 0.35)
    img = bg + (fg - bg) * mask
    return img + rng.normal(0, 0.06, size=img.shape)


def _render_texture(texture: str, size: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    if texture.startswith("grating_"):
        theta = np.radians(float(texture.split("_")[1]) + rng.uniform(-8, 8))
        period = rng.uniform(3.0, 7.0)
        phase = rng.uniform(0, 2 * np.pi)
        img = np.sin(2 * np.pi * (np.cos(theta) * xx + np.sin(theta) * yy) / period + phase)
    elif texture == "checker":
        period = rng.uniform(3.0, 7.0)
        theta = np.radians(rng.uniform(-10, 10))
        a = np.cos(theta) * xx + np.sin(theta) * yy + rng.uniform(0, period)
        b = -np.sin(theta) * xx + np.cos(theta) * yy + rng.uniform(0, period)
        img = np.sign(np.sin(np.pi * a / period) * np.sin(np.pi * b / period))
    elif texture == "dots":
        period = rng.uniform(4.0, 8.0)
        ox, oy = rng.uniform(0, period, size=2)
        fx = ((xx + ox) % period) - period / 2
        fy = ((yy + oy) % period) - period / 2
        img = np.where(np.hypot(fx, fy) < period * rng.uniform(0.18, 0.3), 1.0, -1.0)
    elif texture == "white_noise":
        img = rng.normal(0, 1, size=(size, size))
    elif texture == "smooth_noise":
        coarse = rng.normal(0, 1, size=(size // 4 + 2, size // 4 + 2))
        t = torch.from_numpy(coarse).float()[None, None]
        img = torch.nn.functional.interpolate(t, size=(size + 8, size + 8), mode="bicubic", align_corners=False)
        off = rng.integers(0, 8, size=2)
        img = img[0, 0, off[0] : off[0] + size, off[1] : off[1] + size].double().numpy()
        img = img / (img.std() + 1e-6)
    else:
        raise ConfigError(f"unknown texture {texture!r}; known: {TEXTURES}")
    contrast, mean = rng.uniform(0.3, 1.0), rng.uniform(-0.3, 0.3)
    return mean + contrast * np.clip(img, -2.5, 2.5) + rng.normal(0, 0.1, size=img.shape)


def _procedural_task(
    name: str,
    class_names: tuple[str, ...],
    render: Callable[[str, np.random.Generator], np.ndarray],
    size: int,
    counts: tuple[int, int, int],
    seed: int,
) -> Task:
    if int(size) < 8:
        raise ConfigError(f"{name}: size must be >= 8 pixels, got {size}")
    if len(counts) != 3 or min(int(c) for c in counts) < 1:
        raise ConfigError(f"{name}: per_class must be three counts >= 1 (train, val, test), got {list(counts)}")
    parts = {}
    for split, n in zip(("train", "val", "test"), counts):
        xs, ys = [], []
        for label, cls in enumerate(class_names):
            rng = np.random.default_rng([seed, _SPLIT_STREAM[split], label])
            xs += [render(cls, rng) for _ in range(int(n))]
            ys += [label] * int(n)
        parts[split] = (torch.tensor(np.stack(xs), dtype=torch.float32).unsqueeze(1), torch.tensor(ys))
    mean, std = parts["train"][0].mean().item(), parts["train"][0].std().item()
    datasets = {s: TensorDataset(((x - mean) / std).contiguous(), y) for s, (x, y) in parts.items()}
    return Task(
        name=name,
        num_classes=len(class_names),
        input_shape=(1, size, size),
        classes=tuple(range(len(class_names))),
        meta={"mean": [mean], "std": [std], "class_names": list(class_names), "seed": seed},
        **datasets,
    )


@TASKS.register("shapes")
def shapes(size: int = 32, per_class: tuple[int, int, int] = (150, 60, 60), max_rotation: float = 15.0, seed: int = 0) -> Task:
    """8 shape classes (``SHAPES``), grey [1, size, size]; ``per_class`` images per class in
    train / val / test, each split from its own random stream of ``seed``."""
    if not 0 <= max_rotation <= 20:  # beyond ~22 degrees a square becomes a diamond
        raise ConfigError(f"shapes: max_rotation must be in [0, 20] degrees, got {max_rotation}")
    name = param_name("shapes", shapes, size=size, per_class=per_class, max_rotation=max_rotation, seed=seed)
    return _procedural_task(
        name, SHAPES, lambda c, rng: _render_shape(c, int(size), rng, max_rotation), int(size), tuple(per_class), int(seed)
    )


@TASKS.register("textures")
def textures(size: int = 32, per_class: tuple[int, int, int] = (150, 60, 60), seed: int = 0) -> Task:
    """8 texture classes (``TEXTURES``), grey [1, size, size], as ``shapes``."""
    name = param_name("textures", textures, size=size, per_class=per_class, seed=seed)
    return _procedural_task(
        name, TEXTURES, lambda c, rng: _render_texture(c, int(size), rng), int(size), tuple(per_class), int(seed)
    )
