"""Score-based diffusion: SDEs, reverse-time solvers, predictor guidance, the prior.

``Prior``/``save_prior``/``load_prior`` (prior.py) are imported lazily so that importing the
SDEs and solvers never pulls in the score network.
"""
from __future__ import annotations

from typing import Any

from nag.diffusion.sde import (
    SDE,
    SDES,
    VESDE,
    VPSDE,
    ReverseSDE,
    ScoreFn,
    assert_same_sde,
    build_sde,
    perturb,
    sample_time,
    subVPSDE,
)
from nag.diffusion.solvers import SOLVERS, ODESolver, PCSolver, Solver, get_solver, list_solvers

_LAZY = {
    "Guide": "nag.diffusion.guidance",
    "DiversityGuide": "nag.diffusion.guidance",
    "GuidedSampler": "nag.diffusion.guidance",
    "guided_score_fn": "nag.diffusion.guidance",
    "Prior": "nag.diffusion.prior",
    "save_prior": "nag.diffusion.prior",
    "load_prior": "nag.diffusion.prior",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nag.diffusion' has no attribute {name!r}")


__all__ = [
    "SDE",
    "SDES",
    "SOLVERS",
    "ODESolver",
    "PCSolver",
    "ReverseSDE",
    "ScoreFn",
    "Solver",
    "VESDE",
    "VPSDE",
    "assert_same_sde",
    "build_sde",
    "get_solver",
    "list_solvers",
    "perturb",
    "sample_time",
    "subVPSDE",
    "DiversityGuide",
    "Guide",
    "GuidedSampler",
    "guided_score_fn",
]
