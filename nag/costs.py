"""Architecture costs (and trained accuracies) measured on this machine, and predictors trained on them.

Measuring (``measure_costs``): each arch's costs go into a JSON Lines file, one row per arch,
appended and fsynced as soon as it is measured::

    {"arch": "<space.format(arch)>", "latency_ms": 5.9, "params_M": 3.7, "flops_M": 86.7, "reference_ms": 6.1,
     "context": {"batch_size": 1, "runs": 10, "warmup": 3, "reference": "<arch>", "torch_threads": 1, ...}}

Rerunning with the same file skips the archs already there, so a killed run resumes where it
stopped; a file measured under another ``context`` (threads, resolution, ...) is refused rather
than mixed. The metrics are ``COST_METRICS``: ``params_M`` / ``flops_M`` from ``space.cost`` (the
contract) and ``latency_ms`` from ``LatencyMeter``: CPU timing of ``space.build(arch, None)`` at
``space.default_input_shape()``, paired with a reference network so that machine load cancels.

Training (``measure_accuracies``): the same resumable JSON Lines file, each row an arch really
trained on a task by ``space.train_eval`` (``val_acc``, ``test_acc``, ``train_loss``, ``train_s``)
plus its exact ``params_M`` / ``flops_M``; the context is the task, budget and training seed.
Trainings may run in parallel on an executor (``nag.executor``); latency is always measured
serially in this process (see ``measure_costs``).

Fitting (``fit_cost_predictor``): a noise-aware ``Predictor`` (nag.modules.predictor) of the
cost columns, fit on a training split and scored on the held-out rest, saved with a record of
how its data was measured (``save_cost_predictor`` / ``cost_predictor_info``).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nag.errors import ConfigError, MissingDataError
from nag.executor import Executor, Job, LocalExecutor, fill_rows
from nag.io import RowStore, atomic_torch_save, read_jsonl
from nag.spaces.base import Arch, SearchSpace

PREDICTOR_ASSETS = Path(__file__).resolve().parent / "assets" / "predictors"


@dataclass(frozen=True)
class Timing:
    """How latency is measured (see ``LatencyMeter``).

    Args:
        batch_size: images per forward pass.
        runs: timed (reference, arch) pairs per arch; the median ratio is kept.
        warmup: untimed passes of both first.
        reference: the reference arch (string form); None = ``space.sample(1, 0)[0]``.
        reference_ms: the reference's latency that sets the ms scale; None = measure it once (see
            ``LatencyMeter``). Give the value of earlier measurements to put new ones on their scale.
    """

    batch_size: int = 1
    runs: int = 10
    warmup: int = 3
    reference: str | None = None
    reference_ms: float | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.runs < 1 or self.warmup < 0:
            raise ConfigError(f"timing needs batch_size >= 1, runs >= 1, warmup >= 0; got {self}")


class LatencyMeter:
    """CPU latency (ms) of ``space.build(arch, None)`` in eval mode at ``space.default_input_shape()``.

    On a shared machine a plain median of timed passes tracks the machine's load more than the
    arch (test-retest Spearman 0.78 for 40 archs at load 1.8 on this project's 2-core box, 0.985 paired;
    docs/mbv3.md). So
    every timed pass of the arch follows one of a fixed reference network, and the arch's
    latency is ``median(t_arch / t_ref) * reference_ms``: a slowdown that hits both passes of a
    pair cancels, and the median drops pairs hit by a burst. ``reference_ms`` (``timing.reference_ms``,
    else the reference's median over ``max(30, 3 * runs)`` passes, measured when the meter is made)
    only sets the scale; that one number is load-sensitive, so measurements meant to be compared
    with earlier ones (e.g. a predictor's constraint in ms) reuse the earlier ``reference_ms``.
    """

    def __init__(self, space: SearchSpace, timing: Timing = Timing()) -> None:
        self.space, self.timing = space, timing
        ref = space.parse(timing.reference) if timing.reference is not None else space.sample(1, 0)[0]
        self.reference = space.format(ref)
        self._ref = space.build(ref, None).eval()
        gen = torch.Generator().manual_seed(0)
        self._x = torch.randn(timing.batch_size, *space.default_input_shape(), generator=gen)
        with torch.inference_mode():
            for _ in range(max(timing.warmup, 1)):
                self._ref(self._x)
            self.reference_ms = timing.reference_ms or 1e3 * float(
                np.median([self._time(self._ref) for _ in range(max(30, 3 * timing.runs))])
            )

    def _time(self, model: torch.nn.Module) -> float:
        start = time.perf_counter()
        model(self._x)
        return time.perf_counter() - start

    def ratio(self, arch: Arch) -> float:
        """Median over ``runs`` pairs of ``t_arch / t_ref``."""
        model = self.space.build(arch, None).eval()
        with torch.inference_mode():
            for _ in range(self.timing.warmup):
                self._ref(self._x)
                model(self._x)
            ratios = []
            for _ in range(self.timing.runs):
                t_ref = self._time(self._ref)
                ratios.append(self._time(model) / t_ref)
        return float(np.median(ratios))

    def __call__(self, arch: Arch) -> float:
        """Latency of ``arch`` in ms (the reference's scale)."""
        return self.ratio(arch) * self.reference_ms


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
        timing = replace(timing, reference_ms=scales.pop())
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
) -> list[dict[str, Any]]:
    """Really train each arch (``space.train_eval`` on ``task``) into the JSONL file ``path`` (resumable).

    A row holds ``TRAIN_METRICS`` (accuracies in %), ``train_s`` and the requested ``params_M`` /
    ``flops_M`` (``space.cost``: the network ``build(arch, None)``, not the one trained on ``task``),
    like ``measure_costs``: appended and fsynced per arch as it finishes, archs already in the file
    are not trained again, and a file written under another ``context`` (budget, training seed,
    task, ...) is refused. The trainings run on ``executor`` (default: here, one after another);
    every arch trains with ``seed``. Returns the rows of ``archs``.
    """
    from nag.training import TrainBudget

    metrics = list(metrics)
    cost_metrics = [m for m in metrics if m not in TRAIN_METRICS]
    if "latency_ms" in cost_metrics or not set(cost_metrics) <= set(COST_METRICS):
        raise ConfigError(
            f"trained rows can hold {list(TRAIN_METRICS)} and {sorted(set(COST_METRICS) - {'latency_ms'})}; got {metrics}. "
            f"Measure latency_ms in its own file (nag.costs.measure_costs, fit_cost_predictor source=measure)"
        )
    budget = TrainBudget.from_any(budget)
    ctx = {**dict(context or {}), "budget": budget.to_dict(), "train_seed": int(seed)}
    path = Path(path)
    done = _read_rows(path, ctx, metrics)
    executor = executor if executor is not None else LocalExecutor()

    def jobs(todo: list[tuple[str, Arch]]) -> list[Job]:
        shared_space, shared_task = executor.share(space), executor.share(task)
        return [Job(name, _trained_row, (shared_space, arch, shared_task, budget, seed, cost_metrics)) for name, arch in todo]

    return _fill_rows(space, archs, path, done, ctx, jobs, executor, "training", progress)


def _trained_row(space: SearchSpace, arch: Arch, task: Any, budget: Any, seed: int, cost_metrics: Sequence[str]) -> dict[str, Any]:
    """The measured part of a ``measure_accuracies`` row (runs where the executor puts it)."""
    from nag.training import train_eval

    out = train_eval(space, arch, task, budget, seed)
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
    store = RowStore(path, "arch")

    def row_of(job: Job, measured: dict[str, Any]) -> dict[str, Any]:
        row = done[job.key] = {"arch": job.key, **measured, "context": dict(ctx)}
        return row

    fill_rows(store, jobs(todo) if todo else [], executor, row_of, desc=desc, progress=progress and bool(todo))
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
        raise MissingDataError(f"no costs file at {path}; write one with nag.costs.measure_costs or experiment=fit_cost_predictor")
    rows = read_jsonl(path)
    missing = sorted({m for row in rows for m in metrics if m not in row})
    if missing:
        raise ConfigError(f"{path}: some rows have no {missing}; its rows hold {sorted(rows[0]) if rows else []}")
    archs = [space.parse(row["arch"]) for row in rows]
    return archs, {m: np.array([row[m] for row in rows], dtype=np.float64) for m in metrics}


# ----- tables ---------------------------------------------------------------------------------
def table_arch_fn(space: SearchSpace, reader: Mapping[str, Any] | None) -> Callable[[dict[str, str]], Any] | None:
    """``BenchmarkTable.from_csv``'s ``arch_fn`` from a config: ``{method, columns[, where]}``.

    The arch of a row is ``getattr(space, method)(*(row[c] for c in columns))``, e.g.
    ``{method: from_ofa, columns: [depths, kernel_sizes, expand_ratios]}`` for OFA / HELP tables;
    ``where: {column: value}`` keeps only matching rows. None = the table's ``arch`` column.
    """
    if reader is None:
        return None
    reader = dict(reader)
    unknown = sorted(set(reader) - {"method", "columns", "where"})
    method = getattr(space, str(reader.get("method")), None)
    columns = list(reader.get("columns") or [])
    if unknown or not callable(method) or not columns:
        raise ConfigError(
            f"table arch reader {reader} needs 'method' (a method of space {space.name!r}) and 'columns' "
            f"(the row cells it takes), optionally 'where' {{column: value}}; e.g. "
            f"{{method: from_ofa, columns: [depths, kernel_sizes, expand_ratios]}}"
        )
    where = {str(k): str(v) for k, v in dict(reader.get("where") or {}).items()}

    def arch_fn(row: dict[str, str]) -> Any:
        if any(row.get(k) != v for k, v in where.items()):
            return None
        try:
            cells = [row[c] for c in columns]
        except KeyError as exc:
            raise ConfigError(f"the table has no column {exc.args[0]!r}; its columns are {sorted(row)}") from None
        return method(*cells)

    return arch_fn


def read_table_costs(
    path: str | Path, space: SearchSpace, metrics: Sequence[str], reader: Mapping[str, Any] | None = None
) -> tuple[list[Arch], dict[str, np.ndarray]]:
    """Archs and ``{metric: values}`` of a benchmark CSV (``reader``: see ``table_arch_fn``)."""
    from nag.benchmarks.table import BenchmarkTable

    table = BenchmarkTable.from_csv(Path(path).expanduser(), space, arch_fn=table_arch_fn(space, reader))
    return list(table.archs), {m: np.asarray(table.values(m), dtype=np.float64) for m in metrics}


# ----- predictors -----------------------------------------------------------------------------
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
    from nag.modules.predictor import fit_predictor

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
    from nag.modules.predictor import Predictor

    return Predictor.load(resolve_predictor_path(value), space)


def cost_predictor_info(value: str | Path) -> dict[str, Any]:
    """The ``info`` saved with a predictor ({} when there is none)."""
    ckpt = torch.load(resolve_predictor_path(value), map_location="cpu", weights_only=True)
    return dict(ckpt.get("info") or {})


def timing_like(timing: Timing, infos: Sequence[Mapping[str, Any]]) -> Timing:
    """``timing`` with the unset ``reference`` / ``reference_ms`` taken from predictors' records, so
    that new latencies are on their training data's scale. Predictors that disagree are a ConfigError."""
    found: dict[str, set] = {"reference": set(), "reference_ms": set()}
    for info in infos:
        ctx = info.get("measure_context") or {}
        if ctx.get("reference") is not None:
            found["reference"].add(ctx["reference"])
        if info.get("reference_ms") is not None:
            found["reference_ms"].add(float(info["reference_ms"]))
    updates = {}
    for key, values in found.items():
        if getattr(timing, key) is None and values:
            if len(values) > 1:
                raise ConfigError(f"the guides' predictors were measured with different {key}s {sorted(values)}; set timing.{key}")
            updates[key] = values.pop()
    return replace(timing, **updates)


__all__ = [
    "COST_METRICS",
    "PREDICTOR_ASSETS",
    "LatencyMeter",
    "Timing",
    "check_metrics",
    "cost_predictor_info",
    "default_predictor_path",
    "fit_cost_predictor",
    "load_cost_predictor",
    "measure_arch",
    "TRAIN_METRICS",
    "measure_accuracies",
    "measure_context",
    "measure_costs",
    "read_costs",
    "read_table_costs",
    "regression_scores",
    "resolve_predictor_path",
    "save_cost_predictor",
    "split_rows",
    "table_arch_fn",
    "timing_like",
]
