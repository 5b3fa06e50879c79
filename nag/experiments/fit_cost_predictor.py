"""``experiment=fit_cost_predictor``: a noise-aware predictor of architecture costs (latency, FLOPs, ...).

``source`` says where the costs come from:

- ``measure``: ``n_archs`` archs sampled from the space (``space.sample``, seeded) are measured
  on this machine into ``measure.path`` (default ``<run dir>/costs.jsonl``) by
  ``nag.costs.measure_costs``: CPU latency by ``space.latency``, params/FLOPs by ``space.cost``.
  The file is resumable: rerun with the same path and only the missing archs are measured.
- ``table``: the rows of a benchmark CSV (``benchmark.path``; ``benchmark.arch`` says how a row
  names its arch, see ``nag.costs.table_arch_fn``).

The predictor (``nag.modules.predictor.fit_predictor``) learns every column of ``targets`` on
``n_train`` rows (null: all but ``heldout_frac``), under the SDE of the prior it will guide
(``prior.path``, default: the prior nag ships for the space), and is scored on the held-out rows.

Writes ``predictor.pt`` (and, with ``save_default=true``, ``nag/assets/predictors/<space>_<default_name>.pt``).
Results: ``n_train``, ``n_heldout``, per target ``<m>_spearman``, ``<m>_kendall``, ``<m>_pearson``,
``<m>_mae``, ``<m>_r2`` on the held-out rows (t = 0), ``<m>_min``/``<m>_median``/``<m>_max`` of
the data, ``measure_s``, ``fit_s``, ``wall_s``.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np
from omegaconf import DictConfig

from nag.costs import (
    Timing,
    check_metrics,
    default_predictor_path,
    fit_cost_predictor,
    measure_costs,
    read_table_costs,
    save_cost_predictor,
    split_rows,
)
from nag.diffusion.prior import default_prior_path, read_prior_checkpoint
from nag.errors import ConfigError, MissingDataError
from nag.experiments import build_space, call_with_config, experiment, plain, positive_int, run_dir
from nag.experiments.generate import set_threads

SOURCES = ("measure", "table")


def prior_sde(cfg: DictConfig, space_name: str) -> dict[str, Any]:
    """The SDE config of ``prior.path`` (default: the prior shipped for the space)."""
    path = (plain(cfg.get("prior")) or {}).get("path")
    return dict(read_prior_checkpoint(path or default_prior_path(space_name))["sde"])


@experiment("fit_cost_predictor")
def fit_cost_predictor_experiment(cfg: DictConfig) -> dict[str, Any]:
    """Measure or read costs, fit the predictor, score it; see the module docstring."""
    start = time.perf_counter()
    set_threads(cfg)
    space = build_space(cfg)
    seed = int(cfg.seed)
    source = str(cfg.source)
    targets = list(plain(cfg.targets) or [])
    if not targets:
        raise ConfigError("targets is empty; name the cost columns to predict, e.g. targets=[latency_ms]")
    sde = prior_sde(cfg, space.name)

    info: dict[str, Any] = {"source": source, "targets": targets, "space": plain(cfg.space)}
    t0 = time.perf_counter()
    if source == "measure":
        measure = dict(plain(cfg.get("measure")) or {})
        path = measure.pop("path", None) or run_dir() / "costs.jsonl"
        timing = call_with_config("measure", "timing", Timing, measure)
        archs = space.sample(positive_int(cfg, "n_archs"), seed)
        rows = measure_costs(space, archs, path, check_metrics(targets), timing, context={"space": plain(cfg.space)})
        y = {m: np.array([r[m] for r in rows], dtype=np.float64) for m in targets}
        scales = {r["reference_ms"] for r in rows if "reference_ms" in r}
        info.update(measure_context=rows[0]["context"], costs_file=str(path), reference_ms=scales.pop() if scales else None)
    elif source == "table":
        benchmark = plain(cfg.get("benchmark")) or {}
        if not benchmark.get("path"):
            raise MissingDataError("source=table needs benchmark.path=<csv> (and benchmark.arch for tables without an arch column)")
        archs, y = read_table_costs(benchmark["path"], space, targets, benchmark.get("arch"))
        info.update(table=str(benchmark["path"]))
    else:
        raise ConfigError(f"source={source!r} is not a cost source; accepted: {', '.join(SOURCES)}")
    measure_s = time.perf_counter() - t0

    n_train = cfg.get("n_train")
    train_rows, heldout_rows = split_rows(len(archs), n_train, float(cfg.heldout_frac), seed)
    t0 = time.perf_counter()
    predictor, scores = fit_cost_predictor(
        space, archs, y, sde, train_rows, heldout_rows, seed=seed, **(plain(cfg.get("predictor")) or {})
    )
    fit_s = time.perf_counter() - t0

    results: dict[str, Any] = {"n_train": len(train_rows), "n_heldout": len(heldout_rows), **scores}
    for m in targets:
        results.update({f"{m}_min": float(y[m].min()), f"{m}_median": float(np.median(y[m])), f"{m}_max": float(y[m].max())})
    info.update(n_train=len(train_rows), n_heldout=len(heldout_rows), heldout_scores=scores, seed=seed)
    save_cost_predictor(predictor, run_dir() / "predictor.pt", info)
    if cfg.get("save_default"):
        save_cost_predictor(predictor, default_predictor_path(space.name, str(cfg.default_name)), info)
    return {**results, "measure_s": measure_s, "fit_s": fit_s, "wall_s": time.perf_counter() - start}


__all__ = ["fit_cost_predictor_experiment", "prior_sde"]
