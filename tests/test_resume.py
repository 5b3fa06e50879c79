"""Kill and resume every resumable experiment, at the awkward points.

Each test runs the experiment uninterrupted, then kills a second run at one point (in the middle
of a round or a training; after the state is written but before its row; halfway through a row,
which leaves a torn last line), reruns it in the same folder and checks two things:
  - it resumed: the work done after the restart (table lookups, trainings, fits) is only what the
    killed run had not finished, and nothing finished before the kill is done again;
  - it resumed exactly: rows, state, weights and results equal the uninterrupted run's (times excepted).
The kill-and-resume tests of ``run_search`` itself (every method) are in test_search_methods.py,
of train_prior in test_generate.py.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from kills import Killed, killing_append, stray_temp_file
from nag.errors import ConfigError
from nag.experiments import run_experiment
from nag.io import append_jsonl as real_append
from nag.io import read_jsonl
from nag.run import compose_config

KILLS = ["mid_round", "state_written_row_not", "torn_last_line"]


def without(results: dict, *keys: str) -> dict:
    return {k: v for k, v in results.items() if k not in keys}


def rows_of(path: Path, torn: bool = False) -> list[dict]:
    """The rows of a JSONL file; a torn line left by a kill is now inside the file and is skipped."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = read_jsonl(path)
    assert any("unreadable line" in str(w.message) for w in caught) == torn
    return rows


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """``run(name, overrides) -> (run folder, results)``: each uninterrupted run made once per module."""
    runs: dict[str, tuple[Path, dict]] = {}

    def run(name: str, overrides: list[str]) -> tuple[Path, dict]:
        if name not in runs:
            out = tmp_path_factory.mktemp(name)
            runs[name] = (out, run_experiment(compose_config(overrides), out_dir=out))
        return runs[name]

    return run


def kill_appends(monkeypatch, module, when, torn: bool) -> None:
    """Make ``module.append_jsonl`` die at the first row ``when(row)``: before writing it, or halfway."""
    monkeypatch.setattr(module, "append_jsonl", killing_append(real_append, when, torn=torn))


# ----- bo_nas (table) ----------------------------------------------------------------------------
class Lookups(list):
    """Archs looked up in the table; ``kill_at = k`` kills the run as lookup k starts."""

    kill_at: int | None = None


@pytest.fixture
def lookups(monkeypatch) -> Lookups:
    from nag.evaluation import TableEvaluator

    log = Lookups()
    real = TableEvaluator._evaluate

    def counted(self, arch):
        if log.kill_at is not None and len(log) + 1 == log.kill_at:
            log.kill_at = None
            raise Killed(f"killed while evaluating query {len(log) + 1}")
        log.append(arch)
        return real(self, arch)

    monkeypatch.setattr(TableEvaluator, "_evaluate", counted)
    return log


BO_NAS = ["experiment=bo_nas", "evaluator=table", "method=bananas", "budget=8", "seed=3", "bo.n_init=3",
          "bo.ensemble=2", "bo.pool_size=40", "+method_params.surrogate_params.steps=40"]


@pytest.mark.parametrize("kill", KILLS)
def test_bo_nas_killed_resumes_exactly(synthetic_csv, uninterrupted, tmp_path, monkeypatch, lookups, kill):
    """Killed at query 5 (the second model-based round): during the lookup, or once its state is
    saved but before its history row is written (lost, or torn, with a stray temp file of the
    next state write)."""
    import nag.experiments.bo_nas as bo_nas

    overrides = [*BO_NAS, f"benchmark.path={synthetic_csv}"]
    full_dir, full = uninterrupted("bo_nas", overrides)
    cfg = compose_config(overrides)
    lookups.clear()
    run = tmp_path / "run"
    if kill == "mid_round":
        lookups.kill_at = 5
    else:
        kill_appends(monkeypatch, bo_nas, lambda row: row["query"] == 5, torn=kill == "torn_last_line")
    with pytest.raises(Killed, match="killed while"):
        run_experiment(cfg, out_dir=run)
    monkeypatch.setattr(bo_nas, "append_jsonl", real_append)
    saved = json.loads((run / "search_state.json").read_text())["history"]
    assert len(saved) == (4 if kill == "mid_round" else 5)
    assert len(read_jsonl(run / "history.jsonl")) == 4  # the row of query 5 never made it
    if kill == "torn_last_line":
        stray_temp_file(run / "search_state.json")
    lookups.clear()

    resumed = run_experiment(cfg, out_dir=run)
    assert len(lookups) == 8 - len(saved)  # resumed, not restarted
    assert not {bo_nas.build_space(cfg).format(a) for a in lookups} & {h["arch"] for h in saved}
    assert without(resumed, "wall_s") == without(full, "wall_s")
    assert rows_of(run / "history.jsonl", torn=kill == "torn_last_line") == rows_of(full_dir / "history.jsonl")
    state, full_state = (json.loads((d / "search_state.json").read_text()) for d in (run, full_dir))
    assert state == full_state  # history, generator, round, method state


