"""Task encodings for meta-predictors: per-class image feature sets from a (timm) backbone."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from nag.meta.database import TaskSpec


def build_extractor(config: Mapping[str, Any] | None):
    """The ImageFeatureExtractor of ``dataset_encoder`` config keys (backbone, pretrained_path, ...)."""
    from nag.modules.nets.feature_extractor import ImageFeatureExtractor

    return ImageFeatureExtractor(**dict(config or {}))


def spec_features(
    extractor: Any, specs: list[TaskSpec], n_per_class: int, seed: int, source_kwargs: Mapping[str, Any] | None = None
) -> dict[str, Tensor]:
    """{task id: features [K, n, F]} for class-subset task specs."""
    return {s.id: extractor.task_features(s.build(**dict(source_kwargs or {})), n_per_class, seed) for s in specs}
