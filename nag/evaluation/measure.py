"""Architecture costs (and trained accuracies) measured on this machine, into resumable rows files.

Measuring (``measure_costs``): each arch's costs go into a JSON Lines file, one row per arch,
appended and fsynced as soon as it is measured::

    {"arch": "<space.format(arch)>", "latency_ms": 5.9, "params_M": 3.7, "flops_M": 86.7, "reference_ms": 6.1,
     "context": {"batch_size": 1, "runs": 10, "warmup": 3, "reference": "<arch>", "torch_threads": 1, ...}}

Rerunning with the same file skips the archs already there, so a killed run resumes where it
stopped; a file measured under another ``context`` (threads, resolution, ...) is refused rather
than mixed. The metrics are ``COST_METRICS``: ``params_M`` / ``flops_M`` from ``space.cost`` (the
contract) and ``latency_ms`` from ``LatencyMeter`` (nag.evaluation.latency).

Training (``measure_accuracies``): the same resumable JSON Lines file, each row an arch really
trained on a task by ``nag.evaluation.train_eval`` (``val_acc``, ``test_acc``, ``train_loss``,
``train_s``) plus its exact ``params_M`` / ``flops_M``; the context is the task, budget and
training seed. Trainings may run in parallel on an executor (``nag.executor``); latency is always
measured serially in this process (see ``measure_costs``).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nag.errors import ConfigError, MissingDataError
from nag.evaluation.latency import LatencyMeter, Timing
from nag.evaluation.training import TrainBudget, train_eval
from nag.executor import Executor, Job, LocalExecutor, fill_rows
from nag.io import RowStore, read_jsonl
from nag.spaces.base import Arch, SearchSpace


# metric -> measure(space, arch, meter) -> value; ``meter`` is the call's LatencyMeter (made on first use)
COST_METRICS: dict[str, Callable[[SearchSpace, Arch, Callable[[], LatencyMeter]], float]] = {
    "latency_ms": lambda space, arch, meter: meter()(arch),
    "params_M": lambda space, arch, meter: float(space.cost(arch)["params_M"]),
    "flops_M": lambda space, arch, meter: float(space.cost(arch)["flops_M"]),
}


def check_metrics(metrics: Sequence[str]) -> list[str]:
    """``metrics`` as a list, each one of ``COST_METRICS`` (ConfigError otherwise)."""
    metrics = list(metrics)
    unknown = [m for m in metrics if m not in COST_METRICS]
    if unknown or not metrics:
        raise ConfigError(f"cost metrics {unknown or '[]'} are not measurable; accepted: {sorted(COST_METRICS)}")
    return metrics


def measure_context(space: SearchSpace, timing: Timing, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What a measurement depends on: the timing (with its reference arch), torch's thread count
    and ``extra`` (e.g. the space config)."""
    reference = timing.reference if timing.reference is not None else space.format(space.sample(1, 0)[0])
    return {**dict(extra or {}), "batch_size": timing.batch_size, "runs": timing.runs, "warmup": timing.warmup,
            "reference": reference, "torch_threads": torch.get_num_threads()}


class _LazyMeter:
    """Makes the LatencyMeter (and its calibration) only when a latency is first asked for."""

    def __init__(self, space: SearchSpace, timing: Timing) -> None:
        self.space, self.timing, self.meter = space, timing, None

    def __call__(self) -> LatencyMeter:
        if self.meter is None:
            self.meter = LatencyMeter(self.space, self.timing)
        return self.meter


def measure_arch(
    space: SearchSpace, arch: Arch, metrics: Sequence[str], meter: Callable[[], LatencyMeter] | None = None
) -> dict[str, float]:
    """``{metric: value}`` of one arch (see ``COST_METRICS``); ``meter`` returns the LatencyMeter to use."""
    meter = meter or _LazyMeter(space, Timing())
    return {m: COST_METRICS[m](space, arch, meter) for m in check_metrics(metrics)}


