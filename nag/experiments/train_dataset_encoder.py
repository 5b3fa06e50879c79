"""``experiment=train_dataset_encoder``: train the dataset encoder's backbone on the meta-database's tasks.

Offline, nag has no pretrained backbone to encode a task's images with, and a random one keeps
little but colour and frequency statistics. This experiment trains one itself: the backbone
(``dataset_encoder.backbone``, from its fixed-seed random initialisation) with a linear head is
trained as one classifier over the (source, original class) pairs of the tasks that
``meta_db`` selects (a suite or recipes, as in build_meta_db; held-out tasks are never used unless
``meta_db.held_out`` says so), pooled: the same sources under every recipe's class subset,
resolution, training-set size and corruption. Images are prepared as the extractor prepares
them (grey repeated to 3 channels) and resized to ``dataset_encoder.min_size`` square.

The backbone's weights go to ``<run dir>/encoder.safetensors``, marked ``trained``, and to
``save_to`` when set; ``dataset_encoder.pretrained_path=<file>`` then uses them in
train_meta_predictor and transfer_nas (``encoder_weights: trained``). A meta-predictor must be
used with the encoder it was trained with.

Results: ``n_tasks``, ``n_classes``, ``n_train`` (pooled training images), ``val_acc`` and
``test_acc`` of the classifier on the pooled splits, ``train_loss``, ``steps``, ``wall_s``,
``path``, ``encoder_weights``.
"""
from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from nag.data.recipes import TaskSpec
from nag.data.tasks import Task, dataset_labels, gather_images
from nag.evaluation import TrainBudget, train_eval_model
from nag.experiments import build_budget, experiment, plain, run_dir, trainer_settings
from nag.experiments.build_meta_db import HELD_OUT, configured_recipes, select_recipes
from nag.experiments.config import RunConfig
from nag.meta.features import DatasetEncoderConfig, build_extractor
from nag.modules.nets.feature_extractor import ImageFeatureExtractor
from nag.schema import Settings


class EncoderTasksSettings(Settings):
    """The ``meta_db:`` block: which tasks the encoder learns from (build_meta_db's selection keys)."""

    suite: str
    suite_kwargs: dict[str, Any]
    recipes: list[dict[str, Any]] | str | None
    held_out: Literal[HELD_OUT]  # type: ignore[valid-type]
    n_tasks: int | None
    source_kwargs: dict[str, Any]


class TrainDatasetEncoderConfig(RunConfig):
    meta_db: EncoderTasksSettings
    dataset_encoder: DatasetEncoderConfig
    train: TrainBudget
    save_to: str | None


def _split(dataset: Any, size: int) -> tuple[Tensor, Tensor]:
    """Every image of ``dataset`` as [M, 3, size, size], and its labels [M]."""
    labels = dataset_labels(dataset)
    images = gather_images(dataset, range(len(labels))).float()
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    if images.shape[-2:] != (size, size):
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    return images.contiguous(), labels


def pooled_task(specs: Sequence[TaskSpec], size: int, source_kwargs: Mapping[str, Any] | None = None) -> Task:
    """One classification task over the (source, original class) pairs of ``specs``' tasks, every
    split pooled over the tasks; images [3, size, size]."""
    classes: dict[tuple[str, int], int] = {}
    parts: dict[str, tuple[list[Tensor], list[Tensor]]] = {s: ([], []) for s in ("train", "val", "test")}
    for spec in specs:
        task = spec.build(**dict(source_kwargs or {}))
        global_ids = torch.tensor([classes.setdefault((spec.source, c), len(classes)) for c in task.classes])
        for name, (xs, ys) in parts.items():
            x, y = _split(getattr(task, name), size)
            xs.append(x)
            ys.append(global_ids[y])
    data = {name: TensorDataset(torch.cat(xs), torch.cat(ys)) for name, (xs, ys) in parts.items()}
    return Task(name=f"pooled({len(specs)} tasks)", num_classes=len(classes), input_shape=(3, size, size),
                classes=tuple(range(len(classes))), meta={"classes": [list(k) for k in classes]}, **data)


def train_encoder(extractor: ImageFeatureExtractor, task: Task, budget: Any, seed: int = 0, **options: Any) -> dict:
    """Train ``extractor``'s backbone with a linear head on ``task``; load the trained weights back
    into ``extractor``. Returns train_eval_model's metrics."""
    trained: dict[str, nn.Module] = {}

    def build() -> nn.Module:
        backbone = copy.deepcopy(extractor.backbone).train().requires_grad_(True)
        trained["backbone"] = backbone
        return nn.Sequential(backbone, nn.Linear(extractor.out_dim, task.num_classes))

    metrics = train_eval_model(build, task, budget=budget, seed=seed, **options)
    extractor.backbone.load_state_dict(trained["backbone"].state_dict())
    extractor.backbone.eval().requires_grad_(False)
    extractor.weights_kind, extractor.weights_source = "trained", "train_dataset_encoder"
    return metrics


@experiment("train_dataset_encoder", schema=TrainDatasetEncoderConfig)
def train_dataset_encoder(cfg: DictConfig) -> dict:
    m = cfg.meta_db
    n_tasks = None if m.get("n_tasks") is None else int(m.n_tasks)
    specs = [s for _, s in select_recipes(configured_recipes(m), str(m.held_out), n_tasks)]
    with warnings.catch_warnings():  # a random start is what this experiment trains from, not a fallback
        warnings.filterwarnings("ignore", message="no local weights for backbone")
        extractor = build_extractor(plain(cfg.dataset_encoder))
    task = pooled_task(specs, extractor.min_size, plain(m.get("source_kwargs")))
    metrics = train_encoder(extractor, task, build_budget(cfg), seed=int(cfg.seed), trainer=trainer_settings(cfg))
    path = extractor.save_weights(run_dir() / "encoder.safetensors", kind="trained")
    if cfg.get("save_to"):
        path = extractor.save_weights(cfg.save_to, kind="trained")
    return {
        "n_tasks": len(specs),
        "n_classes": task.num_classes,
        "n_train": len(task.train),
        "val_acc": metrics["val_acc"],
        "test_acc": metrics["test_acc"],
        "train_loss": metrics["train_loss"],
        "steps": int(metrics["steps"]),
        "wall_s": metrics["wall_s"],
        "path": str(path),
        "encoder_weights": extractor.weights_kind,
    }
