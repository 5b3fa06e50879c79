"""Objective oracles for search: one interface, cached, budget = distinct archs queried.

``evaluate(arch)`` returns the objective (higher is better). Asking again for an arch already
evaluated returns the cached value and costs nothing: ``n_queries`` counts distinct archs only.
``history`` lists ``Query(arch, value, index)`` in the order archs were first evaluated,
``index`` being 1-based (the number of queries spent once that arch was evaluated).
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

from nag.errors import ConfigError, MissingDataError
from nag.evaluation.training import TrainBudget, train_eval
from nag.executor import Executor, Job, LocalExecutor
from nag.io import RowStore
from nag.registry import Registry
from nag.spaces.base import Arch, SearchSpace


class Query(NamedTuple):
    """One evaluated architecture."""

    arch: Arch
    value: float
    index: int  # 1-based query count when it was first evaluated


@runtime_checkable
class EvaluatorProtocol(Protocol):
    """What a search loop needs from an evaluator."""

    history: list[Query]

    @property
    def n_queries(self) -> int: ...

    def evaluate(self, arch: Arch) -> float: ...


class Evaluator(ABC):
    """Cached oracle. Subclasses implement ``_evaluate(arch) -> (value, info)``.

    ``info`` (JSON-able numbers, e.g. the test accuracy of a trained net) is kept in ``info[arch]``
    and saved with the search state.
    """

    def __init__(self) -> None:
        self.history: list[Query] = []
        self.info: dict[Arch, dict[str, float]] = {}
        self._values: dict[Arch, float] = {}
        self._best: Query | None = None

    @abstractmethod
    def _evaluate(self, arch: Arch) -> tuple[float, dict[str, float]]:
        """The objective of a new arch and any extra numbers worth keeping."""

    @property
    def n_queries(self) -> int:
        """Distinct archs evaluated so far."""
        return len(self.history)

    def evaluate(self, arch: Arch) -> float:
        """Objective of ``arch`` (higher is better); free when ``arch`` was evaluated before."""
        if arch in self._values:
            return self._values[arch]
        value, info = self._evaluate(arch)
        self.record(arch, float(value), info)
        return self._values[arch]

    def evaluate_many(self, archs: Sequence[Arch]) -> list[float]:
        """Objectives of ``archs``, in order. The new ones may be evaluated at once (in parallel,
        see ``_evaluate_many``) and are recorded in the order given, whatever order they finish in."""
        new = [a for a in dict.fromkeys(archs) if a not in self._values]
        if new:
            for arch, (value, info) in zip(new, self._evaluate_many(new)):
                self.record(arch, float(value), info)
        return [self._values[a] for a in archs]

    def _evaluate_many(self, archs: Sequence[Arch]) -> list[tuple[float, dict[str, float]]]:
        """``_evaluate`` of each new arch; evaluators that can run several at once override it."""
        return [self._evaluate(a) for a in archs]

    def record(self, arch: Arch, value: float, info: Mapping[str, float] | None = None) -> Query:
        """Add an already known result (used when resuming a search)."""
        if arch in self._values:
            raise ConfigError(f"arch {arch!r} is recorded twice; a search history holds each arch once")
        query = Query(arch, float(value), len(self.history) + 1)
        self._values[arch] = query.value
        self.history.append(query)
        if self._best is None or query.value > self._best.value:
            self._best = query
        if info:
            self.info[arch] = dict(info)
        return query

    def preload(self, queries: Iterable[tuple[Arch, float, Mapping[str, float] | None]]) -> None:
        """Record ``(arch, value, info)`` triples in order (a resumed search's history)."""
        for arch, value, info in queries:
            self.record(arch, value, info)

    def is_evaluated(self, arch: Arch) -> bool:
        return arch in self._values

    def best(self) -> Query:
        """The best query so far (the earliest one on ties)."""
        if self._best is None:
            raise ConfigError("no architecture has been evaluated yet")
        return self._best

    @classmethod
    def from_config(cls, space: SearchSpace, cfg: Any) -> "Evaluator":
        """Build from an experiment config (see experiments/experiment/bo_nas.yaml)."""
        raise NotImplementedError(f"{cls.__name__} cannot be built from a config")


EVALUATORS: Registry[Evaluator] = Registry("evaluator", group="nag.evaluators")


@EVALUATORS.register("table")
class TableEvaluator(Evaluator):
    """Look the objective up in a benchmark table (``table.query(arch, metric)``)."""

    def __init__(self, table: Any, metric: str) -> None:
        super().__init__()
        known = list(getattr(table, "metrics", []) or [])
        if known and metric not in known:
            raise ConfigError(
                f"benchmark metric {metric!r} is not a column of the table; known metrics: {', '.join(known)}"
            )
        self.table = table
        self.metric = metric

    def _evaluate(self, arch: Arch) -> tuple[float, dict[str, float]]:
        value = float(self.table.query(arch, self.metric))
        if not math.isfinite(value):
            raise ConfigError(f"the table has no {self.metric!r} value for arch {arch!r} (NaN); search on a complete column")
        return value, {}

    @classmethod
    def from_config(cls, space: SearchSpace, cfg: Any) -> "TableEvaluator":
        from nag.schema import plain
        from nag.tables.table import BenchmarkConfig, load_benchmark

        bench = BenchmarkConfig.from_any(plain(cfg.get("benchmark")))
        if not bench.path:  # like any other unset or absent data path: MissingDataError
            raise MissingDataError(
                "evaluator=table needs benchmark.path=<csv> (a table with an 'arch' column and metric "
                "columns such as cifar10_test_acc); or use evaluator=train_eval"
            )
        return cls(load_benchmark(bench, space), bench.metric or "cifar10_test_acc")


@EVALUATORS.register("train_eval")
class TrainEvalEvaluator(Evaluator):
    """Really train each arch on ``task`` (``nag.evaluation.train_eval``, seed ``seed`` for every
    arch); the objective is ``metric``. Every number train_eval returns (test accuracy, wall time,
    params) is kept in ``info[arch]``.

    The trainings run on ``executor`` (default: one after another in this process); the archs
    of one ``evaluate_many`` call are in flight together. With ``store`` (a ``RowStore`` keyed
    by ``arch``) each training is written as soon as it finishes and read back instead of
    retrained, so a search killed mid-round loses no finished training.
    """

    def __init__(
        self,
        space: SearchSpace,
        task: Any,
        budget: Any = None,
        seed: int = 0,
        metric: str = "val_acc",
        executor: Executor | None = None,
        store: RowStore | None = None,
        trainer: Any = None,
    ):
        super().__init__()
        self.space = space
        self.task = task
        self.budget = budget
        self.seed = seed
        self.metric = metric
        self.trainer = trainer  # nag.modules.trainer.TrainerSettings (the trainer/ group); None = its defaults
        self.executor = executor if executor is not None else LocalExecutor()
        self.store = store
        self._shared: tuple[Any, Any] | None = None  # (space, task) handles of the executor
        self._known: dict[str, dict[str, Any]] | None = None  # arch string -> row, from the store

    def _evaluate(self, arch: Arch) -> tuple[float, dict[str, float]]:
        return self._evaluate_many([arch])[0]

    def _evaluate_many(self, archs: Sequence[Arch]) -> list[tuple[float, dict[str, float]]]:
        if self._known is None:
            self._known = self.store.by_key() if self.store is not None else {}
        names = [self.space.format(a) for a in archs]
        todo = [(n, a) for n, a in zip(names, archs) if n not in self._known]
        jobs = []
        if todo:
            if self._shared is None:
                self._shared = (self.executor.share(self.space), self.executor.share(self.task))
            space, task = self._shared
            options = {} if self.trainer is None else {"trainer": self.trainer}
            jobs = [Job(n, train_eval, (space, a, task, self.budget, self.seed), options) for n, a in todo]
        for job, metrics in self.executor.run(jobs):
            if self.metric not in metrics:
                raise ConfigError(f"train_eval returned no {self.metric!r}; it returns: {', '.join(sorted(metrics))}")
            row = {"arch": job.key, **{k: v for k, v in metrics.items() if isinstance(v, (int, float))}}
            if self.store is not None:
                self.store.append(row)
            self._known[job.key] = row
        out = []
        for name in names:
            info = {k: math.nan if v is None else float(v) for k, v in self._known[name].items() if k != "arch"}
            if self.metric not in info:
                raise ConfigError(f"the stored evaluation of {name} has no {self.metric!r}; it has: {', '.join(sorted(info))}")
            out.append((info[self.metric], info))
        return out

    @classmethod
    def from_config(
        cls, space: SearchSpace, cfg: Any, executor: Executor | None = None, store: RowStore | None = None
    ) -> "TrainEvalEvaluator":
        from nag.data import get_task
        from nag.modules.trainer import TrainerSettings
        from nag.schema import plain

        task = dict(plain(cfg.get("task")) or {})
        if "name" not in task:
            raise ConfigError("evaluator=train_eval needs a task: task=<name> (e.g. task=digits)")
        return cls(space, get_task(**task), TrainBudget.from_any(plain(cfg.get("train"))), seed=int(cfg.get("seed", 0)),
                   trainer=TrainerSettings.from_any(plain(cfg.get("trainer"))), executor=executor, store=store)


def build_evaluator(name: str, space: SearchSpace, cfg: Any, **runtime: Any) -> Evaluator:
    """The evaluator registered as ``name``, built from an experiment config.

    ``runtime`` (``executor``, ``store``) goes to the evaluators whose ``from_config`` takes it.
    """
    import inspect

    from_config = EVALUATORS.get(name).from_config
    params = inspect.signature(from_config).parameters
    return from_config(space, cfg, **{k: v for k, v in runtime.items() if k in params and v is not None})


def list_evaluators(pattern: str = "*") -> list[str]:
    return EVALUATORS.names(pattern)
