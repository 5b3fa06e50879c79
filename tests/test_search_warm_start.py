"""Warm start from related tasks: loading sources, their errors, the transfer surrogate, bo_nas with a source."""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from nag.errors import ConfigError
from nag.experiments import run_experiment
from nag.run import compose_config
from nag.evaluation import TableEvaluator
from nag.search import build_method, run_search
from nag.search.sources import Source, load_sources, meta_db_sources, path_sources, table_sources
from nag.search.surrogate import fit_surrogate, predict_mean_std
from nag.search.targets import rank_gauss
from nag.search.transfer import WarmStart, source_weights
from nag.spaces import get_space

SPACE = get_space("nb201")
C10, C100 = "cifar10_test_acc", "cifar100_test_acc"
REPO = Path(__file__).resolve().parents[1]
META_DB = REPO / "nag" / "assets" / "meta_db" / "digits_nb201.jsonl"
FAST = {"steps": 60, "ensemble": 3}


@pytest.fixture(scope="module")
def table(nb201_table):
    return nb201_table


# ----- loading and errors ---------------------------------------------------------------------
def test_a_source_column_must_be_another_column_of_the_table(table):
    with pytest.raises(ConfigError, match=r"'cifar10_acc' is not a column .* its columns are \[.*'cifar100_test_acc'"):
        table_sources(table, ["cifar10_acc"], C100)
    with pytest.raises(ConfigError, match=r"'cifar100_test_acc' is the target metric itself; .* one of \[.*'cifar10_test"):
        load_sources({"metrics": [C10, C100]}, SPACE, table, C100)
    (src,) = table_sources(table, [C10], C100)
    assert len(src) == len(table) and src.name == C10 and src.values.max() == pytest.approx(94.3733)


def test_max_rows_draws_the_same_rows_for_the_same_seed(table):
    a = load_sources({"metrics": [C10, "params_M_cifar10"], "max_rows": 100}, SPACE, table, C100, seed=3)
    b = load_sources({"metrics": [C10, "params_M_cifar10"], "max_rows": 100}, SPACE, table, C100, seed=3)
    c = load_sources({"metrics": [C10], "max_rows": 100}, SPACE, table, C100, seed=4)
    assert [len(s) for s in a] == [100, 100]
    assert a[0].archs == b[0].archs and a[0].archs != c[0].archs
    assert all(table.query(arch, C10) == v for arch, v in zip(a[0].archs, a[0].values))
    with pytest.raises(ConfigError, match="max_rows must be >= 1 or null"):
        load_sources({"metrics": [C10], "max_rows": 0}, SPACE, table, C100)


def test_source_config_errors_say_what_is_accepted(table):
    with pytest.raises(ConfigError, match=r"unknown source option\(s\) \['metric'\]; accepted: \['metrics'"):
        load_sources({"metric": [C10]}, SPACE, table, C100)
    with pytest.raises(ConfigError, match="set evaluator=table and benchmark.path"):
        load_sources({"metrics": [C10]}, SPACE, None, None)
    with pytest.raises(ConfigError, match=r"source.paths\[0\] must be \{path: <table.csv>, metric: <column>\}"):
        path_sources(["other.csv"], SPACE)
    assert load_sources({"metrics": [], "paths": [], "meta_db": None, "max_rows": None}, SPACE, table, C100) == []


def test_other_tables_are_sources_with_their_metric(table, tmp_path):
    path = tmp_path / "slice.csv"
    with path.open("w", newline="") as f:  # 60 rows of the NB201 table as "another table"
        w = csv.writer(f)
        w.writerow(["arch", "acc"])
        for i in range(60):
            w.writerow([SPACE.format(table.archs[i]), table.values(C10)[i]])
    (src,) = load_sources({"paths": [{"path": str(path), "metric": "acc"}]}, SPACE)
    assert len(src) == 60 and src.name.endswith(":acc")
    with pytest.raises(ConfigError, match=r"source.paths\[0\].metric: 'cifar10_test_acc' is not a column .* \['acc'\]"):
        load_sources({"paths": [{"path": str(path), "metric": C10}]}, SPACE)


