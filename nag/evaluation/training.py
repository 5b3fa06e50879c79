"""The one real training routine: train a classifier on a task, report val/test accuracy.

``train_eval(space, arch, task, budget, seed)`` trains one architecture: the space's own
``train_eval`` method when the plugin defines one, else ``train_eval_model`` on
``space.build(arch, task)``. Search loops and experiments never train classifiers any other way.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from lightning.pytorch import seed_everything
from torch import nn
from torch.utils.data import DataLoader, Dataset

from nag.errors import ConfigError
from nag.modules.classifier import ClassifierModule
from nag.modules.trainer import TrainerSettings, build_trainer, quiet_lightning
from nag.spaces.base import Arch, SearchSpace


@dataclass(frozen=True)
class TrainBudget:
    """How long and how to train. The defaults are a CPU recipe for the digits task:
    a full NB201 network (C=16, N=5) reaches 92-97% test accuracy in 4-12 CPU-seconds
    (benchmarks/train_eval_digits.py). NB201's own CIFAR recipe is lr=0.1, batch_size=256,
    epochs=200; at lr=0.1 on digits, conv-heavy cells fail to converge in 10 epochs (66-73%).
    """

    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = True
    label_smoothing: float = 0.0
    max_steps: int | None = None  # stop after this many optimiser steps (the schedule follows it)
    grad_clip: float | None = 5.0  # gradient-norm clip; None or 0 disables it

    def __post_init__(self) -> None:
        problems = []
        if not _is_int(self.epochs) or self.epochs < 1:
            problems.append(f"epochs must be an int >= 1, got {self.epochs!r}")
        if not _is_int(self.batch_size) or self.batch_size < 1:
            problems.append(f"batch_size must be an int >= 1, got {self.batch_size!r}")
        if self.max_steps is not None and (not _is_int(self.max_steps) or self.max_steps < 1):
            problems.append(f"max_steps must be None or an int >= 1, got {self.max_steps!r}")
        if not self.lr > 0:
            problems.append(f"lr must be > 0, got {self.lr!r}")
        if not 0 <= self.momentum < 1 or self.weight_decay < 0:
            problems.append(f"need 0 <= momentum < 1 and weight_decay >= 0, got {self.momentum!r}, {self.weight_decay!r}")
        if not 0 <= self.label_smoothing < 1:
            problems.append(f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}")
        if self.grad_clip is not None and self.grad_clip < 0:
            problems.append(f"grad_clip must be None or >= 0, got {self.grad_clip!r}")
        if problems:
            raise ConfigError("invalid training budget: " + "; ".join(problems))

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_any(cls, value: Any) -> TrainBudget:
        """Accept None (defaults), an int (epochs), a mapping / DictConfig, or a TrainBudget."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if _is_int(value):
            return cls(epochs=int(value))
        try:
            from omegaconf import DictConfig, OmegaConf

            if isinstance(value, DictConfig):
                value = OmegaConf.to_container(value, resolve=True)
        except ImportError:  # pragma: no cover - omegaconf ships with hydra
            pass
        if not isinstance(value, Mapping):
            raise ConfigError(
                f"a training budget must be None, an int (epochs), a mapping or a TrainBudget; "
                f"got {type(value).__name__}: {value!r}"
            )
        unknown = sorted(set(value) - set(cls.keys()))
        if unknown:
            raise ConfigError(f"unknown training budget keys {unknown}. Accepted keys: {cls.keys()}")
        return cls(**value)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def train_eval_model(
    build_fn: Callable[[], nn.Module],
    task: Any,
    budget: Any = None,
    seed: int = 0,
    logger: Any = None,
    progress: bool = False,
    num_threads: int | None = None,
    trainer: TrainerSettings | Mapping[str, Any] | None = None,
) -> dict[str, float]:
    """Really train ``build_fn()`` on ``task.train``; evaluate on ``task.val`` and ``task.test``.

    Args:
        build_fn: makes the network ``x [B, C, H, W] -> logits [B, K]``; called after seeding.
        task: a ``nag.data.Task`` (train/val/test datasets).
        budget: anything ``TrainBudget.from_any`` accepts.
        seed: seeds weights, data order and augmentation; the same seed gives the same numbers.
        logger: a Lightning logger (e.g. ``nag.wandb_utils.lightning_logger()``); None/False: none.
        progress: show Lightning's progress bar.
        num_threads: torch intra-op threads for this run (restored afterwards); default
            $NAG_NUM_THREADS, else torch's setting. On a shared CPU, 1 avoids thread thrashing.
        trainer: where to train (``nag.modules.trainer.TrainerSettings``; default: auto, one device).

    Returns:
        ``val_acc``, ``test_acc`` (percent, after the last step), ``train_loss`` (mean over the
        last epoch), ``wall_s`` (model build, training and evaluation), ``params_M``,
        ``epochs`` (epochs run, fractional when ``max_steps`` cut one short) and ``steps``.

    The caller's global RNG states are restored afterwards.
    """
    budget = TrainBudget.from_any(budget)
    start = time.perf_counter()
    with _preserved_rng(), quiet_lightning(enabled=not progress), _threads(num_threads):
        seed_everything(seed, workers=True, verbose=False)
        net = build_fn()
        params_m = sum(p.numel() for p in net.parameters()) / 1e6
        module = ClassifierModule(
            net,
            lr=budget.lr,
            momentum=budget.momentum,
            weight_decay=budget.weight_decay,
            nesterov=budget.nesterov,
            label_smoothing=budget.label_smoothing,
        )
        train_loader = _loader(task.train, budget.batch_size, shuffle=True, seed=seed)
        val_loader = _loader(task.val, max(budget.batch_size, 256), shuffle=False, seed=seed)
        test_loader = _loader(task.test, max(budget.batch_size, 256), shuffle=False, seed=seed)
        steps_per_epoch = len(train_loader)
        fit = build_trainer(
            trainer,
            max_epochs=budget.epochs,
            max_steps=budget.max_steps if budget.max_steps is not None else -1,
            gradient_clip_val=budget.grad_clip or None,
            logger=logger if logger else False,
            log_every_n_steps=max(1, min(50, steps_per_epoch)),
            enable_progress_bar=progress,
        )
        fit.fit(module, train_loader, val_loader)
        if module.last_val_step != fit.global_step:  # max_steps ended mid-epoch
            fit.validate(module, val_loader, verbose=False)
        fit.test(module, test_loader, verbose=False)
    steps = int(fit.global_step)
    return {
        "val_acc": module.results["val_acc"],
        "test_acc": module.results["test_acc"],
        "train_loss": module.results.get("train_loss", float("nan")),
        "wall_s": time.perf_counter() - start,
        "params_M": params_m,
        "epochs": steps / steps_per_epoch,
        "steps": float(steps),
    }


