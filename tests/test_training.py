"""The shared training routine: budgets, real Lightning training, determinism."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from nag.data import Task, get_task
from nag.errors import ConfigError
from nag.modules import ClassifierModule
from nag.evaluation.training import TrainBudget, train_eval, train_eval_model

KEYS = {"val_acc", "test_acc", "train_loss", "wall_s", "params_M", "epochs", "steps"}


def small_cnn(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """x [B, C, 8, 8] -> logits [B, K]; about 5k parameters."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1, stride=2), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, num_classes),
    )  # fmt: skip


@pytest.fixture(scope="module")
def digits() -> Task:
    return get_task("digits")


# ----- TrainBudget ----------------------------------------------------------------------------
def test_budget_from_any() -> None:
    assert TrainBudget.from_any(None) == TrainBudget()
    assert TrainBudget.from_any(3).epochs == 3
    assert TrainBudget.from_any(np.int64(4)).epochs == 4
    b = TrainBudget(epochs=2, lr=0.05)
    assert TrainBudget.from_any(b) is b
    assert TrainBudget.from_any({"epochs": 2, "max_steps": 7}).max_steps == 7
    cfg = OmegaConf.create({"base_lr": 0.2, "budget": {"epochs": 5, "lr": "${base_lr}"}})
    assert TrainBudget.from_any(cfg.budget) == TrainBudget(epochs=5, lr=0.2)
    assert TrainBudget.from_any(b.to_dict()) == b


def test_budget_unknown_key_lists_accepted() -> None:
    with pytest.raises(ConfigError, match=r"training budget has no setting 'epoch'; it accepts: epochs, batch_size, .* Did you mean 'epochs'"):
        TrainBudget.from_any({"epoch": 3})


@pytest.mark.parametrize(
    "bad, match",
    [
        (0, "setting 'epochs' = 0 is not accepted: expected an int >= 1"),
        ({"batch_size": 0}, "setting 'batch_size' = 0 is not accepted: expected an int >= 1"),
        ({"lr": -1.0}, "setting 'lr' = -1.0 is not accepted: expected a number > 0"),
        ({"max_steps": 0}, "setting 'max_steps' = 0 is not accepted: expected an int >= 1 or null"),
        ({"momentum": 1.0}, "setting 'momentum' = 1.0 is not accepted: expected a number >= 0 and < 1"),
        ({"epochs": 2.5}, "setting 'epochs' = 2.5 is not accepted: expected an int >= 1"),
        (True, "training budget must be a mapping of epochs, batch_size, .*; got True"),
        ("10", "training budget must be a mapping of epochs, batch_size, .*; got '10'"),
    ],
)
def test_budget_refuses_bad_values(bad, match) -> None:
    with pytest.raises(ConfigError, match=match):
        TrainBudget.from_any(bad)


def test_budget_error_names_the_key_the_value_and_the_range() -> None:
    with pytest.raises(ConfigError, match=r"'momentum' = 1.0 is not accepted: expected a number >= 0 and < 1"):
        TrainBudget(momentum=1.0)


# ----- training -------------------------------------------------------------------------------
def test_real_training_learns_digits(digits: Task) -> None:
    result = train_eval_model(small_cnn, digits, TrainBudget(epochs=10, lr=0.1), seed=0, num_threads=1)
    assert set(result) == KEYS
    assert result["test_acc"] > 85 and result["val_acc"] > 85  # chance is 10%
    assert result["epochs"] == 10 and result["steps"] == 10 * 9  # 1078 images / 128 per batch
    assert result["params_M"] == pytest.approx(sum(p.numel() for p in small_cnn().parameters()) / 1e6)
    assert 0 < result["train_loss"] < 1.0 and result["wall_s"] > 0


def test_same_seed_same_numbers_other_seed_differs(digits: Task) -> None:
    budget = {"epochs": 2}
    a = train_eval_model(small_cnn, digits, budget, seed=1, num_threads=1)
    b = train_eval_model(small_cnn, digits, budget, seed=1, num_threads=1)
    c = train_eval_model(small_cnn, digits, budget, seed=2, num_threads=1)
    same = ("val_acc", "test_acc", "train_loss")
    assert [a[k] for k in same] == [b[k] for k in same]
    assert a["train_loss"] != c["train_loss"]


def test_max_steps_cuts_training_and_still_evaluates(digits: Task) -> None:
    result = train_eval_model(small_cnn, digits, {"epochs": 5, "max_steps": 4}, seed=0, num_threads=1)
    assert result["steps"] == 4 and result["epochs"] == pytest.approx(4 / 9)
    assert 0 <= result["val_acc"] <= 100 and 0 <= result["test_acc"] <= 100


def test_training_leaves_caller_rng_and_threads_alone(digits: Task) -> None:
    random.seed(123)
    np.random.seed(123)
    torch.manual_seed(123)
    threads = torch.get_num_threads()
    expected = (random.random(), np.random.rand(), torch.rand(()).item())
    random.seed(123)
    np.random.seed(123)
    torch.manual_seed(123)
    train_eval_model(small_cnn, digits, {"epochs": 1, "max_steps": 2}, seed=0, num_threads=1)
    assert (random.random(), np.random.rand(), torch.rand(()).item()) == expected
    assert torch.get_num_threads() == threads


def test_class_subset_training(digits: Task) -> None:
    sub = digits.subset([0, 1])
    budget = {"epochs": 5, "batch_size": 32}
    result = train_eval_model(lambda: small_cnn(num_classes=2), sub, budget, seed=0, num_threads=1)
    assert result["test_acc"] > 90  # 0 vs 1 is easy


def test_classifier_module_optimiser_and_schedule() -> None:
    module = ClassifierModule(small_cnn(), lr=0.2, momentum=0.0, nesterov=True)

    class FakeTrainer:
        estimated_stepping_batches = 10

    module.trainer = FakeTrainer()  # type: ignore[assignment]
    conf = module.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    assert opt.defaults["nesterov"] is False  # Nesterov needs momentum
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.2) and lrs[5] == pytest.approx(0.1)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert conf["lr_scheduler"]["interval"] == "step"


def test_num_threads_validation(digits: Task, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NAG_NUM_THREADS", "many")
    with pytest.raises(ConfigError, match="NAG_NUM_THREADS"):
        train_eval_model(small_cnn, digits, 1)


def test_nb201_cell_trains_on_digits(digits: Task, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real (small) NB201 network through nag.evaluation.train_eval; the benchmark times the full one."""
    from nag.spaces import get_space

    monkeypatch.setenv("NAG_NUM_THREADS", "1")  # how a shared CPU runs train_eval
    space = get_space("nb201", C=8, N=1)
    arch = space.parse("|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|")
    result = train_eval(space, arch, digits, {"epochs": 3, "batch_size": 32}, seed=0)
    assert set(result) == KEYS and result["steps"] == 3 * 34
    assert result["test_acc"] > 80  # chance is 10%