def test_bo_nas_results_on_a_table(synthetic_csv, synthetic_table, tmp_path):
    """The documented keys; optimum and regret are read from the table it searched."""
    cfg = compose_config(["experiment=bo_nas", "evaluator=table", f"benchmark.path={synthetic_csv}",
                          "method=evolution", "budget=8", "seed=3", "+method_params.population=4",
                          "+method_params.sample_size=2"])
    results = run_experiment(cfg, out_dir=tmp_path)
    assert set(results) == {"method", "best_arch", "best_value", "n_queries", "queries_to_best", "rounds", "wall_s",
                            "optimum", "regret", "n_source"}
    assert results["n_source"] == 0  # a cold start
    values = synthetic_table.values("cifar10_test_acc")
    assert results["n_queries"] == 8 and 1 <= results["queries_to_best"] <= 8 and results["method"] == "evolution"
    assert results["optimum"] == values.max() and results["regret"] == pytest.approx(values.max() - results["best_value"])
    rows = read_jsonl(tmp_path / "history.jsonl")
    assert [r["query"] for r in rows] == list(range(1, 9))
    assert max(r["value"] for r in rows) == results["best_value"]
    assert all(synthetic_table.query(r["arch"], "cifar10_test_acc") == r["value"] for r in rows)
    best = rows[results["queries_to_best"] - 1]
    assert best["arch"] == results["best_arch"] and best["value"] == results["best_value"]


# ----- random_search (real training) -------------------------------------------------------------
RANDOM_SEARCH = ["experiment=random_search", "budget=3", "train.epochs=1", "train.max_steps=2", "space.C=4", "space.N=1"]


@pytest.mark.parametrize("kill", KILLS)
def test_random_search_killed_resumes_exactly(uninterrupted, tmp_path, monkeypatch, trainings, kill):
    """Killed while training arch 2, or after arch 2's state is saved but before its row is written."""
    import nag.experiments.random_search as random_search

    full_dir, full = uninterrupted("random_search", RANDOM_SEARCH)
    cfg = compose_config(RANDOM_SEARCH)
    trainings.clear()

    run = tmp_path / "run"
    if kill == "mid_round":
        trainings.kill_at = 2
    else:
        kill_appends(monkeypatch, random_search, lambda row: row["i"] == 1, torn=kill == "torn_last_line")
    with pytest.raises(Killed, match="killed while"):
        run_experiment(cfg, out_dir=run)
    monkeypatch.setattr(random_search, "append_jsonl", real_append)
    before = trainings.archs()
    assert len(before) == (1 if kill == "mid_round" else 2)
    trainings.clear()

    resumed = run_experiment(cfg, out_dir=run)
    assert len(trainings) == 3 - len(before) and not set(trainings.archs()) & set(before)  # resumed, not restarted
    rows = rows_of(run / "history.jsonl", torn=kill == "torn_last_line")
    full_rows = rows_of(full_dir / "history.jsonl")
    assert [without(r, "wall_s") for r in rows] == [without(r, "wall_s") for r in full_rows]
    assert resumed["wall_s"] == pytest.approx(sum(r["wall_s"] for r in rows))
    assert without(resumed, "wall_s") == without(full, "wall_s")
    state, full_state = (json.loads((d / "search_state.json").read_text()) for d in (run, full_dir))
    assert state["rng"] == full_state["rng"] and state["round"] == full_state["round"]
    assert [h["arch"] for h in state["history"]] == [h["arch"] for h in full_state["history"]]


