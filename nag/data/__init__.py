"""Tasks: real image classification datasets with fixed splits, and class-subset tasks."""
from __future__ import annotations

from nag.data.tasks import (
    TASKS,
    RelabelledSubset,
    Task,
    dataset_labels,
    get_task,
    list_tasks,
    stratified_split,
)

__all__ = ["TASKS", "Task", "RelabelledSubset", "dataset_labels", "get_task", "list_tasks", "stratified_split"]
