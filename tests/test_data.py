"""Tasks: the digits task, class subsets, per-class sample sets, CIFAR's missing-data error."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf
from torch.utils.data import Dataset, TensorDataset

from nag.data import TASKS, Task, dataset_labels, get_task, list_tasks, stratified_split
from nag.data.images import ImageTensorDataset
from nag.errors import ConfigError, MissingDataError, UnknownNameError


@pytest.fixture(scope="module")
def digits() -> Task:
    return get_task("digits")


def test_builtins_are_listed() -> None:
    assert {"digits", "cifar10", "cifar100"} <= set(list_tasks())
    assert list_tasks("cifar*") == ["cifar10", "cifar100"]


def test_digits_splits(digits: Task) -> None:
    assert digits.num_classes == 10 and digits.input_shape == (1, 8, 8)
    sizes = [len(digits.train), len(digits.val), len(digits.test)]
    assert sum(sizes) == 1797 and sizes[0] == int(0.6 * 1797)
    x, y = digits.train[0]
    assert x.shape == (1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.long
    # normalised with the train split's statistics
    train_x = digits.train.tensors[0]
    assert abs(train_x.mean().item()) < 1e-4 and abs(train_x.std().item() - 1) < 1e-4
    # stratified: every split holds every class in about the same proportion
    for split in (digits.train, digits.val, digits.test):
        counts = torch.bincount(dataset_labels(split), minlength=10).float()
        assert (counts / counts.sum() - 0.1).abs().max() < 0.02
    # the splits are disjoint: no image of test appears in train
    flat_train = {tuple(r.tolist()) for r in digits.train.tensors[0].flatten(1)}
    assert not any(tuple(r.tolist()) in flat_train for r in digits.test.tensors[0].flatten(1)[:100])


def test_digits_split_seed_is_deterministic(digits: Task) -> None:
    again = get_task("digits")
    assert torch.equal(again.test.tensors[0], digits.test.tensors[0])
    other = get_task("digits", split_seed=1)
    assert not torch.equal(other.test.tensors[1], digits.test.tensors[1])


def test_digits_upsampled() -> None:
    task = get_task("digits", size=16)
    assert task.input_shape == (1, 16, 16) and task.train[0][0].shape == (1, 16, 16)
    with pytest.raises(ConfigError, match="size must be >= 8"):
        get_task("digits", size=4)


def test_subset_relabels_and_composes(digits: Task) -> None:
    sub = digits.subset([7, 3])
    assert sub.classes == (7, 3) and sub.num_classes == 2 and sub.name == "digits[7,3]"
    labels = dataset_labels(digits.train)
    # label 0 of the subset is original class 7, in the same images
    assert torch.equal(sub.train.tensors[0][sub.train.tensors[1] == 0], digits.train.tensors[0][labels == 7])
    assert len(sub.train) == int(((labels == 7) | (labels == 3)).sum())
    subsub = sub.subset([3], name="threes")
    assert subsub.classes == (3,) and subsub.name == "threes"
    assert set(dataset_labels(subsub.test).tolist()) == {0}
    assert torch.equal(subsub.train.tensors[0], digits.train.tensors[0][labels == 3])


@pytest.mark.parametrize("bad", [[], [3, 3], [11], [-1]])
def test_subset_refuses_bad_classes(digits: Task, bad: list[int]) -> None:
    with pytest.raises(ConfigError, match="among"):
        digits.subset(bad)


def test_get_task_with_classes_and_hydra_config() -> None:
    cfg = OmegaConf.create({"name": "digits", "classes": [1, 2, 5], "split_seed": 0})
    task = get_task(**cfg)
    assert task.classes == (1, 2, 5) and task.num_classes == 3


def test_class_sets(digits: Task) -> None:
    sets = digits.class_sets(20, seed=0)
    assert sets.shape == (10, 20, 1, 8, 8)
    assert torch.equal(sets, digits.class_sets(20, seed=0))
    assert not torch.equal(sets, digits.class_sets(20, seed=1))
    labels = dataset_labels(digits.train)
    images = digits.train.tensors[0]
    for k in (0, 9):  # every image of set k is a training image of class k
        pool = images[labels == k].flatten(1)
        assert all((pool == img.flatten()).all(1).any() for img in sets[k])
    # fewer images than asked: drawn with replacement
    tiny = digits.subset([4])
    n = len(tiny.train)
    assert tiny.class_sets(n + 5).shape == (1, n + 5, 1, 8, 8)


def test_subset_of_a_generic_dataset() -> None:
    """subset() works for any Dataset, not only TensorDatasets."""

    class Plain(Dataset):
        def __init__(self, n: int) -> None:
            self.n = n

        def __len__(self) -> int:
            return self.n

        def __getitem__(self, i: int):
            return torch.full((1, 2, 2), float(i)), torch.tensor(i % 4)

    task = Task("plain", 4, (1, 2, 2), Plain(40), Plain(8), Plain(8), classes=(10, 11, 12, 13))
    sub = task.subset([13, 11])
    assert len(sub.train) == 20
    x, y = sub.train[0]
    assert x[0, 0, 0].item() == 1.0 and y.item() == 1  # item 1 had class 11 -> new label 1
    assert sub.class_sets(3).shape == (2, 3, 1, 2, 2)
    assert (sub.class_sets(3)[0] % 4 == 3).all()  # class 13's items are i % 4 == 3


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_subset_property(digits: Task, data: st.DataObject) -> None:
    classes = data.draw(st.lists(st.integers(0, 9), min_size=1, max_size=10, unique=True))
    sub = digits.subset(classes)
    full = dataset_labels(digits.val)
    got = dataset_labels(sub.val)
    assert sub.classes == tuple(classes)
    assert got.min() >= 0 and got.max() < len(classes)
    for new, old in enumerate(classes):
        assert int((got == new).sum()) == int((full == old).sum())


@settings(max_examples=40, deadline=None)
@given(labels=st.lists(st.integers(0, 6), min_size=10, max_size=300), seed=st.integers(0, 5))
def test_stratified_split_partitions(labels: list[int], seed: int) -> None:
    labels = np.array(labels)
    n = len(labels)
    parts = stratified_split(labels, [0.6, 0.2, 0.2], seed=seed)
    assert sorted(np.concatenate(parts).tolist()) == list(range(n))
    assert len(parts[0]) == int(0.6 * n)
    for part in parts:  # every class is spread in proportion, even a class of one item
        for c in np.unique(labels):
            expected = (labels == c).sum() * len(part) / n
            assert abs((labels[part] == c).sum() - expected) <= 2


def test_stratified_split_refuses_bad_sizes() -> None:
    with pytest.raises(ConfigError, match="adding up"):
        stratified_split(np.zeros(10), [0.5, 0.2])


def test_unknown_task_and_kwargs() -> None:
    with pytest.raises(UnknownNameError, match="Known tasks: .*digits"):
        get_task("mnist")
    with pytest.raises(ConfigError, match=r"task 'digits' has no setting 'root'; it accepts: size"):
        get_task("digits", root="/data")


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_missing_data_error(name: str, tmp_path: Path) -> None:
    with pytest.raises(MissingDataError, match=f"(?i){name}: no intact copy under") as info:
        get_task(name, root=tmp_path)  # download defaults to False: nothing is fetched
    msg = str(info.value)
    assert str(tmp_path) in msg and "task.root=" in msg and "task.download=true" in msg


def test_cifar_root_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NAG_DATA_ROOT", str(tmp_path / "env_root"))
    with pytest.raises(MissingDataError, match="env_root"):
        get_task("cifar10")


def test_image_tensor_dataset_normalises_and_augments() -> None:
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    mean, std = torch.tensor([0.5, 0.4, 0.3]), torch.tensor([0.2, 0.2, 0.2])
    plain = ImageTensorDataset(images, torch.arange(6), mean, std)
    x, y = plain[2]
    assert x.shape == (3, 32, 32) and y.item() == 2
    assert torch.allclose(x, (images[2].float() / 255 - mean.view(3, 1, 1)) / std.view(3, 1, 1))
    aug = ImageTensorDataset(images, torch.arange(6), mean, std, augment=True)
    torch.manual_seed(0)
    views = torch.stack([aug[2][0] for _ in range(8)])
    assert views.shape == (8, 3, 32, 32)
    assert not all(torch.equal(v, x) for v in views)  # crops/flips change the view
    torch.manual_seed(0)
    assert torch.equal(views, torch.stack([aug[2][0] for _ in range(8)]))  # seeded -> repeatable


def test_third_party_task_registration() -> None:
    def tiny() -> Task:
        x = torch.randn(8, 1, 2, 2)
        ds = TensorDataset(x, torch.arange(8) % 2)
        return Task("tiny", 2, (1, 2, 2), ds, ds, ds, classes=(0, 1))

    TASKS.register("tiny_test_task", tiny)
    try:
        assert get_task("tiny_test_task", classes=[1]).num_classes == 1
    finally:
        TASKS._items.pop("tiny_test_task"), TASKS._sources.pop("tiny_test_task")


def test_task_validates_classes() -> None:
    ds = TensorDataset(torch.zeros(2, 1, 1, 1), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ConfigError, match="distinct"):
        Task("bad", 2, (1, 1, 1), ds, ds, ds, classes=(0, 0))
