"""Meta-database: task specs, crash-safe rows, resume, and the MetaD2A reader."""
from __future__ import annotations

import json

import pytest
import torch

from nag.errors import ConfigError, MissingDataError
from nag.data.suites import class_subsets
from nag.meta import MetaDatabase, TaskSpec
from nag.meta.metad2a import read_metad2a, x_to_nb201_string
from nag.spaces import get_space


def test_task_specs_are_distinct_seeded_and_skip_exclusions():
    specs = [s for s in class_subsets("digits", 10, 20, 6, seed=0, exclude=[[0, 2, 4, 6, 8, 9]]) if not s.held_out]
    assert len({s.classes for s in specs}) == 20
    assert (0, 2, 4, 6, 8, 9) not in {s.classes for s in specs}
    assert specs == class_subsets("digits", 10, 20, 6, seed=0, exclude=[[9, 8, 6, 4, 2, 0]])[:20]
    with pytest.raises(ConfigError, match="only 10 distinct subsets"):
        class_subsets("digits", 5, 11, 2, exclude=[])


def test_database_appends_resumes_and_survives_a_torn_line(tmp_path):
    db = MetaDatabase(tmp_path / "db.jsonl")
    row = {"task": "digits[0,1]", "source": "digits", "classes": [0, 1], "arch": "a", "val_acc": 1.0, "test_acc": 2.0, "seed": 0}
    assert db.append(row) and not db.append(row)
    with open(db.path, "a") as f:  # a writer killed mid-row
        f.write('{"task": "digits[0,1]", "arch": "b", "val_')
    assert db.done() == {("digits[0,1]", "a")}
    assert db.task_specs() == [TaskSpec("digits", (0, 1))]
    db.append({**row, "arch": "c"})
    db.append({**row, "arch": "c", "seed": 1})  # another training seed of the same pair is its own row
    assert [(r["arch"], r["seed"]) for r in db.rows()] == [("a", 0), ("c", 0), ("c", 1)]
    assert db.done_runs() == {("digits[0,1]", "a", 0), ("digits[0,1]", "c", 0), ("digits[0,1]", "c", 1)}


def test_missing_database_names_the_builder(tmp_path):
    with pytest.raises(MissingDataError, match="experiment=build_meta_db"):
        MetaDatabase(tmp_path / "none.jsonl").rows(missing_ok=False)


def test_shipped_database_is_real_and_consistent():
    from nag.meta.database import ASSETS

    path = ASSETS / "meta_db" / "digits_nb201.jsonl"
    rows = [json.loads(line) for line in open(path)]
    space = get_space("nb201")
    assert len(rows) >= 400
    assert all(space.is_valid(space.parse(r["arch"])) for r in rows)
    assert all(0.0 <= r["test_acc"] <= 100.0 for r in rows)
    assert len({r["test_acc"] for r in rows}) > 50  # measured, not constant
    held_out = "digits[0,2,4,6,8,9]"
    assert held_out not in {r["task"] for r in rows}  # transfer_nas's unseen task


def _write_metad2a(folder, use_str: bool):
    space = get_space("nb201")
    archs = space.sample(6, 0)
    data = {"acc": [50.0 + i for i in range(6)], "task": [0, 0, 0, 1, 1, 1]}
    if use_str:
        data["str"] = [space.format(a) for a in archs]
    else:
        data["x"] = [space.encode(a) for a in archs]
    torch.save(data, folder / "meta_train_tasks_predictor.pt")
    torch.save([[1, 2], [2, 3]], folder / "meta_train_task_lst.pt")
    torch.save([[torch.randn(30, 512)] for _ in range(3)], folder / "imgnet32bylabel.pt")
    return archs


@pytest.mark.parametrize("use_str", [True, False])
def test_metad2a_reader(tmp_path, use_str):
    archs = _write_metad2a(tmp_path, use_str)
    rows, feats = read_metad2a(tmp_path, n_per_class=20)
    space = get_space("nb201")
    assert [space.parse(r["arch"]) for r in rows] == archs
    assert [r["accuracy"] for r in rows] == [50.0 + i for i in range(6)]
    assert set(feats) == {"imagenet32/0", "imagenet32/1"}
    assert feats["imagenet32/0"].shape == (2, 20, 512)


def test_metad2a_reader_names_missing_files(tmp_path):
    with pytest.raises(MissingDataError, match="imgnet32bylabel.pt"):
        read_metad2a(tmp_path)


def test_x_to_string_matches_encoding():
    space = get_space("nb201")
    for a in space.sample(20, 1):
        assert space.parse(x_to_nb201_string(space.encode(a))) == a


def test_shipped_diverse_database_was_built_with_what_its_command_builds():
    """The README's rebuild command (experiment=build_meta_db's defaults) asks for the settings the
    shipped rows record, so it resumes the file instead of refusing it; a changed default shows here."""
    from nag.experiments.build_meta_db import built_with
    from nag.meta import MetaDatabase
    from nag.meta.database import ASSETS
    from nag.run import compose_config

    db = MetaDatabase(ASSETS / "meta_db" / "diverse_nb201.jsonl")
    assert db.built_with() == [built_with(compose_config(["experiment=build_meta_db"]))]
    assert db.built_with()[0]["space"] == {"C": 8, "N": 3} and db.built_with()[0]["train"]["max_steps"] == 40
