"""LightningModules: training logic only; the networks they train are plain nn.Modules."""
from __future__ import annotations

from nag.modules.classifier import ClassifierModule

__all__ = ["ClassifierModule"]
