"""Weights & Biases without surprises: offline unless asked, never a login, always finished.

    with wandb_run(cfg, name="transfer_nas") as run:
        log_metrics({"best_acc": 93.1})
        train_eval_model(..., logger=lightning_logger())

Mode: the ``mode`` argument, else $WANDB_MODE, else "offline" (sync later with ``wandb sync``).
wandb is imported only when a run starts in a mode other than "disabled", so nag runs on machines
without it (a GPU box with only torch and lightning) when W&B is disabled.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Literal

from nag.schema import Settings

MODES = ("online", "offline", "disabled", "shared")


class WandbConfig(Settings):
    """The ``wandb:`` config block: ``mode`` (offline | online | disabled; null = $WANDB_MODE, else
    offline) and ``project``."""

    settings_name: ClassVar[str] = "wandb"

    mode: Literal[MODES] | Literal["dryrun"] | None = None  # type: ignore[valid-type]
    project: str = "nag"


def resolve_mode(mode: str | None = None) -> str:
    """``mode`` > $WANDB_MODE > "offline"; "dryrun" (an old W&B alias) means offline."""
    chosen = mode or os.environ.get("WANDB_MODE") or "offline"
    chosen = "offline" if chosen == "dryrun" else chosen
    if chosen not in MODES:
        from nag.errors import ConfigError

        raise ConfigError(f"unknown W&B mode {chosen!r}; accepted: {', '.join(MODES)}")
    return chosen


def plain_config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """A DictConfig (resolved) or any mapping as a plain, nested dict."""
    if config is None:
        return {}
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(config, DictConfig):
            return OmegaConf.to_container(config, resolve=True)  # type: ignore[return-value]
    except ImportError:  # pragma: no cover
        pass
    return {str(k): plain_config(v) if isinstance(v, Mapping) else v for k, v in config.items()}


@contextmanager
def wandb_run(
    config: Mapping[str, Any] | None,
    *,
    project: str = "nag",
    name: str | None = None,
    group: str | None = None,
    mode: str | None = None,
    dir: str | os.PathLike | None = None,
) -> Iterator[Any]:
    """Start a W&B run with ``config`` logged as a plain dict; yield it (None when W&B is
    disabled); always ``finish()`` it. ``group`` gathers runs, e.g. the jobs of one sweep."""
    mode = resolve_mode(mode)
    if mode == "disabled":  # nothing to log: wandb is not even imported
        yield None
        return
    import wandb

    if dir is not None:
        Path(dir).mkdir(parents=True, exist_ok=True)
    try:
        run = wandb.init(
            project=project,
            name=name,
            group=group,
            mode=mode,
            dir=os.fspath(dir) if dir is not None else None,
            config=plain_config(config),
            settings=wandb.Settings(silent=True, console="off"),
        )
        yield run
    finally:
        wandb.finish()


def active_run() -> Any | None:
    """The current W&B run, or None when there is none or W&B is disabled."""
    wandb = sys.modules.get("wandb")  # never imported: no run was started
    run = wandb.run if wandb is not None else None
    if run is None or getattr(run, "disabled", False):
        return None
    return run


def log_metrics(metrics: Mapping[str, Any], step: int | None = None) -> None:
    """Log ``metrics`` to the active run (tensors/numpy scalars as floats); no-op without one."""
    run = active_run()
    if run is None:
        return
    run.log({str(k): _scalar(v) for k, v in metrics.items()}, step=step)


def _scalar(value: Any) -> Any:
    """0-d tensors / numpy scalars as Python numbers; anything else as W&B takes it."""
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        return value.item()
    return value


def lightning_logger(prefix: str = "") -> Any:
    """A Lightning ``WandbLogger`` writing into the active run, or False when there is none
    (W&B disabled, or called outside ``wandb_run``), which Lightning reads as "no logger".
    ``prefix`` namespaces the keys, e.g. one per trained architecture."""
    run = active_run()
    if run is None:
        return False
    from lightning.pytorch.loggers import WandbLogger

    return WandbLogger(experiment=run, prefix=prefix)
