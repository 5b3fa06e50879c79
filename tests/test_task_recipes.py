"""Task recipes, corruptions, the offline sources (photo patches, shapes, textures), the task suites,
and build_meta_db over recipes."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch

from nag.data import dataset_labels, get_task
from nag.data.corruptions import apply_corruption, list_corruptions
from nag.data.recipes import TaskSpec
from nag.data.suites import TRANSFER_DEFAULT, get_suite
from nag.errors import ConfigError, UnknownNameError
from nag.meta import MetaDatabase


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _images(n: int = 16, c: int = 1, s: int = 16) -> torch.Tensor:
    return torch.randn(n, c, s, s, generator=_gen(42))


# ----- corruptions -------------------------------------------------------------------------
def test_every_corruption_is_seeded_and_keeps_shapes() -> None:
    x = _images(c=3)
    assert set(list_corruptions()) >= {"rotate", "blur", "noise", "invert", "occlude", "translate"}
    for name in list_corruptions():
        a, b = apply_corruption(name, x, _gen(1)), apply_corruption(name, x, _gen(1))
        assert a.shape == x.shape and torch.equal(a, b), name
        assert not torch.equal(a, x), name


def test_rotate_turns_images() -> None:
    x = torch.zeros(1, 1, 15, 15)
    x[0, 0, 7, 8:] = 1.0  # a ray from the centre to the right edge
    turned = apply_corruption("rotate", x.expand(64, -1, -1, -1), _gen(0), degrees=90)
    right = turned[:, 0, 5:10, 11:].sum(dim=(1, 2))
    assert (right < 0.5 * x[0, 0, 5:10, 11:].sum()).float().mean() > 0.3  # many rays left the right edge
    with pytest.raises(ConfigError, match=r"rotate.*degrees must be in \(0, 180\]"):
        apply_corruption("rotate", x, _gen(0), degrees=0)


def test_blur_smooths_and_keeps_constants() -> None:
    x = _images()
    blurred = apply_corruption("blur", x, _gen(0), sigma=1.5)
    assert blurred.diff(dim=-1).abs().mean() < 0.5 * x.diff(dim=-1).abs().mean()
    const = torch.full((2, 1, 8, 8), 3.0)
    torch.testing.assert_close(apply_corruption("blur", const, _gen(0), sigma=2.0), const)
    with pytest.raises(ConfigError, match="sigma must be in"):
        apply_corruption("blur", x, _gen(0), sigma=-1)


def test_noise_has_the_asked_spread() -> None:
    x = torch.zeros(64, 1, 16, 16)
    assert apply_corruption("noise", x, _gen(0), std=0.5).std().item() == pytest.approx(0.5, rel=0.05)


def test_invert_flips_the_asked_fraction() -> None:
    x = _images(n=400)
    torch.testing.assert_close(apply_corruption("invert", x, _gen(0), p=1.0), -x)
    half = apply_corruption("invert", x, _gen(0), p=0.5)
    flipped = (half == -x).flatten(1).all(1).float().mean().item()
    assert 0.4 < flipped < 0.6


def test_occlude_paints_one_square_of_the_mean() -> None:
    x = torch.ones(32, 2, 20, 20)
    out = apply_corruption("occlude", x, _gen(0), fraction=0.4)
    painted = out == 0
    assert (painted.sum(dim=(1, 2, 3)) == 2 * 8 * 8).all()  # an 8x8 square in both channels
    assert len({tuple(p[0].nonzero()[0].tolist()) for p in painted}) > 5  # at different places
    with pytest.raises(ConfigError, match=r"fraction must be in \(0, 1\)"):
        apply_corruption("occlude", x, _gen(0), fraction=1.0)


def test_translate_shifts_content() -> None:
    x = torch.zeros(32, 1, 20, 20)
    x[:, :, 8:12, 8:12] = 1.0
    out = apply_corruption("translate", x, _gen(0), fraction=0.25)
    centres = [(o[0] > 0.5).nonzero().float().mean(0) for o in out]
    assert max(float((c - torch.tensor([9.5, 9.5])).abs().max()) for c in centres) > 2


def test_unknown_corruption_and_parameter() -> None:
    with pytest.raises(UnknownNameError, match="Known corruptions: .*blur"):
        apply_corruption("sharpen", _images(), _gen(0))
    with pytest.raises(ConfigError, match="degrees"):
        apply_corruption("rotate", _images(), _gen(0), angle=3)


# ----- recipes -----------------------------------------------------------------------------
def test_a_class_subset_recipe_is_the_plain_subset() -> None:
    spec = TaskSpec("digits", (3, 1))
    assert spec.id == "digits[3,1]" and not spec.derived
    task, plain = spec.build(), get_task("digits", classes=[3, 1])
    assert torch.equal(task.train.tensors[0], plain.train.tensors[0]) and task.name == plain.name


def test_recipe_json_round_trip_and_identity() -> None:
    spec = TaskSpec(
        "shapes", (0, 3, 5), source_kwargs={"per_class": [40, 20, 20]}, size=16, train_per_class=30,
        corruptions=[{"name": "rotate", "degrees": 30}, {"name": "noise", "std": 0.5}], label_noise=0.2, seed=3,
        family="shapes", held_out=True,
    )
    again = TaskSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec and again.id == spec.id and hash(again) == hash(spec) and again.held_out
    assert spec.id == "shapes(per_class=40x20x20)[0,3,5]{train_per_class=30,size=16,rotate(degrees=30),noise(std=0.5),label_noise=0.2,seed=3}"
    with pytest.raises(ConfigError, match=r"unknown keys \['colour'\]"):
        TaskSpec.from_dict({"source": "digits", "colour": 1})
    with pytest.raises(ConfigError, match=r"label_noise must be in \[0, 1\)"):
        TaskSpec("digits", label_noise=1.0)


def test_recipes_build_deterministically_and_as_asked() -> None:
    spec = TaskSpec("digits", (0, 1, 2, 3), size=12, train_per_class=25, label_noise=0.3,
                    corruptions=[{"name": "occlude", "fraction": 0.3}], seed=7)
    a, b = spec.build(), spec.build()
    for split in ("train", "val", "test"):
        assert torch.equal(getattr(a, split).tensors[0], getattr(b, split).tensors[0])
        assert torch.equal(getattr(a, split).tensors[1], getattr(b, split).tensors[1])
    assert a.name == spec.id and a.input_shape == (1, 12, 12) and a.classes == (0, 1, 2, 3)
    other = TaskSpec.from_dict({**spec.to_dict(), "seed": 8}).build()
    assert not torch.equal(other.train.tensors[0], a.train.tensors[0])
    assert Counter(a.train.tensors[1].tolist()) != Counter({k: 25 for k in range(4)})  # noisy labels
    assert len(a.train) == 100
    x = a.train.tensors[0]
    assert abs(x.mean().item()) < 1e-4 and abs(x.std().item() - 1) < 1e-2  # re-standardised
    assert a.class_sets(4).shape == (4, 4, 1, 12, 12) and a.subset([2, 0]).num_classes == 2


def test_label_noise_only_touches_training_labels() -> None:
    clean = TaskSpec("digits", (0, 1, 2, 3, 4), train_per_class=60, seed=1).build()
    noisy = TaskSpec("digits", (0, 1, 2, 3, 4), train_per_class=60, label_noise=0.4, seed=1).build()
    assert torch.equal(clean.train.tensors[0], noisy.train.tensors[0])  # same images
    changed = (clean.train.tensors[1] != noisy.train.tensors[1]).float().mean().item()
    assert 0.3 < changed < 0.5  # a flipped label is always another class
    assert torch.equal(dataset_labels(clean.test), dataset_labels(noisy.test))
    assert torch.equal(dataset_labels(clean.val), dataset_labels(noisy.val))


def test_too_few_training_images_per_class() -> None:
    with pytest.raises(ConfigError, match=r"class 0 of digits\[0\] has \d+ training images, fewer than train_per_class=5000"):
        TaskSpec("digits", (0,), train_per_class=5000).build()


# ----- offline sources ----------------------------------------------------------------------------
def test_photo_patches_split_by_region_strips() -> None:
    task = get_task("photo_patches", grid=[2, 2], patch=16, per_class=[20, 8, 8])
    assert task.num_classes == 8 and task.input_shape == (3, 16, 16)
    assert [len(task.train), len(task.val), len(task.test)] == [160, 64, 64]
    assert task.meta["class_names"][:2] == ["china:r0c0", "china:r0c1"]
    train = {tuple(v) for v in task.train.tensors[0].flatten(1).numpy().round(4).tolist()}
    assert not any(tuple(v) in train for v in task.test.tensors[0].flatten(1).numpy().round(4).tolist())
    grey = get_task("photo_patches", grid=[2, 2], patch=16, size=8, per_class=[5, 2, 2], gray=True, photos=["flower"])
    assert grey.input_shape == (1, 8, 8) and grey.num_classes == 4 and grey.name.startswith("photo_patches(")
    with pytest.raises(ConfigError, match="patch must be in 4..32"):
        get_task("photo_patches", grid=[3, 4], patch=40)


@pytest.mark.parametrize("name", ["shapes", "textures"])
def test_procedural_sources_are_deterministic(name: str) -> None:
    a = get_task(name, size=16, per_class=[10, 4, 4])
    b = get_task(name, size=16, per_class=[10, 4, 4])
    assert a.num_classes == 8 and a.input_shape == (1, 16, 16) and len(a.train) == 80
    assert torch.equal(a.train.tensors[0], b.train.tensors[0]) and a.name == b.name
    c = get_task(name, size=16, per_class=[10, 4, 4], seed=1)
    assert not torch.equal(a.train.tensors[0], c.train.tensors[0]) and c.name != a.name
    # classes differ on average: the mean images of two classes are not the same
    means = torch.stack([a.train.tensors[0][a.train.tensors[1] == k].mean(0) for k in range(8)])
    assert torch.cdist(means.flatten(1), means.flatten(1)).fill_diagonal_(1).min() > 0.1


# ----- suites ---------------------------------------------------------------------------------------
def test_the_diverse_suite() -> None:
    suite = get_suite("diverse")
    assert suite == get_suite("diverse") and [s.id for s in suite] == [s.id for s in get_suite("diverse")]
    ids = [s.id for s in suite]
    assert len(ids) == len(set(ids)) and len(suite) >= 60
    train = [s for s in suite if not s.held_out]
    held = [s for s in suite if s.held_out]
    assert len(train) >= 50 and len(held) >= 10
    assert TRANSFER_DEFAULT in held  # transfer_nas's embedded unseen task
    assert all(s.held_out for s in suite if s.family == "textures")  # a whole held-out domain
    assert all(s.held_out for s in suite if any(n == "invert" for n, _ in s.corruptions))
    assert {s.source for s in train} == {"digits", "photo_patches", "shapes"}
    assert len({s.family for s in train}) >= 6
    axes = Counter()
    for s in train:
        axes.update({"size": s.size is not None, "few": bool(s.train_per_class), "noise": s.label_noise > 0,
                     "corrupt": bool(s.corruptions)})
        axes.update(n for n, _ in s.corruptions)
    assert all(axes[a] >= 3 for a in ("size", "few", "noise", "corrupt", "rotate", "blur", "noise", "occlude"))
    assert len({len(s.classes) for s in train}) >= 6 and len({s.size for s in train}) >= 4
    assert {s.family for s in suite[:8]} == {s.family for s in suite}  # any prefix mixes families
    assert get_suite("diverse", seed=1) != suite


def test_class_subsets_suite_is_the_shipped_database_recipe() -> None:
    specs = get_suite("class_subsets")
    train = [s for s in specs if not s.held_out]
    assert len(train) == 20 and [s for s in specs if s.held_out] == [TRANSFER_DEFAULT]
    shipped = MetaDatabase(__import__("nag.experiments.train_meta_predictor", fromlist=["ASSETS"]).ASSETS
                           / "meta_db" / "digits_nb201.jsonl").task_specs()
    assert train == shipped  # the same tasks in the same order
    with pytest.raises(ConfigError, match="only 10 distinct subsets"):
        get_suite("class_subsets", num_source_classes=5, n_tasks=11, classes_per_task=2, exclude=[])


def test_suite_task_builder() -> None:
    suite = get_suite("diverse")
    task = get_task("suite", index=1)
    assert task.name == suite[1].id
    assert get_task("suite", id=TRANSFER_DEFAULT.id).name == "digits[0,2,4,6,8,9]"
    with pytest.raises(ConfigError, match="exactly one of task.index"):
        get_task("suite")
    with pytest.raises(ConfigError, match="no recipe with id"):
        get_task("suite", id="digits[99]")


# ----- the meta-database over recipes ---------------------------------------------------------------
def _build(tmp_path, *overrides: str) -> dict:
    from nag.experiments import run_experiment
    from nag.run import compose_config

    cfg = compose_config(["experiment=build_meta_db", "train.epochs=1", "train.max_steps=2", "space.C=4",
                          f"meta_db.path={tmp_path / 'db.jsonl'}", *overrides])
    return run_experiment(cfg, out_dir=tmp_path / "run")


def test_build_meta_db_contract_and_resume(tmp_path) -> None:
    results = _build(tmp_path, "meta_db.n_tasks=2", "meta_db.archs_per_task=4")
    rows = MetaDatabase(tmp_path / "db.jsonl").rows()
    assert results["n_rows"] == 8 and len(rows) == 8 and results["n_tasks"] == 2
    suite = [s for s in get_suite("diverse") if not s.held_out]
    assert [r["task"] for r in rows[::4]] == [suite[0].id, suite[1].id]
    assert all(TaskSpec.from_dict(r["recipe"]) == suite[i // 4] and r["held_out"] is False for i, r in enumerate(rows))
    assert MetaDatabase(tmp_path / "db.jsonl").task_specs() == suite[:2]
    again = _build(tmp_path, "meta_db.n_tasks=2", "meta_db.archs_per_task=4")
    assert again["n_trained_now"] == 0 and again["n_rows"] == 8


def test_build_meta_db_held_out_and_shared_archs(tmp_path) -> None:
    _build(tmp_path, "meta_db.n_tasks=2", "meta_db.archs_per_task=2", "meta_db.shared_archs=1", "meta_db.held_out=only")
    db = MetaDatabase(tmp_path / "db.jsonl")
    rows = db.rows()
    assert all(r["held_out"] for r in rows) and db.rows(held_out=False) == []
    assert rows[0]["arch"] == rows[2]["arch"] and rows[1]["arch"] != rows[3]["arch"]  # one shared arch each
    from nag.run import CliError

    with pytest.raises(CliError, match="meta_db.held_out' = 'some' is not accepted: expected one of 'exclude', 'include', 'only'"):
        _build(tmp_path, "meta_db.held_out=some")


def test_build_meta_db_trains_each_pair_with_several_seeds(tmp_path) -> None:
    results = _build(tmp_path, "meta_db.n_tasks=1", "meta_db.archs_per_task=2", "meta_db.train_seeds=2", "seed=3")
    rows = MetaDatabase(tmp_path / "db.jsonl").rows()
    assert results["n_rows"] == 4 and [(r["arch"] == rows[0]["arch"], r["seed"]) for r in rows] == [
        (True, 3), (True, 4), (False, 3), (False, 4)]
    assert _build(tmp_path, "meta_db.n_tasks=1", "meta_db.archs_per_task=2", "meta_db.train_seeds=2", "seed=3")["n_trained_now"] == 0


def test_build_meta_db_from_a_recipe_file(tmp_path) -> None:
    recipes = [{"source": "shapes", "classes": [0, 1], "size": 8, "source_kwargs": {"per_class": [20, 8, 8]}}]
    (tmp_path / "recipes.json").write_text(json.dumps(recipes))
    results = _build(tmp_path, f"meta_db.recipes={tmp_path / 'recipes.json'}", "meta_db.archs_per_task=2")
    assert results["n_rows"] == 2 and MetaDatabase(tmp_path / "db.jsonl").task_specs() == [TaskSpec.from_dict(recipes[0])]
    with pytest.raises(ConfigError, match="no such file"):
        _build(tmp_path, f"meta_db.recipes={tmp_path / 'none.json'}")


def test_shipped_suite_rows_keep_their_index_seeds() -> None:
    """The class_subsets suite draws the shipped database's archs (seed*1000 + task index)."""
    from omegaconf import OmegaConf

    from nag.experiments.build_meta_db import plan
    from nag.experiments.train_meta_predictor import ASSETS
    from nag.spaces import get_space

    space = get_space("nb201", C=8, N=1)
    cfg = OmegaConf.create({"seed": 0, "meta_db": {"suite": "class_subsets", "suite_kwargs": {}, "held_out": "exclude",
                                                   "n_tasks": 2, "archs_per_task": 20, "shared_archs": 0}})
    pairs = plan(cfg, space)
    shipped = MetaDatabase(ASSETS / "meta_db" / "digits_nb201.jsonl").rows()[:40]
    assert [(s.id, space.format(a)) for s, a in pairs] == [(r["task"], r["arch"]) for r in shipped]
    np.testing.assert_equal(len(pairs), 40)
