"""The one Lightning Trainer factory: every training in nag (score model, predictors, the
meta-predictor, an architecture's train_eval) builds its Trainer here, from ``TrainerSettings``
(the ``trainer/`` config group). Devices, strategy (DDP) and precision are settings, not code.
"""
from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import lightning as L

PRECISIONS = ("32", "32-true", "16-mixed", "bf16-mixed", "64-true", "16-true", "bf16-true")
STRATEGIES = ("auto", "ddp", "ddp_spawn", "ddp_find_unused_parameters_true", "fsdp", "deepspeed", "single_device")


@dataclass(frozen=True)
class TrainerSettings:
    """Where and how a Trainer runs.

    Args:
        accelerator: ``auto`` (a GPU when there is one), ``cpu``, ``gpu``, ``cuda``, ``mps``, ``tpu``.
        devices: how many devices (or ``auto``); more than one needs a distributed ``strategy``.
        strategy: Lightning's strategy: ``auto``, ``ddp``, ``ddp_spawn``, ...
        precision: ``32`` / ``32-true``, ``16-mixed``, ``bf16-mixed``, ...
        deterministic: Lightning's ``deterministic`` flag (``warn`` warns on nondeterministic ops).
        num_nodes: machines in a multi-node run (SLURM, torchrun).
    """

    accelerator: str = "auto"
    devices: int | str = 1
    strategy: str = "auto"
    precision: str = "32-true"
    deterministic: bool | str | None = None
    num_nodes: int = 1

    @classmethod
    def from_any(cls, value: TrainerSettings | Mapping[str, Any] | None) -> TrainerSettings:
        """None (the defaults), a mapping of fields, or a TrainerSettings."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        return cls(**dict(value))

    def with_(self, **changes: Any) -> TrainerSettings:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def distributed(self) -> bool:
        """True when the settings start more than one process."""
        return self.num_nodes > 1 or (self.devices not in (1, "1") and self.strategy != "single_device")


def trainer_kwargs(settings: TrainerSettings) -> dict[str, Any]:
    """The Trainer keyword arguments that ``settings`` sets."""
    return {f.name: getattr(settings, f.name) for f in fields(settings)}


def build_trainer(settings: TrainerSettings | Mapping[str, Any] | None = None, **kwargs: Any) -> L.Trainer:
    """``lightning.Trainer`` on ``settings``; ``kwargs`` are the caller's run options (max_steps,
    callbacks, logger, ...). Checkpointing, the model summary and sanity validation are off unless
    the caller turns them on."""
    options: dict[str, Any] = {
        "enable_checkpointing": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        **trainer_kwargs(TrainerSettings.from_any(settings)),
    }
    options.update(kwargs)
    return L.Trainer(**options)


@contextlib.contextmanager
def quiet_lightning(enabled: bool = True) -> Iterator[None]:
    """Silence Lightning's per-fit banner ("GPU available ...", tips) and hint warnings: search
    loops refit predictors and train architectures many times per run."""
    if not enabled:
        yield
        return
    names = ("lightning", "lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero",
             "lightning.pytorch.accelerators.cuda")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            from lightning.fabric.utilities.warnings import PossibleUserWarning

            warnings.simplefilter("ignore", PossibleUserWarning)
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # lightning vs torch pytree
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


__all__ = ["PRECISIONS", "STRATEGIES", "TrainerSettings", "build_trainer", "quiet_lightning", "trainer_kwargs"]
