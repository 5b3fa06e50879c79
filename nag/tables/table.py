"""Tabular benchmarks: one row per architecture, numeric metric columns, O(1) lookups.

The table is the user's file (its path comes from the config key ``benchmark.path``); nag
ships none. The CSV format is documented in docs/benchmark_tables.md.
"""
from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from nag.errors import ArchNotInTableError, ConfigError, InvalidArchError, MissingDataError, UnknownNameError
from nag.schema import Settings
from nag.spaces.base import Arch, SearchSpace, coerce_arch

DOC = "docs/benchmark_tables.md"
ArchFn = Callable[[dict[str, str]], "Arch | str | None"]


def _mean_rows(values: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        return np.nanmean(values, axis=0)


# how rows that describe the same arch are merged: policy -> (rows [k, M] -> row [M])
DUPLICATE_POLICIES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "first": lambda values: values[0],
    "mean": _mean_rows,
}


class BenchmarkConfig(Settings):
    """The ``benchmark:`` config block (group ``benchmark/``): which table, which column.

    ``arch``: how a row names its arch when the table has no ``arch`` column (see
    ``nag.tables.readers.table_arch_fn``, e.g. ``{method: from_ofa, columns: [...]}``).
    """

    settings_name: ClassVar[str] = "benchmark"

    path: str | None = None
    metric: str | None = None
    arch: dict[str, Any] | None = None


def load_benchmark(benchmark: BenchmarkConfig | Mapping[str, Any] | None, space: SearchSpace) -> "BenchmarkTable":
    """The table at ``benchmark.path`` (read with ``benchmark.arch``); MissingDataError naming the
    key when the path is unset or absent."""
    from nag.tables.readers import table_arch_fn

    benchmark = BenchmarkConfig.from_any(benchmark)
    if not benchmark.path:
        raise MissingDataError(
            "this run reads a benchmark table, but benchmark.path is not set; pass benchmark.path=/data/nb201/nb201.csv "
            "(a CSV with an 'arch' column and numeric metric columns, docs/benchmark_tables.md)"
        )
    arch_fn = table_arch_fn(space, benchmark.arch) if benchmark.arch else None
    return BenchmarkTable.from_csv(Path(benchmark.path).expanduser(), space, arch_fn=arch_fn)


