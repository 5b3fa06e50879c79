"""A meta-training database: rows of (task, arch, accuracy) gathered by really training archs.

Storage is one JSON-lines file. Each row is appended with a single fsynced write
(:func:`nag.io.append_jsonl`), so a killed builder loses at most the row it was training,
and a rerun resumes from the rows that are there.

Row keys: ``task`` (task id), ``source`` (source task name), ``classes`` (original class ids),
``arch`` (``space.format`` string), ``val_acc``, ``test_acc`` (percent), ``wall_s``, ``seed``,
``space`` (space name). Tasks are rebuilt from (source, classes), so the file stays small.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from nag.errors import ConfigError, MissingDataError
from nag.io import append_jsonl, read_jsonl

ASSETS = Path(__file__).resolve().parents[1] / "assets"  # what nag ships: priors, predictors, meta-databases


@dataclass(frozen=True)
class TaskSpec:
    """A class-subset task of a source task."""

    source: str
    classes: tuple[int, ...]

    @property
    def id(self) -> str:
        return f"{self.source}[{','.join(map(str, self.classes))}]"

    def build(self, **source_kwargs: Any):
        from nag.data import get_task

        return get_task(self.source, classes=list(self.classes), **source_kwargs)


MetaRow = dict  # one JSON row, keys documented in the module docstring


def meta_task_specs(
    source: str,
    num_source_classes: int,
    n_tasks: int,
    classes_per_task: int,
    seed: int = 0,
    exclude: Iterable[Sequence[int]] = (),
) -> list[TaskSpec]:
    """``n_tasks`` distinct class subsets of ``source`` (sorted class ids), none in ``exclude``."""
    excluded = {tuple(sorted(int(c) for c in ex)) for ex in exclude}
    pool = [c for c in combinations(range(num_source_classes), classes_per_task) if c not in excluded]
    if n_tasks > len(pool):
        raise ConfigError(
            f"asked for {n_tasks} meta-training tasks of {classes_per_task} classes from {source!r}, "
            f"but only {len(pool)} distinct subsets exist (after exclusions); lower meta_db.n_tasks"
        )
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(pool), size=n_tasks, replace=False)
    return [TaskSpec(source, tuple(pool[i])) for i in picks]


class MetaDatabase:
    """Read/append access to a meta-database file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def rows(self, missing_ok: bool = True) -> list[MetaRow]:
        if not self.path.exists() and not missing_ok:
            raise MissingDataError(
                f"meta-database {self.path} does not exist. Build one with "
                f"`python -m nag.run experiment=build_meta_db`, or point meta_db.path at a file "
                f"(JSON lines with keys task, source, classes, arch, val_acc, test_acc)."
            )
        return read_jsonl(self.path, missing_ok=True)

    def append(self, row: MetaRow) -> None:
        append_jsonl(self.path, row)

    def done(self) -> set[tuple[str, str]]:
        """(task id, arch) pairs already in the file."""
        return {(r["task"], r["arch"]) for r in self.rows()}

    def task_specs(self) -> list[TaskSpec]:
        """The distinct tasks of the file, in first-seen order."""
        seen: dict[str, TaskSpec] = {}
        for r in self.rows():
            seen.setdefault(r["task"], TaskSpec(r["source"], tuple(r["classes"])))
        return list(seen.values())

    def __len__(self) -> int:
        return len(self.rows())