def test_random_search_extends_and_refuses_another_seed(tmp_path, trainings):
    """A larger budget trains only the new archs, the ones an uninterrupted larger run draws; a
    state of another seed is refused, not mixed in."""
    run_experiment(compose_config([*RANDOM_SEARCH, "budget=1"]), out_dir=tmp_path / "run")
    first = trainings.archs()
    trainings.clear()
    run_experiment(compose_config([*RANDOM_SEARCH, "budget=2"]), out_dir=tmp_path / "run")
    assert len(trainings) == 1 and trainings.archs()[0] not in first
    longer = [r["arch"] for r in read_jsonl(tmp_path / "run" / "history.jsonl")]
    run_experiment(compose_config([*RANDOM_SEARCH, "budget=2"]), out_dir=tmp_path / "fresh")
    assert [r["arch"] for r in read_jsonl(tmp_path / "fresh" / "history.jsonl")] == longer
    with pytest.raises(ConfigError, match="belongs to method='random' seed=0, not method='random' seed=1"):
        run_experiment(compose_config([*RANDOM_SEARCH, "budget=2", "seed=1"]), out_dir=tmp_path / "run")


# ----- build_meta_db -------------------------------------------------------------------------------
META_DB = ["experiment=build_meta_db", "meta_db.n_tasks=2", "meta_db.archs_per_task=2", "train.epochs=1",
           "train.max_steps=2", "space.C=4"]


@pytest.mark.parametrize("kill", ["mid_training", "row_lost", "torn_last_line"])
def test_build_meta_db_killed_resumes_exactly(uninterrupted, tmp_path, monkeypatch, trainings, kill):
    """Killed while training pair 3 of 4, or once it is trained but before (or while) its row is written."""
    import nag.io as database  # rows are written by nag.io.RowStore

    full_dir, full = uninterrupted("build_meta_db", META_DB)
    cfg = compose_config(META_DB)
    full_rows = read_jsonl(full_dir / "meta_db.jsonl")
    assert full["n_trained_now"] == len(full_rows) == 4
    trainings.clear()

    run = tmp_path / "run"
    if kill == "mid_training":
        trainings.kill_at = 3
    else:
        third = (full_rows[2]["task"], full_rows[2]["arch"])
        kill_appends(monkeypatch, database, lambda row: (row["task"], row["arch"]) == third, torn=kill == "torn_last_line")
    with pytest.raises(Killed, match="killed while"):
        run_experiment(cfg, out_dir=run)
    monkeypatch.setattr(database, "append_jsonl", real_append)
    assert len(read_jsonl(run / "meta_db.jsonl")) == 2
    trainings.clear()

    resumed = run_experiment(cfg, out_dir=run)
    assert trainings.archs() == [r["arch"] for r in full_rows[2:]]  # only the two pairs without a row
    rows = rows_of(run / "meta_db.jsonl", torn=kill == "torn_last_line")
    assert [without(r, "wall_s") for r in rows] == [without(r, "wall_s") for r in full_rows]
    assert resumed["n_trained_now"] == 2
    assert without(resumed, "wall_s", "n_trained_now", "path") == without(full, "wall_s", "n_trained_now", "path")