def test_meta_database_rows_are_one_source_per_task():
    sources = meta_db_sources(META_DB, SPACE)
    rows = [json.loads(line) for line in META_DB.read_text().splitlines()]
    assert len(sources) == len({r["task"] for r in rows}) and sum(len(s) for s in sources) == len(rows)
    first = sources[0]
    task_rows = [r for r in rows if f"meta:{r['task']}" == first.name]
    assert sorted(first.values.tolist()) == sorted(r["val_acc"] for r in task_rows)
    with pytest.raises(ConfigError, match="meta_metric must be one of .*'test_acc'"):
        meta_db_sources(META_DB, SPACE, metric="accuracy")
    with pytest.raises(ConfigError, match="are not tasks of .* its tasks are"):
        meta_db_sources(META_DB, SPACE, tasks=["digits[0,1]"])
    (one,) = load_sources({"meta_db": str(META_DB), "meta_tasks": [rows[0]["task"]], "meta_metric": "test_acc"}, SPACE)
    assert len(one) == sum(r["task"] == rows[0]["task"] for r in rows)


# ----- the transfer surrogate -----------------------------------------------------------------
def test_source_weights_trust_the_prior_with_few_points_and_the_data_with_many():
    rng = np.random.default_rng(0)
    p = rng.normal(size=(200, 2))
    z = 2.0 * p[:, 0] - 1.0 * p[:, 1] + 0.3
    w, b = source_weights(p, z, strength=0.0)
    np.testing.assert_allclose(w, [2.0, -1.0], atol=1e-6)
    assert b == pytest.approx(0.3, abs=1e-6)
    w, _ = source_weights(p[:3], z[:3], strength=1e6)
    np.testing.assert_allclose(w, [0.5, 0.5], atol=1e-3)  # no evidence yet: equal, positive weights


def test_design_starts_from_the_sources_best_archs():
    archs = SPACE.sample(30, np.random.default_rng(0))
    a = Source("a", tuple(archs[:20]), np.arange(20.0))
    b = Source("b", tuple(archs[10:]), np.arange(20.0))
    design = WarmStart([a, b], SPACE).design()
    # archs 28, 29: the best of b, which a does not hold; arch 19, a's best, is mediocre in b
    assert set(design) == set(archs) and design[:3] == [archs[29], archs[28], archs[27]]
    assert design.index(archs[19]) < design.index(archs[9])
    with pytest.raises(ConfigError, match="at least one source"):
        WarmStart([], SPACE)


def test_transfer_surrogate_ranks_the_target_better_than_a_cold_one(table):
    """C10 results (300 random cells) + 12 C100 observations rank C100 better than the 12 alone."""
    rng = np.random.default_rng(0)
    (source,) = load_sources({"metrics": [C10], "max_rows": 300}, SPACE, table, C100, seed=0)
    train = SPACE.sample(12, rng)
    y = rank_gauss(np.array([table.query(a, C100) for a in train]))
    test = SPACE.sample(400, rng)
    truth = np.array([table.query(a, C100) for a in test])
    warm = WarmStart([source], SPACE, "fast", FAST)
    transfer = warm.fit(lambda r: fit_surrogate("fast", SPACE, train, r, seed=1, **FAST), train, y,
                        {"name": "ve", "sigma_min": 0.1, "sigma_max": 5.0})
    cold = fit_surrogate("fast", SPACE, train, y, seed=1, **FAST)
    rho_warm = spearmanr(predict_mean_std(transfer, test)[0], truth).statistic
    rho_cold = spearmanr(predict_mean_std(cold, test)[0], truth).statistic
    assert rho_warm > rho_cold + 0.1 and rho_warm > 0.7, (rho_warm, rho_cold)
    x = torch.randn(4, SPACE.num_nodes, SPACE.num_ops, requires_grad=True)  # differentiable: it can guide
    mean, var = transfer.predict(x, torch.full((4,), 0.5))
    (grad,) = torch.autograd.grad(mean.sum(), x)
    assert mean.shape == var.shape == (4, 1) and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_bo_with_all_source_rows_starts_at_the_sources_best(table):
    (source,) = load_sources({"metrics": [C10]}, SPACE, table, C100)
    searcher = build_method("bananas", SPACE, {"sources": [source], "surrogate_params": FAST})
    res = run_search(searcher, TableEvaluator(table, C100), budget=8, seed=0, target=float(table.values(C100).max()))
    assert res.best_value == pytest.approx(73.5133) and res.n_queries <= 5  # the C100 optimum is C10's 3rd best class
    first = res.history[0].arch
    assert table.query(first, C10) == pytest.approx(table.values(C10).max())


