"""Reading architectures and metric columns out of benchmark tables whose rows are not arch strings."""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nag.errors import ConfigError
from nag.spaces.base import Arch, SearchSpace
from nag.tables.table import BenchmarkTable


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
    table = BenchmarkTable.from_csv(Path(path).expanduser(), space, arch_fn=table_arch_fn(space, reader))
    return list(table.archs), {m: np.asarray(table.values(m), dtype=np.float64) for m in metrics}


__all__ = ["read_table_costs", "table_arch_fn"]