def test_build_meta_db_refuses_to_resume_with_another_network_or_budget(uninterrupted, tmp_path, trainings):
    """A file's rows record the macro network and budget they were built with; a rerun that asks for
    others would count those runs as done (or mix two databases), so it stops before training."""
    full_dir, _ = uninterrupted("build_meta_db", META_DB)
    rows = read_jsonl(full_dir / "meta_db.jsonl")
    assert {json.dumps(r["built_with"], sort_keys=True) for r in rows} == {json.dumps(rows[0]["built_with"], sort_keys=True)}
    assert rows[0]["built_with"]["space"]["C"] == 4 and rows[0]["built_with"]["train"]["max_steps"] == 2
    trainings.clear()
    path = f"meta_db.path={full_dir / 'meta_db.jsonl'}"
    with pytest.raises(ConfigError, match=r"space\.C=4 \(asked: 8\).*new file"):
        run_experiment(compose_config([*META_DB, "space.C=8", path]), out_dir=tmp_path / "other")
    with pytest.raises(ConfigError, match=r"train\.max_steps=2 \(asked: 3\)"):
        run_experiment(compose_config([*META_DB, "train.max_steps=3", path]), out_dir=tmp_path / "other")
    assert trainings.archs() == [] and read_jsonl(full_dir / "meta_db.jsonl") == rows  # nothing trained, nothing lost
    resumed = run_experiment(compose_config([*META_DB, path]), out_dir=tmp_path / "same")
    assert resumed["n_trained_now"] == 0


# ----- transfer_nas --------------------------------------------------------------------------------
TRANSFER = ["experiment=transfer_nas", "n_candidates=8", "batch_size=8", "top_k=2", "solver.steps=2",
            "train.epochs=1", "train.max_steps=2", "n_per_class=2"]


@pytest.mark.parametrize("kill", ["mid_training", "row_lost", "torn_last_line"])
def test_transfer_nas_killed_resumes_exactly(uninterrupted, tmp_path, monkeypatch, trainings, kill):
    """Killed while training arch 3 of 4 (the first random one), or before / while writing its row."""
    import nag.io as transfer_nas  # rows are written by nag.io.RowStore

    full_dir, full = uninterrupted("transfer_nas", TRANSFER)
    cfg = compose_config(TRANSFER)
    full_rows = read_jsonl(full_dir / "history.jsonl")
    assert full["n_trained"] == 4 and [r["group"] for r in full_rows] == ["guided", "guided", "random", "random"]
    trainings.clear()

    run = tmp_path / "run"
    if kill == "mid_training":
        trainings.kill_at = 3
    else:
        third = (full_rows[2]["group"], full_rows[2]["arch"])
        kill_appends(monkeypatch, transfer_nas, lambda row: (row["group"], row["arch"]) == third,
                     torn=kill == "torn_last_line")
    with pytest.raises(Killed, match="killed while"):
        run_experiment(cfg, out_dir=run)
    monkeypatch.setattr(transfer_nas, "append_jsonl", real_append)
    trainings.clear()

    resumed = run_experiment(cfg, out_dir=run)
    assert trainings.archs() == [r["arch"] for r in full_rows[2:]]  # resumed, not restarted
    rows = rows_of(run / "history.jsonl", torn=kill == "torn_last_line")
    assert [without(r, "wall_s") for r in rows] == [without(r, "wall_s") for r in full_rows]
    assert without(resumed, "wall_s", "generate_s") == without(full, "wall_s", "generate_s")


# ----- train_meta_predictor ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_meta_db(tmp_path_factory) -> Path:
    """4 tasks x 4 archs of the shipped digits database: task features and fits stay cheap."""
    from nag.experiments.train_meta_predictor import ASSETS

    rows = read_jsonl(ASSETS / "meta_db" / "digits_nb201.jsonl")
    tasks = list(dict.fromkeys(r["task"] for r in rows))[:4]
    keep = [r for t in tasks for r in [r for r in rows if r["task"] == t][:4]]
    path = tmp_path_factory.mktemp("meta_db") / "small.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in keep))
    return path


def meta_predictor_overrides(db: Path, *extra: str) -> list[str]:
    return ["experiment=train_meta_predictor", f"meta_db.path={db}", "meta_predictor.steps=5",
            "meta_predictor.ensemble=1", "folds=2", "n_per_class=2", *extra]


def meta_predictor_cfg(db: Path, *extra: str):
    return compose_config(meta_predictor_overrides(db, *extra))


class Fits(list):
    """Fits started (their number of rows); ``kill_at = k`` kills the run as fit k starts."""

    kill_at: int | None = None


