"""Results of related tasks, to warm-start a search or a guidance predictor on a new one.

A ``Source`` is the archs of one related task and their values, higher is better, as the
target's. ``load_sources`` reads them from a ``source`` config block:

* ``metrics``: other columns of the target's table (``benchmark.path``);
* ``paths``: other tables, each ``{path, metric}``;
* ``meta_db``: a meta-database (``nag.meta.database``), one source per task (``meta_metric``
  values, ``meta_tasks`` to pick tasks);
* ``max_rows``: at most this many rows of each source, drawn with the run's seed (null = all).

A source column that is not in its table, or that is the target itself, is a ConfigError naming
the table's columns.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar

import numpy as np
from pydantic import Field

from nag.errors import ConfigError
from nag.schema import Settings
from nag.spaces.base import Arch, SearchSpace


class SourcePath(Settings):
    """One entry of ``source.paths``: the column ``metric`` of the table at ``path``."""

    path: str
    metric: str


class SourceConfig(Settings):
    """The ``source:`` block of bo_nas and guided_generation (see the module docstring)."""

    settings_name: ClassVar[str] = "source"

    metrics: list[str] = []
    paths: list[SourcePath] = []
    meta_db: str | None = None
    meta_metric: str = "val_acc"
    meta_tasks: list[str] | None = None
    max_rows: Annotated[int, Field(ge=1)] | None = None


SOURCE_KEYS = tuple(SourceConfig.model_fields)


@dataclass(frozen=True)
class Source:
    """One related task: ``archs`` (of the target's space) and their ``values`` [n], higher is better."""

    name: str
    archs: tuple[Arch, ...]
    values: np.ndarray

    def __post_init__(self) -> None:
        if len(self.archs) != len(self.values):
            raise ConfigError(f"source {self.name!r}: {len(self.archs)} archs but {len(self.values)} values")
        if len(self.archs) == 0:
            raise ConfigError(f"source {self.name!r} has no rows")

    def __len__(self) -> int:
        return len(self.archs)

    def subsample(self, n: int, seed: int) -> Source:
        """``n`` of the rows drawn without replacement (seeded); all of them when ``n >= len``."""
        if n >= len(self):
            return self
        keep = np.sort(np.random.default_rng(seed).permutation(len(self))[:n])
        return Source(self.name, tuple(self.archs[i] for i in keep), self.values[keep])


def _finite_source(name: str, archs: Sequence[Arch], values: np.ndarray) -> Source:
    """A Source of the rows whose value is finite (a table may leave cells empty)."""
    values = np.asarray(values, dtype=float)
    ok = np.isfinite(values)
    return Source(name, tuple(a for a, keep in zip(archs, ok) if keep), values[ok])


def check_source_metric(table: Any, metric: str, target: str | None, what: str) -> str:
    """``metric`` if it is a column of ``table`` other than ``target``; else a ConfigError naming the columns."""
    columns = list(table.metrics)
    if metric not in columns:
        raise ConfigError(f"{what}: {metric!r} is not a column of {table.source}; its columns are {columns}")
    if target is not None and metric == target:
        others = [c for c in columns if c != target]
        raise ConfigError(f"{what}: {metric!r} is the target metric itself; a source must be another column: "
                          f"one of {others}")
    return metric


def table_sources(
    table: Any, metrics: Sequence[str], target: str | None = None, what: str = "source.metrics"
) -> list[Source]:
    """One Source per column ``metrics`` of ``table`` (a BenchmarkTable), none of them ``target``."""
    return [_finite_source(m, table.archs, table.values(check_source_metric(table, m, target, what))) for m in metrics]


def path_sources(entries: Sequence[Any], space: SearchSpace) -> list[Source]:
    """One Source per ``{path, metric}`` entry: the column ``metric`` of the table at ``path``."""
    from nag.tables.table import BenchmarkTable

    out = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or set(entry) != {"path", "metric"}:
            raise ConfigError(f"source.paths[{i}] must be {{path: <table.csv>, metric: <column>}}; got {entry!r}")
        table = BenchmarkTable.from_csv(Path(str(entry["path"])).expanduser(), space)
        (source,) = table_sources(table, [str(entry["metric"])], None, f"source.paths[{i}].metric")
        out.append(Source(f"{table.source}:{source.name}", source.archs, source.values))
    return out


def meta_db_sources(path: str | Path, space: SearchSpace, metric: str = "val_acc",
                    tasks: Sequence[str] | None = None) -> list[Source]:
    """One Source per task of the meta-database at ``path`` (rows of ``space`` only), valued by ``metric``."""
    from nag.meta.database import MetaDatabase

    rows = [r for r in MetaDatabase(Path(str(path)).expanduser()).rows(missing_ok=False)
            if r.get("space", space.name) == space.name]
    if not rows:
        raise ConfigError(f"source.meta_db {path} has no rows of space {space.name!r}")
    missing = sorted({k for r in rows for k in ("task", "arch", metric) if k not in r})
    if missing:
        keys = sorted({k for r in rows for k in r if isinstance(r[k], (int, float))})
        raise ConfigError(f"source.meta_db {path}: rows lack {missing}; source.meta_metric must be one of {keys}")
    by_task: dict[str, list[dict]] = {}
    for r in rows:
        by_task.setdefault(str(r["task"]), []).append(r)
    if tasks:
        unknown = sorted(set(tasks) - set(by_task))
        if unknown:
            raise ConfigError(f"source.meta_tasks {unknown} are not tasks of {path}; its tasks are {sorted(by_task)}")
        by_task = {t: by_task[t] for t in tasks}
    return [_finite_source(f"meta:{task}", [space.parse(r["arch"]) for r in rs], np.array([float(r[metric]) for r in rs]))
            for task, rs in by_task.items()]


def load_sources(
    config: Mapping[str, Any] | None,
    space: SearchSpace,
    table: Any = None,
    target: str | None = None,
    seed: int = 0,
) -> list[Source]:
    """The sources a ``source`` config block names (see the module docstring); [] when it names none.

    ``table`` and ``target``: the target's table and metric, for ``metrics`` (other columns).
    """
    cfg = {k: v for k, v in dict(config or {}).items() if v is not None}
    unknown = sorted(set(cfg) - set(SOURCE_KEYS))
    if unknown:
        raise ConfigError(f"unknown source option(s) {unknown}; accepted: {list(SOURCE_KEYS)}")
    sources: list[Source] = []
    metrics = list(cfg.get("metrics") or [])
    if metrics:
        if table is None:
            raise ConfigError("source.metrics names other columns of the target's table, but there is none; "
                              "set evaluator=table and benchmark.path, or use source.paths / source.meta_db")
        sources += table_sources(table, [str(m) for m in metrics], target)
    sources += path_sources(list(cfg.get("paths") or []), space)
    if cfg.get("meta_db"):
        sources += meta_db_sources(cfg["meta_db"], space, str(cfg.get("meta_metric", "val_acc")), cfg.get("meta_tasks"))
    max_rows = cfg.get("max_rows")
    if max_rows is not None:
        if int(max_rows) < 1:
            raise ConfigError(f"source.max_rows must be >= 1 or null (all rows), got {max_rows}")
        sources = [s.subsample(int(max_rows), seed + i) for i, s in enumerate(sources)]
    return sources


def source_target(source: Source) -> str:
    """A predictor's column for ``source`` (prefixed, so it never clashes with a table metric)."""
    return f"source:{source.name}"


def with_sources(
    archs: Sequence[Arch], y: Mapping[str, np.ndarray], sources: Sequence[Source]
) -> tuple[list[Arch], dict[str, np.ndarray]]:
    """The union of ``archs`` (with their columns ``y``, each [n]) and the sources' archs; one more
    column per source (``source_target``); each column NaN where its value is unknown (a
    multi-task predictor masks those)."""
    out_archs = list(archs)
    position = {a: i for i, a in enumerate(out_archs)}
    for src in sources:
        for a in src.archs:
            if a not in position:
                position[a] = len(out_archs)
                out_archs.append(a)
    n = len(out_archs)
    out = {k: np.concatenate([np.asarray(v, dtype=float), np.full(n - len(archs), np.nan)]) for k, v in y.items()}
    for src in sources:
        col = np.full(n, np.nan)
        col[[position[a] for a in src.archs]] = src.values
        out[source_target(src)] = col
    return out_archs, out


def n_source_rows(sources: Sequence[Source]) -> int:
    """How many source rows in all (``n_source`` in results)."""
    return sum(len(s) for s in sources)


__all__ = [
    "SOURCE_KEYS",
    "SourceConfig",
    "source_target",
    "with_sources",
    "Source",
    "check_source_metric",
    "load_sources",
    "meta_db_sources",
    "n_source_rows",
    "path_sources",
    "table_sources",
]