def test_warm_bo_resumes_to_the_same_queries(table, tmp_path):
    sources = load_sources({"metrics": [C10], "max_rows": 60}, SPACE, table, C100, seed=1)
    settings = {"sources": sources, "surrogate_params": FAST, "optimizer_params": {"pool_size": 40}, "n_init": 3}
    full = run_search(build_method("bananas", SPACE, settings), TableEvaluator(table, C100), 9, seed=1)
    state = tmp_path / "state.json"
    run_search(build_method("bananas", SPACE, settings), TableEvaluator(table, C100), 9, seed=1, state_path=state,
               max_rounds=5)
    resumed = run_search(build_method("bananas", SPACE, settings), TableEvaluator(table, C100), 9, seed=1, state_path=state)
    assert [q.arch for q in resumed.history] == [q.arch for q in full.history]


# ----- experiments --------------------------------------------------------------------------
BO = ["experiment=bo_nas", "evaluator=table", "wandb.mode=disabled"]


def test_bo_nas_with_sources_end_to_end(nb201_csv, tmp_path):
    """The issue's command: diffusion_bo (the default method) with two source columns on a tiny budget;
    the target is out of reach, so the search runs a guided and a mutation round after its design."""
    cfg = compose_config([*BO, f"benchmark.path={nb201_csv}", f"benchmark.metric={C100}",
                          f"source.metrics=[{C10},params_M_cifar10]", "source.max_rows=100", "budget=7", "seed=2",
                          "target=100", "+method_params.surrogate_params.steps=40"])
    results = run_experiment(cfg, out_dir=tmp_path)
    assert {"best_arch", "best_value", "n_queries", "queries_to_best", "n_source"} <= set(results)
    assert results["n_source"] == 200 and results["n_queries"] == 7
    assert json.loads((tmp_path / "results.json").read_text())["n_source"] == 200
    state = json.loads((tmp_path / "search_state.json").read_text())
    assert state["extra"]["sources"] == {"guided": 1, "mutation": 1}  # the rounds after the 5 design queries


def test_bo_nas_source_errors_name_the_columns(nb201_csv, tmp_path):
    base = [*BO, f"benchmark.path={nb201_csv}", f"benchmark.metric={C100}", "budget=3"]
    with pytest.raises(ConfigError, match=r"is the target metric itself.*one of \[.*'cifar10_test_acc'"):
        run_experiment(compose_config([*base, f"source.metrics=[{C100}]"]), out_dir=tmp_path / "a")
    with pytest.raises(ConfigError, match=r"'c10' is not a column .* its columns are \[.*'cifar10_test_acc'"):
        run_experiment(compose_config([*base, "source.metrics=[c10]"]), out_dir=tmp_path / "b")
    with pytest.raises(ConfigError, match="warm-starts a BO method .*method=evolution takes no sources"):
        run_experiment(compose_config([*base, f"source.metrics=[{C10}]", "method=evolution"]), out_dir=tmp_path / "c")


def test_bo_nas_cold_reports_no_source_rows(nb201_csv, tmp_path):
    cfg = compose_config([*BO, f"benchmark.path={nb201_csv}", "method=random", "budget=3"])
    assert run_experiment(cfg, out_dir=tmp_path)["n_source"] == 0


def test_nb201_benchmark_warm_method_finds_the_optimum_from_all_source_rows(nb201_csv):
    sys.path.insert(0, str(REPO / "benchmarks"))
    from nb201_search import run_one

    for column in (C10, C100):
        row = run_one(str(nb201_csv), "bananas_warm", column, 0, 50, {})
        assert row["method"] == "bananas_warm" and row["values"][-1] == pytest.approx(float(max(row["values"])))
        assert len(row["values"]) <= 5, row["values"]  # each optimum is the other column's 3rd best class
