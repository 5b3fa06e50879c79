"""Executors and the row store, without Ray: settings, errors, rows written once, batched queries.

The Ray executor itself (parallel runs, killed workers and drivers, clusters) is tested in
tests/test_executor_ray.py (slow).
"""
from __future__ import annotations

import sys

import pytest

from nag.errors import ConfigError, UnknownNameError
from nag.executor import Job, LocalExecutor, build_executor, fill_rows, list_executors
from nag.io import RowStore, read_jsonl
from nag.evaluation import TableEvaluator, TrainEvalEvaluator
from nag.search import build_method, run_search
from nag.spaces import get_space

from test_cli import assert_usage_error, nag_run

SPACE = get_space("nb201")


def square(x: int, offset: int = 0) -> dict:
    return {"k": x, "y": x * x + offset}


# ----- the row store ---------------------------------------------------------------------------
def test_row_store_writes_each_key_once_and_reads_the_first(tmp_path):
    store = RowStore(tmp_path / "rows.jsonl", ("task", "arch"))
    assert store.rows() == [] and len(store) == 0 and ("t", "a") not in store
    assert store.append({"task": "t", "arch": "a", "v": 1})
    assert not store.append({"task": "t", "arch": "a", "v": 2})  # already there: not written again
    assert store.append({"task": "t", "arch": "b", "v": 3})
    assert len(read_jsonl(store.path)) == 2
    with open(store.path, "a") as fh:  # a second writer's copy of a row, then a torn line of a killed one
        fh.write('{"task": "t", "arch": "a", "v": 9}\n{"task": "t", "arch": "c", "v"')
    fresh = RowStore(store.path, ("task", "arch"))
    assert [r["v"] for r in fresh.rows()] == [1, 3] and fresh.keys() == {("t", "a"), ("t", "b")}
    assert fresh.append({"task": "t", "arch": "c", "v": 4})  # the torn fragment is left behind on its own line
    assert [r["v"] for r in RowStore(store.path, ("task", "arch")).rows()] == [1, 3, 4]


def test_row_store_keys_with_list_values_and_missing_key_fields(tmp_path):
    store = RowStore(tmp_path / "rows.jsonl", ("classes", "arch"))
    store.append({"classes": [0, 1], "arch": "a"})
    assert ((0, 1), "a") in store
    with pytest.raises(KeyError, match="no key field 'arch'"):
        store.append({"classes": [0, 1]})


# ----- executors -------------------------------------------------------------------------------
def test_local_executor_runs_jobs_in_order_and_shares_objects_as_they_are():
    with build_executor(None) as ex:
        assert isinstance(ex, LocalExecutor) and ex.slots == 1
        big = object()
        assert ex.share(big) is big
        out = list(ex.run([Job(i, square, (i,), {"offset": 1}) for i in range(3)]))
    assert [(job.key, res["y"]) for job, res in out] == [(0, 1), (1, 2), (2, 5)]
    assert {"local", "ray"} <= set(list_executors())


def test_executor_config_errors_name_what_is_accepted():
    with pytest.raises(UnknownNameError, match="unknown executor 'slurm'.*local, ray"):
        build_executor({"name": "slurm"})
    with pytest.raises(ConfigError, match="executor 'local' has no setting 'num_workers'"):
        build_executor({"name": "local", "num_workers": 2})
    with pytest.raises(ConfigError, match="needs a name"):
        build_executor({"num_workers": 2})


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"num_workers": 0}, "num_workers must be an int >= 1"),
        ({"num_cpus": 0}, "num_cpus must be a number > 0"),
        ({"num_gpus": -1}, "num_gpus must be a number >= 0"),
        ({"max_retries": 1.5}, "setting 'max_retries' = 1.5 is not accepted: expected an int"),
        ({"address": ""}, "address must be null, 'auto'"),
        ({"num_worker": 2}, "has no setting 'num_worker'.*Did you mean 'num_workers'"),
    ],
)
def test_ray_settings_are_checked_before_anything_starts(settings, message):
    with pytest.raises(ConfigError, match=message):
        build_executor({"name": "ray", **settings})


