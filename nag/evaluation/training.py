"""The one real training routine: train a classifier on a task, report val/test accuracy.

``train_eval(space, arch, task, budget, seed)`` trains one architecture: the space's own
``train_eval`` method when the plugin defines one, else ``train_eval_model`` on
``space.build(arch, task)``. Search loops and experiments never train classifiers any other way.
"""
from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Annotated, Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from pydantic import Field

from nag.errors import ConfigError
from nag.modules.trainer import TrainerSettings, build_trainer, quiet_lightning
from nag.schema import Settings
from nag.spaces.base import Arch, SearchSpace


class TrainBudget(Settings):
    """How long and how to train. The defaults are a CPU recipe for the digits task:
    a full NB201 network (C=16, N=5) reaches 92-97% test accuracy in 4-12 CPU-seconds
    (benchmarks/train_eval_digits.py). NB201's own CIFAR recipe is lr=0.1, batch_size=256,
    epochs=200 (``train=nb201``); at lr=0.1 on digits, conv-heavy cells fail to converge in
    10 epochs (66-73%).
    """

    settings_name: ClassVar[str] = "training budget"

    epochs: Annotated[int, Field(ge=1)] = 10
    batch_size: Annotated[int, Field(ge=1)] = 128
    lr: Annotated[float, Field(gt=0)] = 0.02
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    weight_decay: Annotated[float, Field(ge=0)] = 5e-4
    nesterov: bool = True
    label_smoothing: Annotated[float, Field(ge=0, lt=1)] = 0.0
    max_steps: Annotated[int, Field(ge=1)] | None = None  # stop after this many optimiser steps (the schedule follows it)
    grad_clip: Annotated[float, Field(ge=0)] | None = 5.0  # gradient-norm clip; None or 0 disables it

    @classmethod
    def keys(cls) -> list[str]:
        return list(cls.model_fields)

    @classmethod
    def from_any(cls, value: Any = None) -> TrainBudget:
        """Accept None (defaults), an int (epochs), a mapping / DictConfig, or a TrainBudget."""
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            return cls(epochs=int(value))
        return super().from_any(value)


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
    from lightning.pytorch import seed_everything  # lazily: a driver that only dispatches jobs needs no Lightning

    from nag.modules.classifier import ClassifierModule

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
