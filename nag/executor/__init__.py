"""Executors: where the evaluations of architectures run (``executor=local`` or ``executor=ray``).

See ``nag.executor.base`` for the protocol and docs/scale.md for the commands.
"""
from nag.executor.base import EXECUTORS, Executor, Job, build_executor, fill_rows, list_executors
from nag.executor.local import LocalExecutor

__all__ = ["EXECUTORS", "Executor", "Job", "LocalExecutor", "build_executor", "fill_rows", "list_executors"]