@pytest.fixture
def fits(monkeypatch) -> Fits:
    import nag.experiments.train_meta_predictor as module

    log = Fits()
    real = module.fit_rows

    def counted(cfg, space, sde, rows, features, seed):
        if log.kill_at is not None and len(log) + 1 == log.kill_at:
            log.kill_at = None
            raise Killed("killed while fitting")
        log.append(len(rows))
        return real(cfg, space, sde, rows, features, seed)

    monkeypatch.setattr(module, "fit_rows", counted)
    return log


@pytest.fixture(scope="module")
def meta_full(small_meta_db, uninterrupted) -> tuple[Path, dict]:
    """The uninterrupted run: two leave-task-out folds (each fits the meta-predictor and the
    unconditioned network on 2 of the 4 tasks), then the final fit."""
    return uninterrupted("train_meta_predictor", meta_predictor_overrides(small_meta_db))


@pytest.mark.parametrize("kill", KILLS)
def test_train_meta_predictor_killed_resumes_exactly(small_meta_db, meta_full, tmp_path, monkeypatch, fits, kill):
    """Killed during the second fold's first fit, after the final checkpoint is written but before
    its row, or halfway through the second fold's row."""
    import nag.experiments.train_meta_predictor as module

    full_dir, full = meta_full
    cfg = meta_predictor_cfg(small_meta_db)
    run = tmp_path / "run"
    if kill == "mid_round":
        fits.kill_at = 3
    elif kill == "state_written_row_not":
        kill_appends(monkeypatch, module, lambda row: row["fit"] == "final", torn=False)
    else:
        kill_appends(monkeypatch, module, lambda row: len(read_jsonl(run / "progress.jsonl", missing_ok=True)) == 1,
                     torn=True)
    with pytest.raises(Killed, match="killed while"):
        run_experiment(cfg, out_dir=run)
    monkeypatch.setattr(module, "append_jsonl", real_append)
    finished = len(read_jsonl(run / "progress.jsonl"))
    assert finished == (2 if kill == "state_written_row_not" else 1)
    assert (run / "meta_predictor.pt").is_file() == (kill == "state_written_row_not")
    fits.clear()

    resumed = run_experiment(cfg, out_dir=run)
    assert fits == [8, 8, 8, 8, 16][2 * finished:]  # resumed: only the fits not recorded, each on its rows
    assert without(resumed, "wall_s", "fit_s") == without(full, "wall_s", "fit_s")
    rows = rows_of(run / "progress.jsonl", torn=kill == "torn_last_line")
    assert [without(r, "fit_s") for r in rows] == [without(r, "fit_s") for r in read_jsonl(full_dir / "progress.jsonl")]
    a, b = (torch.load(d / "meta_predictor.pt", weights_only=False)["state_dict"] for d in (full_dir, run))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_train_meta_predictor_finished_run_is_not_refitted_and_other_settings_are_refused(
    small_meta_db, meta_full, fits, tmp_path
):
    """A finished run reruns without a fit and gives the same results; another number of folds or
    another setting is refused before any work."""
    import shutil

    full_dir, full = meta_full
    run = tmp_path / "run"
    shutil.copytree(full_dir, run)
    assert without(run_experiment(meta_predictor_cfg(small_meta_db), out_dir=run), "wall_s") == without(full, "wall_s")
    assert fits == []
    rows = read_jsonl(run / "progress.jsonl")
    assert [r["fit"] for r in rows] == ["fold:0", "fold:1", "final"]
    per_task = [s["meta"] for r in rows[:2] for s in r["scores"].values() if s["meta"] is not None]
    assert full["heldout_spearman"] == pytest.approx(sum(per_task) / len(per_task))
    with pytest.raises(ConfigError, match="other settings of folds. Use another output folder .*delete progress.jsonl"):
        run_experiment(meta_predictor_cfg(small_meta_db, "folds=3"), out_dir=run)
    with pytest.raises(ConfigError, match="other settings of meta_predictor. Use another output folder .*delete progress.jsonl"):
        run_experiment(meta_predictor_cfg(small_meta_db, "meta_predictor.steps=6"), out_dir=run)
    assert fits == []  # refused before any work