def measure_costs(
    space: SearchSpace,
    archs: Sequence[Arch],
    path: str | Path,
    metrics: Sequence[str] = ("latency_ms",),
    timing: Timing = Timing(),
    context: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Measure ``metrics`` of ``archs`` into the JSONL file ``path`` (resumable); its rows for ``archs``.

    Archs already in the file are not measured again. Rows with a latency also record the
    reference's ``reference_ms`` of the session that measured them. Raises ConfigError when the
    file's rows were measured under another context or lack one of ``metrics``.
    """
    # Serial, in this process, on purpose (no executor): a latency is a property of the machine
    # that times it, and evaluations running beside it would share its cores and time each other
    # (the paired reference cancels slow drifts of load, not a neighbour busy within a pair).
    metrics = check_metrics(metrics)
    ctx = measure_context(space, timing, context)
    path = Path(path)
    done = _read_rows(path, ctx, metrics)
    scales = {row["reference_ms"] for row in done.values() if "reference_ms" in row}
    if len(scales) > 1 or (scales and timing.reference_ms is not None and scales != {timing.reference_ms}):
        raise ConfigError(
            f"{path} holds latencies on the scale reference_ms={sorted(scales)}; timing.reference_ms="
            f"{timing.reference_ms} would mix scales. Use another file, or timing.reference_ms={min(scales)}"
        )
    if scales and timing.reference_ms is None:  # a resumed file keeps its scale
        timing = timing.with_(reference_ms=scales.pop())
    meter = _LazyMeter(space, timing)

    def measure(arch: Arch) -> dict[str, Any]:
        row: dict[str, Any] = measure_arch(space, arch, metrics, meter)
        if meter.meter is not None:
            row["reference_ms"] = meter.meter.reference_ms
        return row

    jobs = lambda todo: [Job(name, measure, (arch,)) for name, arch in todo]  # noqa: E731
    return _fill_rows(space, archs, path, done, ctx, jobs, LocalExecutor(), f"measuring {', '.join(metrics)}", progress)


# train_eval's numbers kept in a row of ``measure_accuracies`` (``wall_s`` is kept as ``train_s``)
TRAIN_METRICS = ("val_acc", "test_acc", "train_loss")


def interleave(a: Sequence[Arch], b: Sequence[Arch]) -> list[Arch]:
    """a0, b0, a1, b1, ... then the rest of the longer one: measured in this order, two sets of
    archs meet the same machine load."""
    out: list[Arch] = []
    for i in range(max(len(a), len(b))):
        out += [s[i] for s in (a, b) if i < len(s)]
    return out


def measure_accuracies(
    space: SearchSpace,
    archs: Sequence[Arch],
    path: str | Path,
    task: Any,
    budget: Any = None,
    seed: int = 0,
    metrics: Sequence[str] = ("val_acc", "test_acc", "flops_M", "params_M"),
    context: Mapping[str, Any] | None = None,
    progress: bool = True,
    executor: Executor | None = None,
    trainer: Any = None,
) -> list[dict[str, Any]]:
    """Really train each arch (``nag.evaluation.train_eval`` on ``task``) into the JSONL file ``path`` (resumable).

    ``trainer``: where to train (``nag.modules.trainer.TrainerSettings``; None = its defaults).

    A row holds ``TRAIN_METRICS`` (accuracies in %), ``train_s`` and the requested ``params_M`` /
    ``flops_M`` (``space.cost``: the network ``build(arch, None)``, not the one trained on ``task``),
    like ``measure_costs``: appended and fsynced per arch as it finishes, archs already in the file
    are not trained again, and a file written under another ``context`` (budget, training seed,
    task, ...) is refused. The trainings run on ``executor`` (default: here, one after another);
    every arch trains with ``seed``. Returns the rows of ``archs``.
    """
    metrics = list(metrics)
    cost_metrics = [m for m in metrics if m not in TRAIN_METRICS]
    if "latency_ms" in cost_metrics or not set(cost_metrics) <= set(COST_METRICS):
        raise ConfigError(
            f"trained rows can hold {list(TRAIN_METRICS)} and {sorted(set(COST_METRICS) - {'latency_ms'})}; got {metrics}. "
            f"Measure latency_ms in its own file (nag.evaluation.measure.measure_costs, fit_cost_predictor source=measure)"
        )
    budget = TrainBudget.from_any(budget)
    ctx = {**dict(context or {}), "budget": budget.to_dict(), "train_seed": int(seed)}
    path = Path(path)
    done = _read_rows(path, ctx, metrics)
    executor = executor if executor is not None else LocalExecutor()

    def jobs(todo: list[tuple[str, Arch]]) -> list[Job]:
        shared_space, shared_task = executor.share(space), executor.share(task)
        return [Job(name, _trained_row, (shared_space, arch, shared_task, budget, seed, cost_metrics, trainer))
                for name, arch in todo]

    return _fill_rows(space, archs, path, done, ctx, jobs, executor, "training", progress)


def _trained_row(
    space: SearchSpace, arch: Arch, task: Any, budget: Any, seed: int, cost_metrics: Sequence[str], trainer: Any = None
) -> dict[str, Any]:
    """The measured part of a ``measure_accuracies`` row (runs where the executor puts it)."""
    out = train_eval(space, arch, task, budget=budget, seed=seed, **({} if trainer is None else {"trainer": trainer}))
    row: dict[str, Any] = {m: float(out[m]) for m in TRAIN_METRICS}
    row["train_s"] = float(out["wall_s"])
    return {**row, **(measure_arch(space, arch, cost_metrics) if cost_metrics else {})}


def _read_rows(path: Path, ctx: Mapping[str, Any], metrics: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``{arch string: row}`` of a rows file (none when it does not exist), each row checked by ``_check_row``."""
    done: dict[str, dict[str, Any]] = {}
    for row in read_jsonl(path, missing_ok=True):
        if isinstance(row, Mapping) and row.get("arch") in done:
            continue  # the first row of an arch counts (RowStore's rule)
        _check_row(row, ctx, metrics, path)
        done[row["arch"]] = row
    return done


def _fill_rows(
    space: SearchSpace,
    archs: Sequence[Arch],
    path: Path,
    done: dict[str, dict[str, Any]],
    ctx: Mapping[str, Any],
    jobs: Callable[[list[tuple[str, Arch]]], list[Job]],
    executor: Executor,
    desc: str,
    progress: bool,
) -> list[dict[str, Any]]:
    """Run ``jobs(todo)`` for the (name, arch) pairs not in ``done`` on ``executor``; append
    ``{"arch", **result, "context"}`` to ``path`` as each finishes. Returns the rows of ``archs``."""
    names = [space.format(a) for a in archs]
    todo = [(name, a) for name, a in dict(zip(names, archs)).items() if name not in done]

    def row_of(job: Job, measured: dict[str, Any]) -> dict[str, Any]:
        row = done[job.key] = {"arch": job.key, **measured, "context": dict(ctx)}
        return row

    fill_rows(RowStore(path, "arch"), jobs(todo) if todo else [], executor, row_of, desc=desc,
              progress=progress and bool(todo))
    return [done[name] for name in names]


def _check_row(row: Mapping[str, Any], ctx: Mapping[str, Any], metrics: Sequence[str], path: Path) -> None:
    if not isinstance(row, Mapping) or "arch" not in row:
        raise ConfigError(f"{path} is not a costs file: a row has no 'arch' ({row!r:.200})")
    if row.get("context") != dict(ctx):
        raise ConfigError(
            f"{path} was measured under {row.get('context')}, not under the requested {dict(ctx)}; "
            f"use another file (measure.path=...) or the recorded settings"
        )
    missing = [m for m in metrics if m not in row]
    if missing:
        raise ConfigError(f"{path}: row {row['arch']!r} has no {missing}; measure into another file")


def read_costs(path: str | Path, space: SearchSpace, metrics: Sequence[str]) -> tuple[list[Arch], dict[str, np.ndarray]]:
    """Archs and ``{metric: values}`` of a costs JSONL file."""
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"no costs file at {path}; write one with nag.evaluation.measure.measure_costs or experiment=fit_cost_predictor")
    rows = read_jsonl(path)
    missing = sorted({m for row in rows for m in metrics if m not in row})
    if missing:
        raise ConfigError(f"{path}: some rows have no {missing}; its rows hold {sorted(rows[0]) if rows else []}")
    archs = [space.parse(row["arch"]) for row in rows]
    return archs, {m: np.array([row[m] for row in rows], dtype=np.float64) for m in metrics}


__all__ = [
    "COST_METRICS",
    "TRAIN_METRICS",
    "check_metrics",
    "interleave",
    "measure_accuracies",
    "measure_arch",
    "measure_context",
    "measure_costs",
    "read_costs",
]
