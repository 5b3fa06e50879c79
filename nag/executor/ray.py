"""``executor=ray``: evaluations in parallel on Ray, on this machine or on a cluster.

- ``address: null`` starts a local Ray runtime with ``num_workers * num_cpus`` CPUs (and the
  GPUs Ray finds); closing the executor shuts it down. If this driver is killed (kill -9), Ray's
  own processes die with it, except two agents that would linger for about a minute; a small
  reaper process (Linux) ends those at once.
- ``address: auto`` (the cluster this machine belongs to), ``ray://host:port`` (Ray Client) or
  ``host:port`` joins a running cluster; closing disconnects and never stops the cluster. A
  runtime that is already initialised in this process (someone else's) is used as it is and
  left running.

Ray is started lazily, at the first job, so a resumed run with nothing left to do starts none.
Each job is a Ray task with ``num_cpus`` / ``num_gpus`` (fractions pack several tasks on one
GPU) and torch limited to ``floor(num_cpus)`` threads. At most ``num_workers`` jobs run at once.
On a local runtime, whose CPUs are exactly ``num_workers * num_cpus``, one more job per worker
waits queued in Ray, so that a worker starts its next job the moment it finishes one instead of
idling while the driver writes the row (Ray's CPU accounting still lets only ``num_workers``
run). On a joined cluster, with CPUs of its own, exactly ``num_workers`` are submitted. The
local runtime's workers import torch and Lightning as soon as it starts, while the driver
still prepares the jobs. A task whose worker dies (killed, out of memory, node lost) is retried up to
``max_retries`` times by Ray; an exception raised by the job itself is not retried and reaches
the caller as itself.
"""
from __future__ import annotations

import itertools
import logging
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from numbers import Integral, Real
from typing import Any

from nag.errors import ConfigError, EvaluationError
from nag.executor.base import Executor, Job

INSTALL_HINT = "pip install 'nag[ray]' (or pip install 'ray>=2.9')"


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(
            f"executor=ray needs Ray, which is not installed here ({exc}). Install it with {INSTALL_HINT}, "
            f"or run with executor=local"
        ) from None
    return ray


def _call(fn: Any, threads: int, *args: Any, **kwargs: Any) -> Any:
    """Runs in a Ray worker: torch on ``threads`` intra-op threads, then the job."""
    try:
        import torch
    except ImportError:  # pragma: no cover - a job that does not use torch
        pass
    else:
        torch.set_num_threads(threads)
    return fn(*args, **kwargs)


