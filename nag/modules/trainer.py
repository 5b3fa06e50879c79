"""The one Lightning Trainer factory: every training in nag (score model, predictors, the
meta-predictor, an architecture's train_eval) builds its Trainer here, from ``TrainerSettings``
(the ``trainer/`` config group). Devices, strategy (DDP) and precision are settings, not code.
"""
from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import Field

from nag.schema import Settings

if TYPE_CHECKING:
    import lightning as L

PRECISIONS = ("32", "32-true", "16-mixed", "bf16-mixed", "64-true", "16-true", "bf16-true")
STRATEGIES = ("auto", "ddp", "ddp_spawn", "ddp_find_unused_parameters_true", "fsdp", "deepspeed", "single_device")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu", "hpu")


class TrainerSettings(Settings):
    """Where and how a Trainer runs (the ``trainer/`` config group).

    Args:
        accelerator: ``auto`` (a GPU when there is one), ``cpu``, ``gpu``, ``cuda``, ``mps``, ``tpu``.
        devices: how many devices (an int >= 1, -1 for all, or ``auto``) or which (a list of
            indices); more than one needs a distributed ``strategy``.
        strategy: Lightning's strategy: ``auto``, ``ddp``, ``ddp_spawn``, ...
        precision: ``32`` / ``32-true``, ``16-mixed``, ``bf16-mixed``, ...
        deterministic: Lightning's ``deterministic`` flag (``warn`` warns on nondeterministic ops).
        num_nodes: machines in a multi-node run (SLURM, torchrun).
    """

    settings_name: ClassVar[str] = "trainer"

    accelerator: Literal[ACCELERATORS] = "auto"  # type: ignore[valid-type]
    devices: Annotated[int, Field(ge=1)] | Literal[-1, "auto"] | list[Annotated[int, Field(ge=0)]] = 1
    strategy: str = "auto"
    precision: Literal[PRECISIONS] | Literal[16, 32, 64] = "32-true"  # type: ignore[valid-type]
    deterministic: bool | Literal["warn"] | None = None
    num_nodes: Annotated[int, Field(ge=1)] = 1

    @property
    def distributed(self) -> bool:
        """True when the settings start more than one process."""
        return self.num_nodes > 1 or (self.devices not in (1, "1") and self.strategy != "single_device")


def trainer_kwargs(settings: TrainerSettings) -> dict[str, Any]:
    """The Trainer keyword arguments that ``settings`` sets."""
    return settings.model_dump()


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
    import lightning as L  # here, not at the top: a Ray driver or a settings check never pays its ~3 s import

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


__all__ = ["ACCELERATORS", "PRECISIONS", "STRATEGIES", "TrainerSettings", "build_trainer", "quiet_lightning", "trainer_kwargs"]
