"""Task encodings for meta-predictors: per-class image feature sets from a (timm) backbone."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from nag.meta.database import TaskSpec
from nag.modules.nets.feature_extractor import ImageFeatureExtractor
from nag.schema import factory_config

# The ``dataset_encoder:`` config block: ImageFeatureExtractor's settings (backbone, pretrained_path, ...).
DatasetEncoderConfig = factory_config(ImageFeatureExtractor, kind="dataset encoder")


def build_extractor(config: Mapping[str, Any] | None) -> ImageFeatureExtractor:
    """The ImageFeatureExtractor of ``dataset_encoder`` config keys (checked against its signature)."""
    settings = DatasetEncoderConfig.model_validate(dict(config or {})).settings()
    return ImageFeatureExtractor(**settings)


def spec_features(
    extractor: Any, specs: list[TaskSpec], n_per_class: int, seed: int, source_kwargs: Mapping[str, Any] | None = None
) -> dict[str, Tensor]:
    """{task id: features [K, n, F]} for class-subset task specs."""
    return {s.id: extractor.task_features(s.build(**dict(source_kwargs or {})), n_per_class, seed) for s in specs}
