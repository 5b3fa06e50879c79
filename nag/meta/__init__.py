"""Meta-training databases: (task, arch, metrics) rows from real training, for meta-predictors."""
from nag.meta.database import MetaDatabase, MetaRow, TaskSpec

__all__ = ["MetaDatabase", "MetaRow", "TaskSpec"]