class RayExecutor(Executor):
    """Jobs as Ray tasks; see the module docstring.

    Args:
        num_workers: jobs in flight at most (a local runtime gets ``num_workers * num_cpus``
            CPUs); null: as many as the runtime's CPUs fit.
        address: null (start a local runtime), ``auto``, ``ray://host:port`` or ``host:port``.
        num_cpus: CPUs per job (its torch threads: ``floor(num_cpus)``, at least 1).
        num_gpus: GPUs per job; a fraction packs several jobs on one GPU (0.25: four).
        max_retries: tries after a worker dies mid-job, before the run stops with an EvaluationError.
    """

    name = "ray"

    def __init__(
        self,
        num_workers: int | None = 2,
        address: str | None = None,
        num_cpus: float = 1,
        num_gpus: float = 0,
        max_retries: int = 3,
    ) -> None:
        problems = []
        if num_workers is not None and (not _is_int(num_workers) or num_workers < 1):
            problems.append(f"num_workers must be an int >= 1 or null, got {num_workers!r}")
        if address is not None and (not isinstance(address, str) or not address.strip()):
            problems.append(f"address must be null, 'auto', 'ray://host:port' or 'host:port', got {address!r}")
        if not _is_number(num_cpus) or num_cpus <= 0:
            problems.append(f"num_cpus must be a number > 0, got {num_cpus!r}")
        if not _is_number(num_gpus) or num_gpus < 0:
            problems.append(f"num_gpus must be a number >= 0 (fractions allowed), got {num_gpus!r}")
        if not _is_int(max_retries) or max_retries < 0:
            problems.append(f"max_retries must be an int >= 0, got {max_retries!r}")
        if problems:
            raise ConfigError("executor=ray: " + "; ".join(problems))
        self.ray = _import_ray()
        self.num_workers = None if num_workers is None else int(num_workers)
        self.address = address
        self.num_cpus = float(num_cpus)
        self.num_gpus = float(num_gpus)
        self.max_retries = int(max_retries)
        self._ready = False
        self._owns_runtime = False  # we started a local runtime: shut it down on close
        self._joined = False  # we connected to a cluster: disconnect on close, never stop it
        self._task: Any = None
        self._preloading: list[Any] = []  # refs of the warm-up imports (kept so Ray does not drop them)
        self._reaper: _Reaper | None = None

    # ----- runtime ----------------------------------------------------------------------
    def _ensure_runtime(self) -> None:
        if self._ready:
            return
        ray = self.ray
        if ray.is_initialized():
            pass  # someone else's runtime: use it, leave it running
        elif self.address is None:
            reaper = _Reaper.start()
            cpus = None if self.num_workers is None else max(1, math.ceil(self.num_workers * self.num_cpus))
            try:
                ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False,
                         logging_level=logging.ERROR)
            except BaseException:
                reaper.stop()
                raise
            self._owns_runtime, self._reaper = True, reaper
            reaper.watch_new()
            self._preload()
        else:
            try:
                ray.init(address=self.address, log_to_driver=False, logging_level=logging.ERROR)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ConfigError(
                    f"executor=ray could not join the Ray cluster at address={self.address!r}: {exc}. Start one "
                    f"with `ray start --head`, check the address, or use executor.address=null for a local runtime"
                ) from None
            self._joined = True
        self._ready = True
        gpus = float(ray.cluster_resources().get("GPU", 0.0))
        if self._owns_runtime and self.num_gpus > gpus:
            self.close()
            raise ConfigError(
                f"executor.num_gpus={self.num_gpus:g} per evaluation, but the local Ray runtime sees {gpus:g} GPUs; "
                f"use executor.num_gpus=0 on a machine without a GPU"
            )

    def _preload(self) -> None:
        """Start importing what every job imports in each worker, while the driver prepares its jobs."""
        if self.num_workers is None:
            return
        preload = self.ray.remote(_import_modules).options(num_cpus=self.num_cpus, num_gpus=self.num_gpus)
        self._preloading = [preload.remote(PRELOAD) for _ in range(self.num_workers)]

    @property
    def slots(self) -> int:
        if self.num_workers is not None:
            return self.num_workers
        self._ensure_runtime()
        cpus = float(self.ray.cluster_resources().get("CPU", 1.0))
        return max(1, int(cpus // self.num_cpus))

    def share(self, obj: Any) -> Any:
        self._ensure_runtime()
        return self.ray.put(obj)

    # ----- jobs -------------------------------------------------------------------------
    def run(self, jobs: Iterable[Job]) -> Iterator[tuple[Job, Any]]:
        queue = iter(jobs)
        first = next(queue, None)
        if first is None:
            return  # nothing to do: no runtime is started
        queue = itertools.chain([first], queue)
        self._ensure_runtime()
        ray = self.ray
        if self._task is None:
            self._task = ray.remote(_call).options(
                num_cpus=self.num_cpus, num_gpus=self.num_gpus, max_retries=self.max_retries, retry_exceptions=False
            )
        threads = max(1, int(self.num_cpus))
        limit = sys.maxsize if self.num_workers is None else self.num_workers * (2 if self._owns_runtime else 1)
        pending: dict[Any, Job] = {}

        def fill() -> None:
            while len(pending) < limit and (job := next(queue, None)) is not None:
                pending[self._task.remote(job.fn, threads, *job.args, **job.kwargs)] = job

        fill()
        try:
            while pending:
                if self._reaper is not None:
                    self._reaper.watch_new(every_s=2.0)  # the workers Ray started for these jobs (a /proc scan)
                [ref], _ = ray.wait(list(pending), num_returns=1)
                job = pending.pop(ref)
                result = self._result(ref, job)
                fill()  # keep the workers busy while the caller writes the row
                yield job, result
        finally:
            for ref in pending:  # the caller stopped early or a job failed: drop the rest
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001 - already finished or the runtime is gone
                    pass

    def _result(self, ref: Any, job: Job) -> Any:
        exceptions = self.ray.exceptions
        try:
            return self.ray.get(ref)
        except exceptions.RayTaskError as exc:  # the job raised: hand the caller its own exception
            cause = getattr(exc, "cause", None)
            if isinstance(cause, BaseException):
                raise cause from exc
            raise
        except exceptions.RayError as exc:  # its worker (or node) died on every try
            first = (str(exc).strip().splitlines() or [""])[0]
            raise EvaluationError(
                f"evaluation {job.key!r} did not finish: {type(exc).__name__} on all {self.max_retries + 1} tries "
                f"({first}). Rows already written are kept: rerun the same command to resume, or raise "
                f"executor.max_retries"
            ) from exc

    def close(self) -> None:
        if self._owns_runtime or self._joined:
            self.ray.shutdown()  # a joined cluster: this only disconnects the driver
        if self._reaper is not None:
            self._reaper.stop()
        self._ready = self._owns_runtime = self._joined = False
        self._task, self._reaper, self._preloading = None, None, []


PRELOAD = ("torch", "lightning")  # what every nag evaluation imports: seconds per fresh worker


def _import_modules(names: tuple[str, ...]) -> None:
    """Runs in a fresh Ray worker: import ``names`` (those not installed are skipped)."""
    import importlib

    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def _is_int(x: Any) -> bool:
    return isinstance(x, Integral) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, Real) and not isinstance(x, bool) and math.isfinite(float(x))


# ----- the reaper: nothing of a runtime we started outlives this driver ------------------------
_REAPER_CODE = r"""
import os, signal, sys
procs = set()
for line in sys.stdin:  # until EOF: the driver closed the pipe (shutdown) or died (kill -9)
    pid, start = line.split()
    procs.add((int(pid), start))
for pid, start in procs:
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[19] == start:  # the same process, not a reused pid
                os.kill(pid, signal.SIGKILL)
    except (OSError, IndexError):
        pass
"""


class _Reaper:
    """A process, in its own session, that is told the pids Ray starts under this driver and
    kills those still alive once its pipe closes: at shutdown, or when the driver dies.

    Ray ties its main processes to the driver; its dashboard and runtime-env agents notice a
    dead driver at once but then wait ~60 s on a dead GCS before exiting. Linux only (/proc).
    """

    def __init__(self, proc: subprocess.Popen | None, before: set[tuple[int, str]]) -> None:
        self.proc = proc
        self.sent = set(before)
        self.last_scan = -math.inf

    @classmethod
    def start(cls) -> _Reaper:
        if not os.path.isdir("/proc"):
            return cls(None, set())
        proc = subprocess.Popen(
            [sys.executable, "-c", _REAPER_CODE], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True,
        )
        return cls(proc, _descendants(os.getpid()))  # what ran before Ray (the reaper too) is not Ray's

    def watch_new(self, every_s: float = 0.0) -> None:
        """Tell the reaper about this driver's descendants started since the last call; with
        ``every_s``, skip the /proc scan when the last one is more recent than that."""
        if self.proc is None or self.proc.stdin is None or self.proc.poll() is not None:
            return
        now = time.monotonic()
        if now - self.last_scan < every_s:
            return
        self.last_scan = now
        new = _descendants(os.getpid()) - self.sent
        if new:
            self.proc.stdin.write("".join(f"{pid} {start}\n" for pid, start in sorted(new)).encode())
            self.proc.stdin.flush()
            self.sent |= new

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover
            self.proc.kill()
        self.proc = None


def _descendants(root: int) -> set[tuple[int, str]]:
    """(pid, start time) of every live descendant of ``root`` (Linux /proc)."""
    children: dict[int, list[tuple[int, str]]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append((int(entry), fields[19]))
    out: set[tuple[int, str]] = set()
    stack = [root]
    while stack:
        for pid, start in children.get(stack.pop(), []):
            if (pid, start) not in out:
                out.add((pid, start))
                stack.append(pid)
    return out
