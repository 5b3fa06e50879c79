"""``executor=local``: every job in this process, one after another (nag's default)."""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from nag.executor.base import Executor, Job


class LocalExecutor(Executor):
    """Runs each job in the calling process, in order; a job's exception propagates at once."""

    name = "local"

    def run(self, jobs: Iterable[Job]) -> Iterator[tuple[Job, Any]]:
        for job in jobs:
            yield job, job.fn(*job.args, **job.kwargs)

