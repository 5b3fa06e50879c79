"""LightningModules: training logic only; the networks they train are plain nn.Modules.

Submodules import Lightning (~3 s); this package itself does not, so that code which only reads
``nag.modules.trainer.TrainerSettings`` (a Ray driver, a config check) starts fast.
"""
from __future__ import annotations

from typing import Any

__all__ = ["ClassifierModule"]


def __getattr__(name: str) -> Any:
    if name == "ClassifierModule":
        from nag.modules.classifier import ClassifierModule

        return ClassifierModule
    raise AttributeError(f"module 'nag.modules' has no attribute {name!r}")
