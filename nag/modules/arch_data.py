"""ArchDataModule: architectures of a space as diffusion training data (x = 2 * onehot - 1).

Finite spaces are split deterministically: a seeded permutation of ``space.enumerate()``,
the first ``round(split_ratio * size)`` archs train, the rest are held out. Spaces too large to
enumerate are sampled (``n_samples`` archs, seeded). The split is rebuilt from ``split_info()``
alone, so a checkpoint stores a few numbers instead of thousands of archs.
"""
from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import Annotated, Any

import lightning as L
import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from nag.errors import ConfigError, NotFiniteSpaceError
from nag.schema import checked, factory_config
from nag.spaces.base import Arch, SearchSpace


def to_state(space: SearchSpace, archs: list[Arch]) -> Tensor:
    """Diffusion state of archs: ``2 * encode - 1``. [B, N, V] in {-1, 1}."""
    return 2.0 * space.encode_batch(archs) - 1.0


class ArchDataModule(L.LightningDataModule):
    """Train / held-out architectures of ``space`` and a shuffled loader of their states.

    Args:
        space: the search space.
        split_ratio: fraction of a finite space used for training (the rest is held out).
        batch_size: training batch size (batches are drawn with one indexing op, no collation).
        seed: seed of the split (and of the sampled archs for huge spaces) and of the shuffling.
        n_samples: huge spaces: number of sampled training archs (required). Finite spaces:
            optional cap on the number of training archs (a prefix of the training split).
    """

    @checked
    def __init__(
        self,
        space: SearchSpace,
        split_ratio: Annotated[float, Field(gt=0, le=1)] = 0.5,
        batch_size: Annotated[int, Field(ge=1)] = 256,
        seed: int = 0,
        n_samples: Annotated[int, Field(ge=1)] | None = None,
    ) -> None:
        super().__init__()
        self.space = space
        self.split_ratio = float(split_ratio)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.n_samples = None if n_samples is None else int(n_samples)
        if space.size is None and n_samples is None:
            raise ConfigError(self._needs_n_samples())

    def _needs_n_samples(self) -> str:
        return (
            f"space {self.space.name!r} cannot be enumerated; set n_samples (e.g. data.n_samples=500000) "
            "to train on that many sampled architectures"
        )

    @classmethod
    def from_split_info(cls, space: SearchSpace, info: Mapping[str, Any], batch_size: int = 256) -> ArchDataModule:
        """Rebuild the data module whose ``split_info()`` is ``info``."""
        return cls(space, info["split_ratio"], batch_size, info["seed"], info.get("n_samples"))

    def split_info(self) -> dict[str, Any]:
        """What rebuilds this split deterministically (stored in prior checkpoints)."""
        return {
            "split_ratio": self.split_ratio,
            "seed": self.seed,
            "n_samples": self.n_samples,
            "n_train": len(self.train_archs),
            "n_heldout": len(self.heldout_archs),
        }

    @cached_property
    def _split(self) -> tuple[list[Arch], list[Arch]]:
        try:
            archs = self.space.enumerate()
        except NotFiniteSpaceError:  # huge space: sampled training archs, nothing held out
            if self.n_samples is None:
                raise ConfigError(self._needs_n_samples()) from None
            return self.space.sample(self.n_samples, np.random.default_rng(self.seed)), []
        order = np.random.default_rng(self.seed).permutation(len(archs))
        n_train = int(round(self.split_ratio * len(archs)))
        train = [archs[i] for i in order[:n_train]]
        heldout = [archs[i] for i in order[n_train:]]
        if self.n_samples is not None:
            train = train[: self.n_samples]
        return train, heldout

    @property
    def train_archs(self) -> list[Arch]:
        return self._split[0]

    @property
    def heldout_archs(self) -> list[Arch]:
        return self._split[1]

    @cached_property
    def train_states(self) -> Tensor:
        """[n_train, N, V] in {-1, 1}."""
        return to_state(self.space, self.train_archs)

    def train_dataloader(self) -> SeededBatches:
        """Shuffled batches; attached to a trainer that resumed at step k, it starts at batch k."""
        trainer = self.trainer
        if trainer is None:
            return SeededBatches(self.train_states, self.batch_size, self.seed)
        start = int(trainer.global_step) * int(trainer.accumulate_grad_batches)
        batches = SeededBatches(self.train_states, self.batch_size, self.seed, start=start)
        return batches.shard(trainer.global_rank, trainer.world_size)


class SeededBatches:
    """Batches ``(states[idx],)`` of ``states`` [M, N, V]; epoch e visits them in an order seeded by
    (seed, e), so the batch of every step is fixed by the seed and the step alone.

    ``start``: the number of batches already trained on. A resumed training (even from the middle
    of an epoch) then sees exactly the batches an uninterrupted one would. Each epoch has
    ``len(self)`` batches (the last short one is dropped when there are at least ``batch_size`` states).
    Sharded for DDP (``shard(rank, world)``), every rank draws the same order and keeps its 1/W
    share of each batch, as ``nag.modules.predictor.TensorBatches`` does.
    """

    rank: int = 0
    world: int = 1

    def __init__(self, states: Tensor, batch_size: int, seed: int = 0, start: int = 0) -> None:
        self.states = states
        self.batch_size = min(int(batch_size), len(states))
        self.drop_last = len(states) >= int(batch_size)
        self.seed = int(seed)
        self._step = int(start)

    def shard(self, rank: int, world: int) -> SeededBatches:
        """Keep rank ``rank``'s share of each batch, of ``world`` ranks."""
        self.rank, self.world = int(rank), int(world)
        return self

    def __len__(self) -> int:
        n, b = len(self.states), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def order(self, epoch: int) -> Tensor:
        """The permutation of epoch ``epoch``. [M] long."""
        seed = int(np.random.SeedSequence([self.seed, epoch]).generate_state(1)[0])
        return torch.randperm(len(self.states), generator=torch.Generator().manual_seed(seed))

    def __iter__(self):
        per_epoch = len(self)
        epoch, first = divmod(self._step, per_epoch)
        order = self.order(epoch)
        for b in range(first, per_epoch):
            self._step += 1
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            yield (self.states[idx[self.rank :: self.world]],)


# The ``data:`` config block of train_prior: ArchDataModule's settings (the space comes from ``space``).
ArchDataConfig = factory_config(ArchDataModule, kind="data", skip=1)