class BenchmarkTable:
    """Metrics of the archs of one search space, e.g. NB201's accuracies, params and latencies.

    Args:
        space: the search space the archs belong to.
        archs: archs in table order (values of ``space``; unique).
        columns: metric name -> values [len(archs)], aligned with ``archs`` (NaN = missing).
        source: where the table came from, for messages.
    """

    def __init__(
        self, space: SearchSpace, archs: Sequence[Arch], columns: Mapping[str, Sequence[float]], source: str = "<memory>"
    ) -> None:
        self.space = space
        self.source = source
        self._archs = list(archs)
        self._index: dict[Hashable, int] = {}
        for i, arch in enumerate(self._archs):
            if self._index.setdefault(arch, i) != i:
                raise ConfigError(
                    f"benchmark table {source}: arch {space.format(arch)!r} appears in rows {self._index[arch]} and {i}; "
                    f"each arch may appear once"
                )
        self._columns: dict[str, np.ndarray] = {}
        for name, values in columns.items():
            array = np.asarray(values, dtype=np.float64)
            if array.shape != (len(self._archs),):
                raise ConfigError(
                    f"benchmark table {source}: metric {name!r} has shape {array.shape}, expected ({len(self._archs)},)"
                )
            array.setflags(write=False)
            self._columns[name] = array
        self._sorted: dict[str, np.ndarray] = {}  # metric -> finite values, ascending (built on demand)

    # ----- loading ---------------------------------------------------------------------
    @classmethod
    def from_csv(
        cls,
        path: str | os.PathLike,
        space: SearchSpace,
        arch_column: str = "arch",
        arch_fn: ArchFn | None = None,
        on_duplicate: str = "error",
    ) -> "BenchmarkTable":
        """Read a CSV with a header row.

        Each row's arch is ``space.parse(row[arch_column])``, or ``arch_fn(row)`` (an arch value or
        string; None skips the row) for tables that describe archs in several columns. Every
        other column whose non-empty cells all parse as numbers becomes a metric (empty = NaN).
        Rows describing the same arch raise ConfigError, unless ``on_duplicate`` is "first" (keep
        the first row) or "mean" (average the rows).
        """
        path = Path(path).expanduser()
        if on_duplicate != "error" and on_duplicate not in DUPLICATE_POLICIES:
            raise ConfigError(
                f"on_duplicate={on_duplicate!r} is not a duplicate policy; accepted: error, {', '.join(DUPLICATE_POLICIES)}"
            )
        if not path.is_file():
            described = f"a column {arch_column!r} of {space.name} arch strings" if arch_fn is None else (
                "the columns your arch_fn reads"
            )
            raise MissingDataError(
                f"benchmark table not found at {str(path)!r} (config key benchmark.path; e.g. "
                f"benchmark.path=/data/nb201/nb201.csv). Expected a CSV file with a header row: {described} "
                f"plus numeric metric columns (for NB201: arch, cifar10_test_acc, cifar100_test_acc, "
                f"params_M_cifar10, flops_M_cifar10, latency_ms_*). See {DOC}."
            )
        with path.open(newline="") as f:
            reader = csv.reader(f)
            header = next(reader, [])
            lines = list(reader)
        if arch_fn is None and arch_column not in header:
            raise ConfigError(
                f"benchmark table {path}: no {arch_column!r} column; its columns are {header}. Name the arch "
                f"column with arch_column=..., or pass arch_fn(row) -> arch. See {DOC}."
            )
        lines = [line for line in lines if any(cell.strip() for cell in line)]  # blank lines
        if not lines:
            raise ConfigError(f"benchmark table {path} has a header but no rows. See {DOC}.")
        for number, line in enumerate(lines, start=2):
            if len(line) > len(header):
                raise ConfigError(f"benchmark table {path}, line {number}: {len(line)} cells but {len(header)} columns")
        rows = [dict(zip(header, line + [""] * (len(header) - len(line)))) for line in lines]

        archs, kept = _read_archs(rows, space, path, arch_column, arch_fn)
        metrics: dict[str, np.ndarray] = {}
        for name in header:
            if name != arch_column:
                column = _numeric_column([row[name] for row in kept])
                if column is not None:
                    metrics[name] = column
        values = np.stack(list(metrics.values()), axis=1) if metrics else np.zeros((len(kept), 0))
        archs, values = _merge_duplicates(archs, values, on_duplicate, space, path)
        return cls(space, archs, {name: values[:, j] for j, name in enumerate(metrics)}, source=str(path))

    # ----- lookups ---------------------------------------------------------------------
    @property
    def metrics(self) -> list[str]:
        """Names of the numeric columns, in file order."""
        return list(self._columns)

    @property
    def archs(self) -> list[Arch]:
        """Archs in table order (a shared list: do not modify)."""
        return self._archs

    def __len__(self) -> int:
        return len(self._archs)

    def __contains__(self, arch: object) -> bool:
        try:
            self.index(arch)
        except (ArchNotInTableError, InvalidArchError, TypeError):
            return False
        return True

    def index(self, arch: Arch | str) -> int:
        """Row of ``arch`` (a value or its string form). Raises ArchNotInTableError if absent."""
        try:
            return self._index[arch]
        except (KeyError, TypeError):
            pass
        value = coerce_arch(self.space, arch)  # raises InvalidArchError for a foreign arch / bad string
        if value in self._index:
            return self._index[value]
        raise ArchNotInTableError(
            f"arch {self.space.format(value)!r} is a valid {self.space.name} arch but is not in the benchmark "
            f"table {self.source} ({len(self)} archs); evaluate it for real (evaluator=train_eval) or use a "
            f"table that covers it"
        )

    def values(self, metric: str) -> np.ndarray:
        """All values of ``metric``, aligned with ``archs``. [len(self)], read-only."""
        try:
            return self._columns[metric]
        except KeyError:
            raise UnknownNameError(
                f"unknown metric {metric!r} in benchmark table {self.source}. Known metrics: {', '.join(self.metrics)}"
            ) from None

    def query(self, arch: Arch | str, metric: str) -> float:
        """Value of ``metric`` for ``arch`` (a value or its string form)."""
        column = self.values(metric)
        return float(column[self.index(arch)])

    def row(self, arch: Arch | str) -> dict[str, float]:
        """Every metric of ``arch``."""
        i = self.index(arch)
        return {name: float(column[i]) for name, column in self._columns.items()}

    # ----- ranks -------------------------------------------------------------------------
    def _ascending(self, metric: str) -> np.ndarray:
        if metric not in self._sorted:
            column = self.values(metric)
            self._sorted[metric] = np.sort(column[np.isfinite(column)])
        return self._sorted[metric]

    def check_metric(self, metric: str | None, key: str = "benchmark.metric") -> str:
        """``metric`` if the table has that column; otherwise a ConfigError naming ``key`` and the columns."""
        if metric not in self.metrics:
            raise ConfigError(f"{key}={metric!r} is not a column of {self.source}; its metrics are {self.metrics}")
        return str(metric)

    def split(self, n_labeled: int, n_heldout: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Row indices of ``n_labeled`` labeled archs and of up to ``n_heldout`` other archs (seeded)."""
        if n_labeled >= len(self):
            raise ConfigError(f"n_labeled={n_labeled} must be smaller than the table's {len(self)} archs")
        order = np.random.default_rng(seed).permutation(len(self))
        return order[:n_labeled], order[n_labeled : n_labeled + n_heldout]

    def quantile_threshold(self, metric: str, top_frac: float, higher_is_better: bool = True) -> float:
        """The value at/above which (below which, if not ``higher_is_better``) the best ``top_frac`` lie.

        With n finite values and k = ceil(top_frac * n), it is the k-th best value, so at least k
        archs reach it. Missing (NaN) values are ignored.
        """
        if not 0 < top_frac <= 1:
            raise ConfigError(f"top_frac must be in (0, 1], got {top_frac!r} (e.g. 0.05 for the top 5%)")
        ascending = self._ascending(metric)
        if len(ascending) == 0:
            raise ConfigError(f"metric {metric!r} of benchmark table {self.source} has no finite values")
        k = max(1, math.ceil(top_frac * len(ascending) - 1e-9))
        return float(ascending[-k] if higher_is_better else ascending[k - 1])

    def rank_fraction(self, arch: Arch | str, metric: str, higher_is_better: bool = True) -> float:
        """(1 + number of archs strictly better than ``arch``) / n, in (0, 1]; the best arch gets 1/n.

        ``query(arch, metric)`` reaches ``quantile_threshold(metric, f)`` iff rank_fraction <= ceil(f n) / n.
        """
        value = self.query(arch, metric)
        ascending = self._ascending(metric)
        if not math.isfinite(value):
            raise ConfigError(f"arch {arch!r} has no finite {metric!r} in benchmark table {self.source}")
        if higher_is_better:
            better = len(ascending) - int(np.searchsorted(ascending, value, side="right"))
        else:
            better = int(np.searchsorted(ascending, value, side="left"))
        return (better + 1) / len(ascending)

    def __repr__(self) -> str:
        return f"BenchmarkTable(space={self.space.name!r}, archs={len(self)}, metrics={self.metrics}, source={self.source!r})"


# ----- helpers ---------------------------------------------------------------------------
def _numeric_column(cells: list[str]) -> np.ndarray | None:
    """The cells as floats (empty -> NaN), or None when a cell is not a number or every cell is empty."""
    if not any(cell.strip() for cell in cells):
        return None
    try:
        return np.array([cell if cell.strip() else "nan" for cell in cells], dtype=np.float64)
    except ValueError:
        return None


def _read_archs(
    rows: list[dict[str, str]], space: SearchSpace, path: Path, arch_column: str, arch_fn: ArchFn | None
) -> tuple[list[Arch], list[dict[str, str]]]:
    """Archs of the rows (row order) and the rows kept (arch_fn may skip rows by returning None)."""
    archs: list[Arch] = []
    kept: list[dict[str, str]] = []
    parsed: dict[str, Arch] = {}
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        try:
            if arch_fn is None:
                text = row.get(arch_column) or ""
                arch = parsed.get(text)
                if arch is None:
                    arch = parsed[text] = space.parse(text)
            else:
                value = arch_fn(row)
                if value is None:
                    continue
                arch = coerce_arch(space, value)
        except InvalidArchError as exc:
            raise InvalidArchError(f"benchmark table {path}, line {line}: {exc}") from exc
        archs.append(arch)
        kept.append(row)
    if not archs:
        raise ConfigError(f"benchmark table {path}: arch_fn skipped every row; no archs left. See {DOC}.")
    return archs, kept


def _merge_duplicates(
    archs: list[Arch], values: np.ndarray, policy: str, space: SearchSpace, path: Path
) -> tuple[list[Arch], np.ndarray]:
    rows_of: dict[Hashable, list[int]] = {}
    for i, arch in enumerate(archs):
        rows_of.setdefault(arch, []).append(i)
    if len(rows_of) == len(archs):
        return archs, values
    if policy == "error":
        arch, rows = next((a, r) for a, r in rows_of.items() if len(r) > 1)
        raise ConfigError(
            f"benchmark table {path}: {len(archs) - len(rows_of)} row(s) repeat an arch, e.g. "
            f"{space.format(arch)!r} in data rows {rows}. Pass on_duplicate='first' or 'mean', or skip rows "
            f"in arch_fn by returning None. See {DOC}."
        )
    merge = DUPLICATE_POLICIES[policy]
    unique = list(rows_of)
    merged = np.stack([merge(values[rows_of[a]]) for a in unique]) if values.size else values[: len(unique)]
    return unique, merged.reshape(len(unique), values.shape[1])
