"""Metrics: generation metrics for sampled architectures (any search space), samples scored on a
benchmark table, predictor rank correlation, Pareto fronts, and ``regression_scores`` of
predictions against measured values.

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
from collections.abc import Hashable, Iterable, Mapping, Sequence
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


def sampling_report(
    x: Tensor, archs: Sequence[Any], space: SearchSpace, train_archs: Iterable[Hashable] | None, wall_s: float, nfe: int
) -> dict[str, Any]:
    """What experiment=generate reports for ``archs`` decoded from raw samples ``x [n, N, V]``:
    ``generation_metrics``, ``validity_threshold``, ``n``, ``n_unique``, ``wall_s``, ``archs_per_s``,
    ``unique_archs_per_s`` and ``nfe`` (score evaluations per sample)."""
    n, n_unique = len(archs), len(set(archs))
    metrics = generation_metrics(archs, space, train_archs=train_archs)
    return {
        **{k: v for k, v in metrics.items() if isinstance(v, (int, float, str))},
        "validity_threshold": validity_threshold(x, space),
        "n": n,
        "n_unique": n_unique,
        "wall_s": wall_s,
        "archs_per_s": n / wall_s if wall_s > 0 else math.inf,
        "unique_archs_per_s": n_unique / wall_s if wall_s > 0 else math.inf,
        "nfe": nfe,
    }


# ----- samples scored on a benchmark table ------------------------------------------------------
TOP_FRACS = {"top5": 0.05, "top1": 0.01}


def sample_scores(
    archs: Sequence[Any], table: Any, metric: str, higher_is_better: bool = True,
    top_fracs: Mapping[str, float] = TOP_FRACS,
) -> dict[str, float]:
    """True-value summary of samples on a ``BenchmarkTable``: ``frac_<top>`` (the true metric reaches
    the table's top-q quantile), ``mean_true``, ``max_true``, ``uniqueness``."""
    values = np.array([table.query(a, metric) for a in archs], dtype=np.float64)
    out: dict[str, float] = {}
    for name, frac in top_fracs.items():
        thr = table.quantile_threshold(metric, frac, higher_is_better)
        hit = values >= thr if higher_is_better else values <= thr
        out[f"frac_{name}"] = float(hit.mean()) if len(values) else 0.0
    out["mean_true"] = float(values.mean()) if len(values) else math.nan
    out["max_true"] = float(values.max() if higher_is_better else values.min()) if len(values) else math.nan
    out["uniqueness"] = generation_metrics(list(archs), table.space)["uniqueness"]
    return out


def constraint_scores(archs: Sequence[Any], table: Any, metric: str, guides: Sequence[Any]) -> dict[str, float]:
    """Per extra objective (a ``GuideSpec`` on table column ``target``) ``<m>_frac_satisfied`` and
    ``<m>_mean_true``; with constraints also ``frac_feasible`` (all hold), ``mean_true_feasible``
    (``metric`` over those), ``frac_top5_feasible`` (feasible and in the top 5% of the feasible
    table archs) and ``table_best_feasible``."""
    out: dict[str, float] = {}
    feasible = np.ones(len(archs), dtype=bool)
    table_feasible = np.ones(len(table), dtype=bool)
    for g in guides:
        values = np.array([table.query(a, g.target) for a in archs], dtype=np.float64)
        ok = g.satisfied(values)
        out[f"{g.target}_frac_satisfied"] = float(ok.mean()) if len(archs) else 0.0
        out[f"{g.target}_mean_true"] = float(values.mean()) if len(archs) else math.nan
        feasible &= ok
        table_feasible &= g.satisfied(table.values(g.target))
    if any(g.bound is not None for g in guides):
        primary = np.array([table.query(a, metric) for a in archs], dtype=np.float64)
        out["frac_feasible"] = float(feasible.mean()) if len(archs) else 0.0
        out["mean_true_feasible"] = float(primary[feasible].mean()) if feasible.any() else math.nan
        feasible_values = np.sort(table.values(metric)[table_feasible])
        if len(feasible_values):
            thr = feasible_values[-max(1, math.ceil(0.05 * len(feasible_values) - 1e-9))]
            out["frac_top5_feasible"] = float((feasible & (primary >= thr)).mean()) if len(archs) else 0.0
            out["table_best_feasible"] = float(feasible_values[-1])
    return out


def spearman(pred: Sequence[float], true: Sequence[float]) -> float | None:
    """Spearman rank correlation of ``pred [n]`` with ``true [n]``; None where it is undefined
    (fewer than 3 values, or one side constant: e.g. a task on which every arch scores 100%)."""
    from scipy.stats import spearmanr

    if len(pred) < 3 or np.ptp(np.asarray(true, dtype=float)) == 0 or np.ptp(np.asarray(pred, dtype=float)) == 0:
        return None
    return float(spearmanr(pred, true).statistic)


def predictor_spearman(
    predictor: Any, space: SearchSpace, archs: Sequence[Any], values: np.ndarray, target: str, t: float = 0.0,
    seed: int = 0,
) -> float:
    """Spearman rank correlation of ``predictor``'s ``target`` with ``values [n]`` on ``archs``; at
    ``t > 0`` each arch's state is perturbed once by the predictor's SDE (seeded)."""
    from scipy.stats import spearmanr

    from nag.diffusion.sde import build_sde, perturb
    from nag.modules.arch_data import to_state

    x = to_state(space, list(archs))
    if t > 0:
        tt = torch.full((x.shape[0],), float(t))
        x = perturb(build_sde(predictor.sde_config), x, tt, generator=torch.Generator().manual_seed(seed))[0]
    with torch.no_grad():
        pred = predictor(x, float(t))[:, predictor.target_index(target)].numpy()
    return float(spearmanr(pred, values).statistic)


# ----- Pareto fronts ------------------------------------------------------------------------------
def pareto_mask(costs: np.ndarray) -> np.ndarray:
    """Non-dominated rows of ``costs [n, k]`` (lower is better in every column). [n] bool.

    Row i is dominated when some row is <= in every column and < in one. Exact duplicates of a
    non-dominated row are all kept.
    """
    costs = np.asarray(costs, dtype=np.float64)
    if costs.ndim != 2:
        raise ValueError(f"pareto_mask expects costs [n, k], got shape {costs.shape}")
    le = (costs[:, None, :] <= costs[None, :, :]).all(-1)  # le[j, i]: j <= i everywhere
    lt = (costs[:, None, :] < costs[None, :, :]).any(-1)
    return ~(le & lt).any(0)


def hypervolume_2d(costs: np.ndarray, ref: np.ndarray) -> float:
    """Area dominated by ``costs [n, 2]`` (lower is better) and bounded by the point ``ref [2]``."""
    pts = np.asarray(costs, dtype=np.float64)
    pts = pts[(pts < ref).all(1)]
    if len(pts) == 0:
        return 0.0
    pts = pts[pareto_mask(pts)]
    pts = pts[np.argsort(pts[:, 0])]
    xs = np.append(pts[1:, 0], ref[0])
    return float(((xs - pts[:, 0]) * (ref[1] - pts[:, 1])).sum())


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
    "TOP_FRACS",
    "constraint_scores",
    "generation_metrics",
    "hypervolume_2d",
    "op_frequencies",
    "op_kl",
    "pareto_mask",
    "predictor_spearman",
    "regression_scores",
    "sample_scores",
    "sampling_report",
    "threshold_tokens",
    "threshold_valid_mask",
    "validity_threshold",
]
