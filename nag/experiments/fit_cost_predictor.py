"""``experiment=fit_cost_predictor``: a noise-aware predictor of architecture costs (latency, FLOPs, accuracy, ...).

``source`` says where the costs come from:

- ``measure``: ``n_archs`` archs sampled from the space (``space.sample``, seeded) are measured
  on this machine into ``measure.path`` (default ``<run dir>/costs.jsonl``) by
  ``nag.evaluation.measure.measure_costs``: CPU latency by ``space.latency``, params/FLOPs by ``space.cost``.
  The file is resumable: rerun with the same path and only the missing archs are measured.
- ``train_eval``: ``n_archs`` sampled archs are really trained on ``task`` with the budget
  ``train`` (``nag.evaluation.train_eval``, training seed ``train_seed``) into ``measure.path`` by
  ``nag.evaluation.measure.measure_accuracies``; targets ``val_acc`` / ``test_acc`` / ``train_loss`` (%) and
  the exact ``flops_M`` / ``params_M``. Resumable like ``measure`` (same ``n_archs`` and ``seed``).
  The trainings run on ``executor`` (``local``, or in parallel on ``ray``); ``measure`` is always
  serial (a latency measured beside other work would time that work too).
- ``table``: the rows of a benchmark CSV (``benchmark.path``; ``benchmark.arch`` says how a row
  names its arch, see ``nag.tables.readers.table_arch_fn``).

The predictor (``nag.modules.predictor.fit_predictor``) learns every column of ``targets`` on
``n_train`` rows (null: all but ``heldout_frac``), under the SDE of the prior it will guide
(``prior.path``, default: the prior nag ships for the space), and is scored on the held-out rows.

Writes ``predictor.pt`` (and, with ``save_default=true``, ``nag/assets/predictors/<space>_<default_name>.pt``).
Results: ``n_train``, ``n_heldout``, per target ``<m>_spearman``, ``<m>_kendall``, ``<m>_pearson``,
``<m>_mae``, ``<m>_r2`` on the held-out rows (t = 0), ``<m>_min``/``<m>_median``/``<m>_max`` of
the data, ``measure_s``, ``fit_s``, ``wall_s``.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar

import numpy as np
from omegaconf import DictConfig

from pydantic import Field

from nag.diffusion.prior import PriorConfig, prior_path, read_prior_checkpoint
from nag.errors import ConfigError, MissingDataError
from nag.evaluation import TrainBudget
from nag.evaluation.latency import Timing
from nag.evaluation.measure import check_metrics, measure_accuracies, measure_costs
from nag.executor import build_executor
from nag.experiments import build_budget, build_space, build_task, experiment, plain, run_dir, trainer_settings
from nag.experiments.config import Fraction, PositiveInt, RunConfig
from nag.modules.cost_predictor import default_predictor_path, fit_cost_predictor, save_cost_predictor, split_rows
from nag.modules.predictor import PredictorOptions
from nag.registry import Registry
from nag.tables.readers import read_table_costs

# source -> read(cfg, space, targets, info) -> (archs, {target: values}); it adds what it read to ``info``
Source = Callable[[DictConfig, Any, list[str], dict[str, Any]], tuple[list, dict[str, np.ndarray]]]
SOURCES: Registry[tuple[list, dict[str, np.ndarray]]] = Registry("cost source", group="nag.cost_sources")


class MeasureSettings(Timing):
    """The ``measure:`` block: the rows file (``path``; null = ``<run dir>/costs.jsonl``) and the ``Timing``."""

    settings_name: ClassVar[str] = "measure"

    path: str | None = None


class FitCostPredictorConfig(RunConfig):
    source: str
    targets: Annotated[list[str], Field(min_length=1)]
    n_archs: PositiveInt
    n_train: PositiveInt | None
    heldout_frac: Fraction
    torch_threads: PositiveInt | None
    measure: MeasureSettings
    prior: PriorConfig
    predictor: PredictorOptions
    save_default: bool
    default_name: str
    train: TrainBudget | None = None  # source=train_eval (experiment=fit_acc_predictor_mbv3)
    train_seed: int | None = None


def rows_path(cfg: DictConfig) -> tuple[Path, dict[str, Any]]:
    """The rows file of ``cfg.measure`` (``path``, default ``<run dir>/costs.jsonl``) and its other keys."""
    measure = dict(plain(cfg.get("measure")) or {})
    return Path(measure.pop("path", None) or run_dir() / "costs.jsonl"), measure


def row_values(rows: Sequence[Mapping[str, Any]], targets: Sequence[str]) -> dict[str, np.ndarray]:
    return {m: np.array([r[m] for r in rows], dtype=np.float64) for m in targets}


@SOURCES.register("measure")
def measured_costs(cfg: DictConfig, space: Any, targets: list[str], info: dict[str, Any]) -> tuple[list, dict[str, np.ndarray]]:
    """``n_archs`` sampled archs measured here (``nag.evaluation.measure.measure_costs``)."""
    path, measure = rows_path(cfg)
    timing = Timing(**measure)
    executor = (plain(cfg.get("executor")) or {}).get("name", "local")
    if executor != "local":
        print(f"note: executor={executor} is not used for source=measure: CPU latency is measured serially in this "
              f"process, since evaluations beside it would share its cores (docs/scale.md)", file=sys.stderr)
    archs = space.sample(cfg.n_archs, int(cfg.seed))
    rows = measure_costs(space, archs, path, check_metrics(targets), timing, context={"space": plain(cfg.space)})
    scales = {r["reference_ms"] for r in rows if "reference_ms" in r}
    info.update(measure_context=rows[0]["context"], costs_file=str(path), reference_ms=scales.pop() if scales else None)
    return archs, row_values(rows, targets)


@SOURCES.register("train_eval")
def trained_accuracies(cfg: DictConfig, space: Any, targets: list[str], info: dict[str, Any]) -> tuple[list, dict[str, np.ndarray]]:
    """``n_archs`` sampled archs really trained on ``task`` with budget ``train`` (``nag.evaluation.measure.measure_accuracies``)."""
    path, _ = rows_path(cfg)
    archs = space.sample(cfg.n_archs, int(cfg.seed))
    with build_executor(cfg.get("executor")) as executor:
        rows = measure_accuracies(
            space, archs, path, build_task(cfg), build_budget(cfg, "train"), seed=int(cfg.get("train_seed") or 0),
            metrics=targets, context={"space": plain(cfg.space), "task": _task_context(cfg)}, executor=executor,
            trainer=trainer_settings(cfg),
        )
    info.update(measure_context=rows[0]["context"], costs_file=str(path), train_s=float(sum(r["train_s"] for r in rows)))
    return archs, row_values(rows, targets)


@SOURCES.register("table")
def table_costs(cfg: DictConfig, space: Any, targets: list[str], info: dict[str, Any]) -> tuple[list, dict[str, np.ndarray]]:
    """The rows of the benchmark CSV ``benchmark.path``."""
    benchmark = plain(cfg.get("benchmark")) or {}
    if not benchmark.get("path"):
        raise MissingDataError("source=table needs benchmark.path=<csv> (and benchmark.arch for tables without an arch column)")
    info.update(table=str(benchmark["path"]))
    return read_table_costs(benchmark["path"], space, targets, benchmark.get("arch"))


def _task_context(cfg: DictConfig) -> dict[str, Any]:
    """The task config as a rows file records it; the whole task (``classes: null``) is recorded
    without the key, as the shipped rows were, so they keep resuming."""
    task = plain(cfg.task)
    if task.get("classes") is None:
        task.pop("classes", None)
    return task


def prior_sde(cfg: DictConfig, space_name: str) -> dict[str, Any]:
    """The SDE config of ``prior.path`` (default: the space's default prior)."""
    return dict(read_prior_checkpoint(prior_path(cfg.prior.path, space_name))["sde"])


@experiment("fit_cost_predictor", schema=FitCostPredictorConfig)
def fit_cost_predictor_experiment(cfg: DictConfig) -> dict[str, Any]:
    """Measure, train or read costs, fit the predictor, score it; see the module docstring."""
    start = time.perf_counter()
    space = build_space(cfg)
    seed = int(cfg.seed)
    name = str(cfg.source)
    read_source = SOURCES.get(name)  # an unknown name fails here, listing the known sources
    targets = list(plain(cfg.targets) or [])
    if not targets:
        raise ConfigError("targets is empty; name the cost columns to predict, e.g. targets=[latency_ms]")
    sde = prior_sde(cfg, space.name)

    info: dict[str, Any] = {"source": name, "targets": targets, "space": plain(cfg.space)}
    t0 = time.perf_counter()
    archs, y = read_source(cfg, space, targets, info)
    measure_s = time.perf_counter() - t0

    n_train = cfg.get("n_train")
    train_rows, heldout_rows = split_rows(len(archs), n_train, float(cfg.heldout_frac), seed)
    t0 = time.perf_counter()
    options = PredictorOptions(**plain(cfg.predictor)).settings()
    predictor, scores = fit_cost_predictor(
        space, archs, y, sde, train_rows, heldout_rows, seed=seed, trainer=trainer_settings(cfg), **options
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


__all__ = ["SOURCES", "fit_cost_predictor_experiment", "prior_sde"]