def test_ray_executor_without_ray_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError, as where it is not installed
    with pytest.raises(ConfigError, match=r"pip install 'nag\[ray\]'.*executor=local"):
        build_executor({"name": "ray", "num_workers": 2})


def test_cli_executor_errors_are_one_line(tmp_path):
    base = ["experiment=build_meta_db", "meta_db.n_tasks=1", "meta_db.archs_per_task=1"]
    assert_usage_error(nag_run(*base, "executor=rya", cwd=tmp_path), "'rya'", "local", "ray")
    assert_usage_error(nag_run(*base, "executor=ray", "executor.num_workers=0", cwd=tmp_path), "num_workers", ">= 1")
    assert_usage_error(nag_run(*base, "executor.num_workers=2", cwd=tmp_path), "'executor.num_workers'")


# ----- rows written once, as they finish -------------------------------------------------------
def test_fill_rows_runs_only_missing_keys_and_writes_each_once(tmp_path):
    store = RowStore(tmp_path / "rows.jsonl", "k")
    store.append({"k": 1, "y": 1})
    seen = []
    jobs = [Job(i, square, (i,)) for i in (0, 1, 2, 2)]
    written = fill_rows(store, jobs, LocalExecutor(), lambda job, res: res, progress=False, on_row=seen.append)
    assert written == 2 and [r["k"] for r in seen] == [0, 2]
    assert sorted(r["k"] for r in read_jsonl(store.path)) == [0, 1, 2]
    assert fill_rows(store, jobs, LocalExecutor(), lambda job, res: res, progress=False) == 0
    with pytest.raises(ConfigError, match="key 5 for the job 3"):
        fill_rows(store, [Job(3, square, (3,))], LocalExecutor(), lambda job, res: {"k": 5}, progress=False)


def test_train_eval_evaluator_reads_finished_trainings_back_instead_of_retraining(tmp_path, monkeypatch):
    import nag.evaluation.evaluators

    calls = []

    def fake_train_eval(space, arch, task, budget=None, seed=0):
        calls.append(space.format(arch))
        return {"val_acc": float(len(calls)), "test_acc": 50.0, "wall_s": 0.1, "train_loss": float("nan")}

    monkeypatch.setattr(nag.evaluation.evaluators, "train_eval", fake_train_eval)
    archs = SPACE.sample(3, 0)
    store = RowStore(tmp_path / "evaluations.jsonl", "arch")
    first = TrainEvalEvaluator(SPACE, task=None, seed=0, store=store)
    assert first.evaluate_many(archs[:2]) == [1.0, 2.0]
    resumed = TrainEvalEvaluator(SPACE, task=None, seed=0, store=RowStore(store.path, "arch"))  # a rerun
    assert resumed.evaluate_many(archs) == [1.0, 2.0, 3.0]
    assert calls == [SPACE.format(a) for a in archs]  # each arch trained once
    assert resumed.info[archs[0]]["test_acc"] == 50.0 and resumed.info[archs[0]]["train_loss"] != 0.0


def test_random_search_batches_draw_the_same_archs_as_one_at_a_time(nb201_table):
    def history(batch: int) -> list:
        res = run_search(build_method("random", SPACE, {"batch": batch}), TableEvaluator(nb201_table, "cifar10_test_acc"),
                         budget=7, seed=3)
        return [(q.arch, q.value, q.index) for q in res.history], res.rounds

    one, rounds_one = history(1)
    three, rounds_three = history(3)
    assert one == three and (rounds_one, rounds_three) == (7, 3)
    with pytest.raises(ConfigError, match="batch >= 1"):
        build_method("random", SPACE, {"batch": 0})


def test_a_driver_that_only_dispatches_jobs_does_not_import_lightning():
    """executor=ray's driver never trains: importing Lightning (~3 s) there only delays Ray's start."""
    import subprocess

    code = (
        "import sys, nag.experiments.build_meta_db, nag.executor.ray, nag.modules.trainer; "
        "print('lightning' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
