"""Metrics: generation metrics for sampled architectures (any search space), and ``regression_scores``
of predictions against measured values.

Definitions (the paper's, made precise):

* ``validity``: fraction of the generated items that are valid archs of the space
  (``space.is_valid``; ``None`` counts as invalid).
* ``uniqueness``: distinct valid archs / valid archs.
* ``uniqueness_iso``: distinct isomorphism classes (``space.canonical``) / valid archs.
* ``novelty``: fraction of the *distinct* valid archs that are not in ``train_archs``.
* ``op_kl``: mean over nodes with more than one possible token of
  ``KL(P_gen(token | node) || P_train(token | node))``, frequencies of the valid generated and
  of the training archs, each with add-one (Laplace) smoothing over the node's possible tokens
  (its allowed ops, plus EMPTY where the node is optional). 0 when the per-node op statistics
  match; it ignores correlations between nodes.
* ``validity_threshold(x, space)``: validity of raw samples under the paper's decoding (map
  ``x`` to [0, 1], threshold at 0.5, each row must be a one-hot of an allowed op, or all zero on
  an optional node, and the space's cross-node rules must hold). ``space.decode`` (masked
  argmax) is valid by construction; this measures the raw model.
"""
from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from nag.errors import InvalidArchError
from nag.spaces.base import EMPTY, SearchSpace


def _valid(archs: Sequence[Any], space: SearchSpace) -> list[Hashable]:
    return [a for a in archs if a is not None and space.is_valid(a)]


def op_frequencies(archs: Iterable[Hashable], space: SearchSpace, smoothing: float = 1.0) -> np.ndarray:
    """Per-node token distribution ``[N, V + 1]`` (last column: EMPTY), smoothed over possible tokens."""
    n, v = space.num_nodes, space.num_ops
    possible = np.zeros((n, v + 1), dtype=bool)
    possible[:, :v] = space.allowed_ops().numpy()
    possible[:, v] = space.optional_nodes().numpy()
    counts = np.zeros((n, v + 1))
    rows = np.arange(n)
    for a in archs:
        tokens = np.asarray(space.to_tokens(a))
        counts[rows, np.where(tokens == EMPTY, v, tokens)] += 1
    counts = (counts + smoothing) * possible
    return counts / counts.sum(1, keepdims=True)


def op_kl(generated: Iterable[Hashable], train: Iterable[Hashable], space: SearchSpace, smoothing: float = 1.0) -> float:
    """Mean over multi-choice nodes of ``KL(P_gen || P_train)`` of per-node token frequencies (nats)."""
    p = op_frequencies(generated, space, smoothing)
    q = op_frequencies(train, space, smoothing)
    choice = (p > 0).sum(1) > 1
    if not choice.any():
        return 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0)
    return float(terms.sum(1)[choice].mean())


def generation_metrics(
    archs: Sequence[Any], space: SearchSpace, train_archs: Iterable[Hashable] | None = None
) -> dict[str, float]:
    """``{"n", "validity", "uniqueness", "uniqueness_iso"[, "novelty", "op_kl"]}`` (see module doc).

    ``novelty`` and ``op_kl`` need ``train_archs``; with no valid arch the ratios are 0.
    """
    n = len(archs)
    valid = _valid(archs, space)
    distinct = set(valid)
    out: dict[str, float] = {
        "n": float(n),
        "validity": len(valid) / n if n else 0.0,
        "uniqueness": len(distinct) / len(valid) if valid else 0.0,
        "uniqueness_iso": len({space.canonical(a) for a in distinct}) / len(valid) if valid else 0.0,
    }
    if train_archs is not None:
        train = list(train_archs)
        train_set = set(train)
        out["novelty"] = sum(a not in train_set for a in distinct) / len(distinct) if distinct else 0.0
        out["op_kl"] = op_kl(valid, train, space) if valid and train else math.nan
    return out


def threshold_tokens(x: Tensor, space: SearchSpace) -> tuple[Tensor, Tensor]:
    """Paper decoding of ``x [B, N, V]`` (in [-1, 1]): tokens ``[B, N]`` and row-validity ``[B, N]``."""
    bits = (x.detach().cpu().float() + 1.0) / 2.0 > 0.5  # [B, N, V]
    ones = bits.sum(-1)
    tokens = bits.float().argmax(-1)
    allowed = space.allowed_ops()
    on_allowed = allowed.unsqueeze(0).expand_as(bits).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    row_ok = ((ones == 1) & on_allowed) | ((ones == 0) & space.optional_nodes().unsqueeze(0))
    tokens = torch.where(ones == 0, torch.full_like(tokens, EMPTY), tokens)
    return tokens, row_ok


def threshold_valid_mask(x: Tensor, space: SearchSpace) -> Tensor:
    """Per-sample validity ``[B]`` (bool) under the paper's threshold decoding."""
    tokens, row_ok = threshold_tokens(x, space)
    ok = row_ok.all(-1)
    for i in ok.nonzero(as_tuple=True)[0].tolist():
        try:
            space.from_tokens(tokens[i].tolist())
        except InvalidArchError:
            ok[i] = False
    return ok


def validity_threshold(x: Tensor, space: SearchSpace) -> float:
    """Fraction of raw samples ``x [B, N, V]`` valid under the paper's decoding (threshold at 0.5)."""
    if x.dim() == 2:
        x = x.unsqueeze(0)
    if x.shape[0] == 0:
        return 0.0
    return float(threshold_valid_mask(x, space).float().mean())




def regression_scores(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """``spearman``, ``kendall``, ``pearson``, ``mae``, ``r2`` of predictions against truth (1-D arrays)."""
    from scipy.stats import kendalltau, pearsonr, spearmanr

    pred, true = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    if len(true) < 3:
        return {k: math.nan for k in ("spearman", "kendall", "pearson", "mae", "r2")}
    ss = float(((true - true.mean()) ** 2).sum())
    return {
        "spearman": float(spearmanr(pred, true).statistic),
        "kendall": float(kendalltau(pred, true).statistic),
        "pearson": float(pearsonr(pred, true).statistic),
        "mae": float(np.abs(pred - true).mean()),
        "r2": 1.0 - float(((true - pred) ** 2).sum()) / ss if ss > 0 else math.nan,
    }


__all__ = [
    "generation_metrics",
    "op_frequencies",
    "op_kl",
    "regression_scores",
    "threshold_tokens",
    "threshold_valid_mask",
    "validity_threshold",
]
