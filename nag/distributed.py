"""Which process of a distributed run this is. In a DDP, SLURM or torchrun job every rank runs the
experiment; only rank zero writes results, checkpoints and W&B (the others would race on the
same files). Read from the launcher's environment, as Lightning does, so it holds before and
after the Trainer sets up its process group."""
from __future__ import annotations

import os

_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


def global_rank() -> int:
    """This process's rank: 0 outside a distributed job."""
    for name in _RANK_VARIABLES:
        value = os.environ.get(name)
        if value is not None:
            return int(value)
    return 0


def is_rank_zero() -> bool:
    """True in the one process that writes (every process outside a distributed job)."""
    return global_rank() == 0


__all__ = ["global_rank", "is_rank_zero"]
