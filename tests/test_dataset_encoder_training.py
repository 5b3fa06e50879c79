"""experiment=train_dataset_encoder: a dataset encoder nag trains itself, and the chain that uses it."""
from __future__ import annotations

import json
import warnings

import pytest
import torch

from nag.data.recipes import TaskSpec
from nag.errors import CheckpointMismatchError
from nag.evaluation import TrainBudget
from nag.experiments.train_dataset_encoder import pooled_task, train_encoder
from nag.modules.nets.feature_extractor import ImageFeatureExtractor

TINY = "test_resnet"  # timm's test model: a few thousand weights


@pytest.fixture
def random_extractor():
    with warnings.catch_warnings():  # the random start is the point here, not a fallback
        warnings.simplefilter("ignore")
        return ImageFeatureExtractor(TINY, min_size=16)


def test_pooled_task_gives_one_label_per_source_class_across_tasks():
    """digits[0,1,2] and digits[2,3] at another size: four digit classes, 2 means 2 in both tasks."""
    specs = [TaskSpec("digits", (0, 1, 2)), TaskSpec("digits", (2, 3), size=16)]
    task = pooled_task(specs, size=12)
    assert task.num_classes == 4 and task.meta["classes"] == [["digits", 0], ["digits", 1], ["digits", 2], ["digits", 3]]
    x, y = task.train[0]
    assert x.shape == (3, 12, 12) and task.input_shape == (3, 12, 12)
    first, second = (spec.build() for spec in specs)
    assert len(task.train) == len(first.train) + len(second.train)
    labels = torch.stack([task.train[i][1] for i in range(len(task.train))])
    tail = labels[len(first.train):]  # the second task's images: digit 2 -> 2, digit 3 -> 3
    assert set(tail.tolist()) == {2, 3}
    assert set(labels[: len(first.train)].tolist()) == {0, 1, 2}


def test_train_encoder_learns_and_its_weights_reload_as_trained(tmp_path, random_extractor):
    task = pooled_task([TaskSpec("digits", (0, 1, 2, 3))], size=16)
    before = random_extractor.identity()
    metrics = train_encoder(random_extractor, task, TrainBudget(epochs=3, batch_size=32, lr=0.05), seed=0)
    assert metrics["val_acc"] > 50.0  # 4 classes: chance is 25%
    after = random_extractor.identity()
    assert random_extractor.weights_kind == after["weights"] == "trained" and after["fingerprint"] != before["fingerprint"]
    path = random_extractor.save_weights(tmp_path / "enc.safetensors")
    again = ImageFeatureExtractor(TINY, pretrained_path=path, min_size=16)
    assert again.identity() == after  # the same weights, the same fingerprint
    img = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(again.extract(img), random_extractor.extract(img))


def test_trained_encoder_through_meta_predictor_to_transfer_nas(tmp_path):
    """train_dataset_encoder -> train_meta_predictor on its features -> transfer_nas with the same
    encoder (encoder_weights: trained); the same meta-predictor with another encoder is refused."""
    from smoke import SMOKE

    from nag.experiments import run_experiment
    from nag.io import read_jsonl
    from nag.meta.database import ASSETS
    from nag.run import compose_config

    encoder_opts = [f"dataset_encoder.backbone={TINY}"]
    enc = run_experiment(compose_config(["experiment=train_dataset_encoder", "meta_db.n_tasks=2", "train.max_steps=3",
                                         "train.batch_size=16", *encoder_opts, f"save_to={tmp_path / 'enc.safetensors'}"]),
                         out_dir=tmp_path / "enc")
    assert enc["encoder_weights"] == "trained" and enc["n_tasks"] == 2 and enc["path"] == str(tmp_path / "enc.safetensors")
    with_encoder = [*encoder_opts, f"dataset_encoder.pretrained_path={enc['path']}"]

    rows = read_jsonl(ASSETS / "meta_db" / "diverse_nb201.jsonl")
    tasks = [t for t in dict.fromkeys(r["task"] for r in rows if not r.get("held_out"))][:3]
    db = tmp_path / "db.jsonl"
    db.write_text("".join(json.dumps(r) + "\n" for t in tasks for r in [r for r in rows if r["task"] == t][:8]))
    saved = tmp_path / "meta.pt"
    meta = run_experiment(compose_config(["experiment=train_meta_predictor", f"meta_db.path={db}", "meta_predictor.steps=3",
                                          "folds=0", "n_per_class=2", *with_encoder, f"save_to={saved}"]),
                          out_dir=tmp_path / "meta")
    assert meta["encoder_weights"] == "trained"

    transfer = ["experiment=transfer_nas", f"meta_predictor.path={saved}", *SMOKE["transfer_nas"]]
    results = run_experiment(compose_config([*transfer, *with_encoder]), out_dir=tmp_path / "transfer")
    assert results["encoder_weights"] == "trained" and results["n_trained"] >= 2
    with pytest.raises(CheckpointMismatchError, match="trained on features of dataset encoder.*dataset_encoder"):
        run_experiment(compose_config([*transfer, *encoder_opts]), out_dir=tmp_path / "random")  # random weights
