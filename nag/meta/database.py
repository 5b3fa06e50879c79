"""A meta-training database: rows of (task, arch, accuracy) gathered by really training archs.

Storage is one JSON-lines file, a :class:`nag.io.RowStore` keyed by (``task``, ``arch``,
``seed``): each row is appended once with a single fsynced write as its training finishes, so a
killed builder loses only the runs in training, and a rerun resumes from the rows that are there
without doubling one.

Row keys: ``task`` (task id), ``source`` (source task name), ``classes`` (original class ids),
``arch`` (``space.format`` string), ``val_acc``, ``test_acc`` (percent), ``wall_s``, ``seed``,
``space`` (space name), ``built_with`` (``{"space": the space's build options such as C and N,
"train": the training budget}``: rows of one file must agree on it). Rows of recipe tasks (``nag.data.recipes.TaskSpec``) also carry
``recipe`` (the JSON recipe), ``family`` and ``held_out`` (true: an evaluation task, never to
be trained on). Tasks are rebuilt from their recipe, so the file stays small.
"""
from __future__ import annotations

from pathlib import Path

from nag.data.recipes import TaskSpec
from nag.errors import ConfigError, MissingDataError
from nag.io import RowStore
from nag.schema import describe_difference

ASSETS = Path(__file__).resolve().parents[1] / "assets"  # what nag ships: priors, predictors, meta-databases

MetaRow = dict  # one JSON row, keys documented in the module docstring


class MetaDatabase:
    """Read/append access to a meta-database file."""

    KEY = ("task", "arch", "seed")

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.store = RowStore(self.path, self.KEY)

    def rows(self, missing_ok: bool = True, held_out: bool | None = None) -> list[MetaRow]:
        """Every row; ``held_out=False``: only rows a meta-predictor may train on, ``True``: only
        evaluation rows (rows without the key are training rows)."""
        if not self.path.exists() and not missing_ok:
            raise MissingDataError(
                f"meta-database {self.path} does not exist. Build one with "
                f"`python -m nag.run experiment=build_meta_db`, or point meta_db.path at a file "
                f"(JSON lines with keys task, source, classes, arch, val_acc, test_acc)."
            )
        rows = self.store.rows()
        if held_out is None:
            return rows
        return [r for r in rows if bool(r.get("held_out", False)) == held_out]

    def append(self, row: MetaRow) -> bool:
        """Append ``row`` unless its (task, arch, seed) is in the file; True when it was written."""
        return self.store.append(row)

    def done(self) -> set[tuple[str, str]]:
        """(task id, arch) pairs already in the file (any training seed)."""
        return {(task, arch) for task, arch, _ in self.store.keys()}

    def done_runs(self) -> set[tuple[str, str, int]]:
        """(task id, arch, training seed) triples already in the file."""
        return set(self.store.keys())

    def built_with(self) -> list[dict]:
        """The distinct ``built_with`` settings of the file's rows, in first-seen order (older rows
        without the key say nothing and are left out)."""
        return distinct_built_with(self.rows())

    def check_built_with(self, settings: dict) -> None:
        """Raise ConfigError when the file holds rows built with other ``settings`` (a macro network
        or training budget that differs): appending would mix two databases, and resuming would
        count their runs as done."""
        for other in self.built_with():
            if other != settings:
                raise ConfigError(
                    f"meta-database {self.path} holds rows built with {describe_difference(other, settings)}; "
                    f"this run asks for the other value(s). Point meta_db.path at a new file, or build "
                    f"with the file's settings"
                )

    def task_specs(self) -> list[TaskSpec]:
        """The distinct tasks of the file, in first-seen order (held-out ones included)."""
        seen: dict[str, TaskSpec] = {}
        for r in self.rows():
            if r["task"] not in seen:
                seen[r["task"]] = TaskSpec.from_dict(r["recipe"]) if "recipe" in r else TaskSpec(r["source"], tuple(r["classes"]))
        return list(seen.values())

    def __len__(self) -> int:
        return len(self.rows())


def distinct_built_with(rows: list[MetaRow]) -> list[dict]:
    """The distinct ``built_with`` values of ``rows`` (rows without one are left out)."""
    out: list[dict] = []
    for r in rows:
        b = r.get("built_with")
        if b is not None and b not in out:
            out.append(b)
    return out
