"""Evaluators (cache, budget counting, registry), acquisition functions and the search state file."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from nag.errors import ConfigError, UnknownNameError
from nag.evaluation import EVALUATORS, TableEvaluator, TrainEvalEvaluator, build_evaluator
from nag.search import SearchState
from nag.search.acquisition import ACQUISITIONS, get_acquisition
from nag.spaces import get_space

SPACE = get_space("nb201")
ARCHS = SPACE.enumerate()


@pytest.fixture(scope="module")
def table(nb201_table):
    return nb201_table


class CountingTable:
    """A table stand-in that counts lookups (to check caching): value = index of the arch."""

    metrics = ["idx"]

    def __init__(self) -> None:
        self.calls = 0

    def query(self, arch, metric):
        self.calls += 1
        return float(ARCHS.index(arch))


# ----- evaluators ---------------------------------------------------------------------------
def test_table_evaluator_reads_the_table_and_counts_distinct_queries(table):
    ev = TableEvaluator(table, "cifar10_test_acc")
    a, b = ARCHS[0], ARCHS[1]
    assert ev.evaluate(a) == table.query(a, "cifar10_test_acc")
    ev.evaluate(b)
    ev.evaluate(a)
    assert ev.n_queries == 2
    assert [(q.arch, q.index) for q in ev.history] == [(a, 1), (b, 2)]
    assert ev.best().value == max(table.query(x, "cifar10_test_acc") for x in (a, b))


def test_unknown_metric_names_the_known_ones(table):
    with pytest.raises(ConfigError, match="cifar100_test_acc"):
        TableEvaluator(table, "cifar11_acc")


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 30), min_size=1, max_size=60))
def test_repeated_queries_are_free(indices):
    tab = CountingTable()
    ev = TableEvaluator(tab, "idx")
    for i in indices:
        assert ev.evaluate(ARCHS[i]) == float(i)
    distinct = list(dict.fromkeys(indices))
    assert ev.n_queries == tab.calls == len(distinct)
    assert [q.arch for q in ev.history] == [ARCHS[i] for i in distinct]
    assert [q.index for q in ev.history] == list(range(1, len(distinct) + 1))
    assert ev.best().value == max(indices)


def test_registry_and_unknown_evaluator():
    assert {"table", "train_eval"} <= set(EVALUATORS.names())
    with pytest.raises(UnknownNameError, match="table"):
        EVALUATORS.get("oracle")


def test_table_evaluator_from_config_needs_a_path():
    from omegaconf import OmegaConf

    with pytest.raises(ConfigError, match="benchmark.path"):
        build_evaluator("table", SPACE, OmegaConf.create({"benchmark": {"path": None}}))


def test_train_eval_evaluator_really_trains_once_per_arch():
    from nag.data import get_task
    from nag.evaluation.training import TrainBudget

    space = get_space("nb201", C=4, N=1)
    ev = TrainEvalEvaluator(space, get_task("digits"), TrainBudget(epochs=1, max_steps=3, batch_size=64), seed=0)
    arch = ARCHS[123]
    value = ev.evaluate(arch)
    assert 0.0 <= value <= 100.0 and ev.n_queries == 1
    assert {"val_acc", "test_acc"} <= set(ev.info[arch]) and ev.info[arch]["val_acc"] == value
    wall = ev.info[arch]["wall_s"]
    assert ev.evaluate(arch) == value and ev.n_queries == 1 and ev.info[arch]["wall_s"] == wall


# ----- acquisition functions ----------------------------------------------------------------
def test_expected_improvement_matches_monte_carlo():
    rng = np.random.default_rng(0)
    mean, std, best = np.array([0.0, 1.0, -0.5]), np.array([1.0, 0.5, 2.0]), 0.3
    draws = mean + std * rng.standard_normal((200_000, 3))
    mc = np.maximum(draws - best, 0).mean(0)
    np.testing.assert_allclose(get_acquisition("ei")(mean, std, best), mc, rtol=0.02)


def test_pi_ucb_ts():
    mean, std = np.array([0.0, 1.0]), np.array([1.0, 1.0])
    np.testing.assert_allclose(get_acquisition("pi")(mean, std, 0.5), norm.cdf((mean - 0.5) / std))
    np.testing.assert_allclose(get_acquisition("ucb", kappa=2.0)(mean, std, 0.0), mean + 2 * std)
    ts = get_acquisition("ts")
    a = ts(mean, std, 0.0, rng=np.random.default_rng(1))
    b = ts(mean, std, 0.0, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, mean)
    np.testing.assert_allclose(ts(mean, np.zeros(2), 0.0, rng=np.random.default_rng(2)), mean)
    assert {"ei", "pi", "ucb", "ts"} <= set(ACQUISITIONS.names())
    with pytest.raises(UnknownNameError, match="ucb"):
        get_acquisition("gp-hedge")


# ----- state file ---------------------------------------------------------------------------
def test_state_round_trip_is_atomic_and_refuses_another_method(tmp_path, table):
    ev = TableEvaluator(table, "cifar10_test_acc")
    for a in ARCHS[:3]:
        ev.evaluate(a)
    rng = np.random.default_rng(5)
    rng.random(7)
    state = SearchState(method="random", seed=5, round=3, extra={"k": [1, 2]})
    state.capture(SPACE, ev, rng)
    path = tmp_path / "state.json"
    state.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temp file left behind
    assert json.loads(path.read_text())["history"][0]["arch"] == SPACE.format(ARCHS[0])
    loaded = SearchState.load(path)
    fresh = TableEvaluator(table, "cifar10_test_acc")
    rng2 = loaded.restore(SPACE, fresh)
    assert fresh.history == ev.history and loaded.extra == {"k": [1, 2]} and loaded.round == 3
    assert rng2.random() == rng.random()
    with pytest.raises(ConfigError, match="method='random'"):
        loaded.check_matches("evolution", 5, path)
    with pytest.raises(ConfigError, match="fresh evaluator"):
        loaded.restore(SPACE, ev)
