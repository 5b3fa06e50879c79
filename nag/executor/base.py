"""The executor protocol: run independent jobs (callables) and hand back each result as it finishes.

An evaluation of an architecture is a ``Job``: a key, a callable and its arguments. ``run(jobs)``
yields ``(job, result)`` in the order the jobs *finish*; callers that need an order put the
results back in theirs by key. Arguments that many jobs share (a dataset, a search space) go
through ``share(obj)`` once, so that a distributed executor ships them once, not per job.

Executors sit in nag's lowest layer, beside the registry and io: they run callables and know
nothing of spaces, training or experiments. They register in ``EXECUTORS`` (entry-point group
``nag.executors``); ``experiments/executor/<name>.yaml`` configures one for a run.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from nag.errors import ConfigError
from nag.io import RowStore
from nag.registry import Registry


@dataclass(frozen=True)
class Job:
    """One evaluation: ``fn(*args, **kwargs)``, known by ``key`` (unique within a run).

    ``fn`` must be importable by name in a worker (a module-level function) or picklable;
    ``args`` / ``kwargs`` values may be handles returned by ``Executor.share``.
    """

    key: Hashable
    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


class Executor(ABC):
    """Runs jobs, in this process or elsewhere. Use it as a context manager: ``close`` releases
    whatever it started (and only that)."""

    name: ClassVar[str] = "executor"

    @property
    def slots(self) -> int:
        """How many jobs run at once at most: a caller that can propose several evaluations
        at a time (random search) proposes this many."""
        return 1

    def share(self, obj: Any) -> Any:
        """A handle to pass ``obj`` to many jobs (as a top-level argument); here, ``obj`` itself."""
        return obj

    @abstractmethod
    def run(self, jobs: Iterable[Job]) -> Iterator[tuple[Job, Any]]:
        """Run every job; yield ``(job, result)`` as each finishes. An exception raised by a job
        stops the run and is raised here (results already yielded stay with the caller)."""

    def close(self) -> None:
        """Release what this executor started."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


EXECUTORS: Registry[Executor] = Registry("executor", group="nag.executors")
EXECUTORS.register_lazy("local", "nag.executor.local:LocalExecutor")
EXECUTORS.register_lazy("ray", "nag.executor.ray:RayExecutor")


def build_executor(config: Mapping[str, Any] | Any | None = None) -> Executor:
    """The executor of a config node ``{name: <registered name>, **settings}`` (an experiment's
    ``executor`` group); None means ``local``. A setting the executor does not take is a ConfigError."""
    if config is None:
        return EXECUTORS.build("local")
    if hasattr(config, "items") and not isinstance(config, dict):  # a DictConfig
        from omegaconf import OmegaConf

        config = OmegaConf.to_container(config, resolve=True)
    if not isinstance(config, Mapping) or not config.get("name"):
        raise ConfigError(f"an executor config needs a name (executor=local or executor=ray); got {config!r}")
    settings = {k: v for k, v in config.items() if k != "name"}
    return EXECUTORS.build(str(config["name"]), **settings)


def list_executors(pattern: str = "*") -> list[str]:
    return EXECUTORS.names(pattern)


def fill_rows(
    store: RowStore,
    jobs: Sequence[Job],
    executor: Executor,
    row_of: Callable[[Job, Any], Mapping[str, Any]],
    desc: str = "evaluating",
    progress: bool = True,
    on_row: Callable[[Mapping[str, Any]], None] | None = None,
    total: int | None = None,
) -> int:
    """Run the jobs whose key has no row in ``store`` yet and append ``row_of(job, result)`` as
    each finishes (one fsynced line, written once). Returns how many rows were written.

    A run killed at any point loses only the evaluations in flight; rerun it and the finished
    ones are neither repeated nor doubled. ``row_of`` must give a row whose ``store.key_of``
    is the job's key. ``total``: the progress bar's length when ``jobs`` leaves out work done before.
    """
    from tqdm.auto import tqdm

    todo = list({job.key: job for job in jobs if job.key not in store}.values())
    total = len(jobs) if total is None else total
    written = 0
    with tqdm(total=total, initial=total - len(todo), desc=desc, unit="eval", disable=not progress or None) as bar:
        for job, result in executor.run(todo):
            row = dict(row_of(job, result))
            if store.key_of(row) != job.key:
                raise ConfigError(f"row_of gave a row with key {store.key_of(row)!r} for the job {job.key!r}")
            written += store.append(row)
            if on_row is not None:
                on_row(row)
            bar.update()
    return written