def train_eval(
    space: SearchSpace,
    arch: Arch,
    task: Any,
    budget: Any = None,
    seed: int = 0,
    logger: Any = None,
    **options: Any,
) -> dict[str, float]:
    """Really train ``arch`` of ``space`` on ``task``; val/test accuracy (%), wall_s, params_M, ...

    A space plugin with its own training recipe defines ``train_eval(arch, task, budget, seed,
    logger)``; every other space trains ``space.build(arch, task)`` with ``train_eval_model``
    (``options``: its ``progress``, ``num_threads`` and ``trainer``).
    """
    own = getattr(space, "train_eval", None)
    if callable(own):
        return own(arch, task, budget=budget, seed=seed, logger=logger)
    return train_eval_model(lambda: space.build(arch, task), task, budget=budget, seed=seed, logger=logger, **options)


def _loader(dataset: Dataset, batch_size: int, shuffle: bool, seed: int) -> DataLoader:
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator, num_workers=0)


@contextlib.contextmanager
def _preserved_rng() -> Iterator[None]:
    """Seeding for a training run must not reseed the caller's search loop."""
    py_state, np_state = random.getstate(), np.random.get_state()
    env = os.environ.get("PL_GLOBAL_SEED"), os.environ.get("PL_SEED_WORKERS")
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
            for key, old in zip(("PL_GLOBAL_SEED", "PL_SEED_WORKERS"), env):
                if old is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = old


@contextlib.contextmanager
def _threads(num_threads: int | None) -> Iterator[None]:
    if num_threads is None and os.environ.get("NAG_NUM_THREADS"):
        try:
            num_threads = int(os.environ["NAG_NUM_THREADS"])
        except ValueError:
            raise ConfigError(f"NAG_NUM_THREADS must be an int >= 1, got {os.environ['NAG_NUM_THREADS']!r}") from None
    if num_threads is None:
        yield
        return
    if num_threads < 1:
        raise ConfigError(f"num_threads must be >= 1, got {num_threads}")
    before = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


__all__ = ["TrainBudget", "train_eval", "train_eval_model"]
