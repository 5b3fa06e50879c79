"""Cost predictors: noise-aware predictors of measured columns (latency, FLOPs, params, accuracy),
fit on a training split and scored on the held-out rest, saved with a record of how their data
was measured (``save_cost_predictor`` / ``cost_predictor_info``)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nag.errors import ConfigError, MissingDataError
from nag.io import atomic_torch_save
from nag.metrics import regression_scores
from nag.modules.predictor import Predictor, fit_predictor
from nag.spaces.base import Arch, SearchSpace

PREDICTOR_ASSETS = Path(__file__).resolve().parents[1] / "assets" / "predictors"


def split_rows(n: int, n_train: int | None, heldout_frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded row indices (train, held-out): ``n_train`` rows train (None: all but ``heldout_frac``)."""
    if not 0.0 <= heldout_frac < 1.0:
        raise ConfigError(f"heldout_frac must be in [0, 1), got {heldout_frac}")
    order = np.random.default_rng(seed).permutation(n)
    k = n - int(round(heldout_frac * n)) if n_train is None else int(n_train)
    if not 2 <= k <= n:
        raise ConfigError(f"cannot train on {k} of {n} rows; ask for 2..{n} (n_train) or measure more archs")
    return order[:k], order[k:]


def fit_cost_predictor(
    space: SearchSpace,
    archs: Sequence[Arch],
    y: Mapping[str, np.ndarray],
    sde_config: Mapping[str, Any],
    train_rows: np.ndarray,
    heldout_rows: np.ndarray,
    seed: int = 0,
    **fit_options: Any,
) -> tuple[Any, dict[str, float]]:
    """Fit a noise-aware predictor of every column of ``y`` on ``train_rows``; score it on ``heldout_rows``.

    Returns the Predictor and ``{"<metric>_<score>": value}`` (``regression_scores`` at t = 0).
    ``fit_options`` go to ``nag.modules.predictor.fit_predictor`` (steps, ensemble, net_config, ...).
    """
    targets = list(y)
    pick = lambda rows: [archs[i] for i in rows]  # noqa: E731
    predictor = fit_predictor(
        space, pick(train_rows), {m: y[m][train_rows] for m in targets}, sde_config,
        targets=targets, seed=seed, **{k: v for k, v in fit_options.items() if v is not None},
    )
    scores: dict[str, float] = {}
    if len(heldout_rows):
        mean, _ = predictor.predict_archs(pick(heldout_rows))
        for j, m in enumerate(targets):
            for k, v in regression_scores(mean[:, j].numpy(), y[m][heldout_rows]).items():
                scores[f"{m}_{k}"] = v
    return predictor, scores


def default_predictor_path(space_name: str, name: str) -> Path:
    """Where nag ships predictor ``name`` of a space: ``nag/assets/predictors/<space>_<name>.pt``."""
    return PREDICTOR_ASSETS / f"{space_name}_{name}.pt"


def resolve_predictor_path(value: str | Path) -> Path:
    """A predictor file: a path, or the name of a shipped one (``mbv3_latency_cpu``)."""
    path = Path(str(value)).expanduser()
    if path.suffix != ".pt" and len(path.parts) == 1:
        shipped = PREDICTOR_ASSETS / f"{value}.pt"
        if not shipped.is_file():
            names = sorted(p.stem for p in PREDICTOR_ASSETS.glob("*.pt"))
            raise MissingDataError(f"nag ships no predictor {value!r}; shipped: {names}. Or pass a path to a .pt file")
        return shipped
    if not path.is_file():
        raise MissingDataError(f"no predictor checkpoint at {path}; write one with experiment=fit_cost_predictor")
    return path


def save_cost_predictor(predictor: Any, path: str | Path, info: Mapping[str, Any]) -> Path:
    """Save ``predictor`` atomically with ``info`` (how its data was measured, its held-out scores)."""
    ckpt = predictor.checkpoint()
    ckpt["info"] = dict(info)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_torch_save(ckpt, path)


def load_cost_predictor(value: str | Path, space: SearchSpace | None = None) -> Any:
    """The Predictor at a path or shipped name (see ``resolve_predictor_path``); refuses another space."""
    return Predictor.load(resolve_predictor_path(value), space)


def cost_predictor_info(value: str | Path) -> dict[str, Any]:
    """The ``info`` saved with a predictor ({} when there is none)."""
    ckpt = torch.load(resolve_predictor_path(value), map_location="cpu", weights_only=True)
    return dict(ckpt.get("info") or {})


__all__ = [
    "PREDICTOR_ASSETS",
    "cost_predictor_info",
    "default_predictor_path",
    "fit_cost_predictor",
    "load_cost_predictor",
    "resolve_predictor_path",
    "save_cost_predictor",
    "split_rows",
]
