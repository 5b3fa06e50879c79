"""Search methods: budget semantics, exact resuming, BO pools.

The mechanics run on the synthetic NB201 table (tests/synthetic_table.py), so they are tested in
a clean clone; the tests of search quality on NB201 use the real table (``nb201_table``).
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nag.errors import ConfigError, UnknownNameError
from nag.evaluation import TableEvaluator
from nag.search import SearchContext, SearchState, build_method, list_methods, method_settings, run_search
from nag.search.bo import POOL_OPTIMIZERS, AcquisitionObjective, build_pool_optimizer
from nag.search.surrogate import fit_surrogate, predict_mean_std
from nag.spaces import get_space

SPACE = get_space("nb201")
C10 = "cifar10_test_acc"
FAST_BO = {"surrogate_params": {"steps": 40, "ensemble": 3}, "optimizer_params": {"pool_size": 60}}


@pytest.fixture(scope="module")
def table(synthetic_table):
    """The synthetic NB201 table: search mechanics need every cell, not real values."""
    return synthetic_table


def is_bo(method: str) -> bool:
    return method_settings(method)[0] == "bo"


def overrides(method: str) -> dict:
    return FAST_BO if is_bo(method) else {}


class UniformPrior:
    """Exact score of the uniform distribution over NB201 (its 6 op nodes are independent)."""

    def __init__(self):
        from nag.diffusion.sde import VESDE

        self.space, self.sde = SPACE, VESDE(0.1, 5.0)
        allowed = SPACE.allowed_ops().float()
        self.logp = (allowed / allowed.sum(1, keepdim=True)).log()  # [N, V], -inf where not allowed

    def score_fn(self, x, t):
        from nag.diffusion.sde import bcast

        rows = 2 * torch.eye(SPACE.num_ops) - 1  # the V one-hot states, [K, V]
        a, std = self.sde.marginal_coeffs(t)
        d = bcast(a, x).unsqueeze(2) * rows - x.unsqueeze(2)  # [B, N, K, V]
        var = bcast(std, x).unsqueeze(2) ** 2
        r = (self.logp - (d * d / (2 * var)).sum(-1)).softmax(-1)
        return (r.unsqueeze(-1) * d / var).sum(2)


class Killed(Exception):
    """A simulated kill of the process."""


class CountingEvaluator(TableEvaluator):
    """A TableEvaluator that records every real lookup and is killed at lookup number ``kill_at``."""

    def __init__(self, table, metric: str = C10, kill_at: int | None = None) -> None:
        super().__init__(table, metric)
        self.calls: list = []
        self.kill_at = kill_at

    def _evaluate(self, arch):
        if len(self.calls) + 1 == self.kill_at:
            raise Killed(f"killed while evaluating query {self.kill_at}")
        self.calls.append(arch)
        return super()._evaluate(arch)


@pytest.mark.parametrize("method", ["random", "evolution", "local", "bananas", "random_bo"])
def test_budget_is_distinct_queries(table, method):
    ev = TableEvaluator(table, C10)
    budget = 16 if is_bo(method) else 60
    res = run_search(build_method(method, SPACE, overrides(method)), ev, budget=budget, seed=3)
    archs = [q.arch for q in res.history]
    assert res.n_queries == len(set(archs)) == budget == ev.n_queries
    assert res.best_value == max(table.query(a, C10) for a in archs)
    assert res.history[res.queries_to_best - 1].arch == res.best_arch
    assert np.all(np.diff(res.best_so_far()) >= 0)


def test_target_stops_the_search(table):
    opt = float(table.values(C10).max())
    res = run_search(build_method("local", SPACE), TableEvaluator(table, C10), budget=2000, seed=0, target=opt)
    assert res.best_value == opt and res.n_queries == res.queries_to_best < 2000


def test_model_free_baselines_beat_random_search(nb201_table):
    """Real NB201, same seeds, 150 queries: evolution and local search find clearly better cells than random."""
    def mean_best(m):
        return np.mean([run_search(build_method(m, SPACE), TableEvaluator(nb201_table, C10), 150, seed=s).best_value
                        for s in range(6)])

    random = mean_best("random")
    for method in ("evolution", "local"):
        assert mean_best(method) > random + 0.3, method


# method -> (settings, budget, the query during which the run is killed). Small budgets; each kill
# falls inside a round: after the round's proposals (and for BO its surrogate fit and pool), before
# its state is saved (BO: in its second model-based round, so diffusion_bo has one pool round
# saved and its generated/mutation rhythm shows whether it resumed); "bananas_q3" is killed
# between two queries of one 3-arch round.
def resume_case(method: str) -> tuple[str, dict, int, int]:
    if method == "bananas_q3":
        return "bananas", {**FAST_BO, "q": 3, "n_init": 4}, 10, 6
    searcher, preset = method_settings(method)
    if searcher != "bo":
        return method, {"population": 10, "sample_size": 3} if method == "evolution" else {}, 30, 17
    params = {**FAST_BO, "optimizer_params": dict(FAST_BO["optimizer_params"])}
    if preset["optimizer"] in ("diffusion", "prior_filter"):
        params["optimizer_params"].update(prior=UniformPrior(), n_samples=32)
    return method, params, 9, 7


@pytest.mark.parametrize("method", sorted(list_methods()) + ["bananas_q3"])
def test_killed_search_resumes_exactly(table, tmp_path, method):
    """Killed in the middle of a round, the rerun evaluates only what the saved state lacks (never an
    arch evaluated before the kill again) and ends exactly as an uninterrupted run: same queries and
    values, rounds, generator state and method state (``extra``)."""
    name, params, budget, kill_at = resume_case(method)
    full_state = tmp_path / "full.json"
    full = run_search(build_method(name, SPACE, params), CountingEvaluator(table), budget, seed=7, state_path=full_state)
    assert full.n_queries == budget

    path = tmp_path / "state.json"
    with pytest.raises(Killed, match=f"query {kill_at}"):
        run_search(build_method(name, SPACE, params), CountingEvaluator(table, kill_at=kill_at), budget, seed=7,
                   state_path=path)
    saved = SearchState.load(path)
    before = [SPACE.parse(h["arch"]) for h in saved.history]
    assert 0 < len(before) < kill_at  # the round in progress is lost

    resumed_ev = CountingEvaluator(table)
    resumed = run_search(build_method(name, SPACE, params), resumed_ev, budget, seed=7, state_path=path)
    assert len(resumed_ev.calls) == budget - len(before)  # resumed, not restarted
    assert not set(resumed_ev.calls) & set(before)
    assert [(q.arch, q.value, q.index) for q in resumed.history] == [(q.arch, q.value, q.index) for q in full.history]
    assert resumed.best_arch == full.best_arch and resumed.rounds == full.rounds
    assert json.loads(path.read_text()) == json.loads(full_state.read_text())  # generator, extra, round, history


def test_a_finished_search_extends_with_the_draws_of_a_longer_run(table, tmp_path):
    """A larger budget on a finished state goes on with the saved generator: the same queries as
    one run with the larger budget, and only the new ones are evaluated."""
    longer = run_search(build_method("random", SPACE), CountingEvaluator(table), 12, seed=4)
    path = tmp_path / "state.json"
    run_search(build_method("random", SPACE), CountingEvaluator(table), 8, seed=4, state_path=path)
    more = CountingEvaluator(table)
    extended = run_search(build_method("random", SPACE), more, 12, seed=4, state_path=path)
    assert len(more.calls) == 4 and [q.arch for q in extended.history] == [q.arch for q in longer.history]


def test_resume_refuses_another_method(table, tmp_path):
    path = tmp_path / "state.json"
    run_search(build_method("random", SPACE), TableEvaluator(table, C10), 5, seed=0, state_path=path)
    with pytest.raises(ConfigError, match="method='random'.*Use another output folder or delete the state file"):
        run_search(build_method("local", SPACE), TableEvaluator(table, C10), 5, seed=0, state_path=path)
    with pytest.raises(ConfigError, match="seed=0, not method='random' seed=1"):
        run_search(build_method("random", SPACE), TableEvaluator(table, C10), 5, seed=1, state_path=path)


def test_unknown_names_list_the_known_ones():
    with pytest.raises(UnknownNameError, match="bananas"):
        build_method("hyperband", SPACE)
    with pytest.raises(UnknownNameError, match="mutation_pool"):
        build_method("bananas", SPACE, {"optimizer": "grid"})
    with pytest.raises(UnknownNameError, match="fast"):
        build_method("bananas", SPACE, {"surrogate": "gaussian_process"})
    assert {"random_pool", "mutation_pool", "diffusion", "prior_filter"} <= set(POOL_OPTIMIZERS.names())


def test_a_setting_the_surrogate_does_not_take_fails_before_the_search_and_lists_its_settings():
    with pytest.raises(ConfigError, match="surrogate 'gp' has no setting 'ensemble'; it accepts: encoding"):
        build_method("bananas", SPACE, {"surrogate": "gp", "surrogate_params": {"ensemble": 5}})
    with pytest.raises(ConfigError, match="'hiden'.*hidden"):
        build_method("bananas", SPACE, {"surrogate_params": {"hiden": 32}})
    with pytest.raises(ConfigError, match="guide surrogate 'fast' has no setting 'kernel'"):
        build_method("diffusion_bo", SPACE, {"optimizer_params": {"guide_params": {"kernel": "rbf"}}})


# ----- BO pieces -------------------------------------------------------------------------------
def _ctx(table, n: int, seed: int = 0) -> SearchContext:
    ev = TableEvaluator(table, C10)
    rng = np.random.default_rng(seed)
    for a in SPACE.sample(n, rng):
        ev.evaluate(a)
    return SearchContext(SPACE, ev, rng, {}, budget=1000)


@pytest.mark.parametrize("name", ["random_pool", "mutation_pool"])
def test_pools_hold_only_fresh_non_isomorphic_archs(table, name):
    ctx = _ctx(table, 30)
    pool = build_pool_optimizer(name, SPACE, pool_size=80).propose(ctx, None)
    assert 0 < len(pool) <= 80
    seen = {SPACE.canonical(q.arch) for q in ctx.history}
    keys = [SPACE.canonical(a) for a in pool]
    assert len(set(keys)) == len(keys) and not seen & set(keys)
    assert [ctx.canonical(a) for a in pool] == keys  # the context's memo gives the space's keys


def test_mutation_pool_stays_next_to_the_best(table):
    ctx = _ctx(table, 30)
    parents = [q.arch for q in sorted(ctx.history, key=lambda q: -q.value)[:3]]
    pool = build_pool_optimizer("mutation_pool", SPACE, pool_size=40, n_parents=3).propose(ctx, None)
    for a in pool:
        assert min(sum(x != y for x, y in zip(a, p)) for p in parents) == 1


@pytest.fixture(scope="module")
def nb201_classes() -> set:
    """The isomorphism keys of every NB201 cell."""
    return {SPACE.canonical(a) for a in SPACE.enumerate()}


def test_exhaustive_pool_is_every_fresh_isomorphism_class(table, nb201_classes):
    ctx = _ctx(table, 30)
    pool = build_pool_optimizer("exhaustive", SPACE).propose(ctx, None)
    seen = {SPACE.canonical(q.arch) for q in ctx.history}
    keys = [SPACE.canonical(a) for a in pool]
    assert len(set(keys)) == len(keys) and set(keys) == nb201_classes - seen


def test_exhaustive_pool_refuses_a_space_too_large_to_score_whole():
    with pytest.raises(ConfigError, match="'mbv3' is .* archs .*Use optimizer random_pool, mutation_pool or diffusion"):
        build_pool_optimizer("exhaustive", get_space("mbv3"))


def test_exhaustive_bo_ranks_every_fresh_class_each_round(table, nb201_classes):
    searcher = build_method("exhaustive_bo", SPACE, {"surrogate_params": {"steps": 40, "ensemble": 3}})
    sizes = []
    searcher.on_pool = lambda ctx, pool, *_: sizes.append((len(pool), len({ctx.canonical(q.arch) for q in ctx.history})))
    run_search(searcher, TableEvaluator(table, C10), budget=9, seed=0)
    assert len(sizes) == 9 - searcher.n_init
    assert all(pool == len(nb201_classes) - seen for pool, seen in sizes)


def test_fast_surrogate_ranks_unseen_archs(nb201_table):
    """Real NB201: fitted on 80 cells, the surrogate ranks 500 others with Spearman > 0.5."""
    table = nb201_table
    rng = np.random.default_rng(0)
    train = [table.archs[i] for i in rng.choice(len(table.archs), 80, replace=False)]
    test = [table.archs[i] for i in rng.choice(len(table.archs), 500, replace=False)]
    sur = fit_surrogate("fast", SPACE, train, np.array([table.query(a, C10) for a in train]), seed=0)
    mean, std = predict_mean_std(sur, test)
    assert std.shape == (500,) and np.all(std >= 0) and std.mean() > 0
    from scipy.stats import spearmanr

    assert spearmanr(mean, [table.query(a, C10) for a in test])[0] > 0.5


def test_bootstrap_members_disagree_more_and_stay_seeded(table):
    rng = np.random.default_rng(0)
    train = [table.archs[i] for i in rng.choice(len(table.archs), 30, replace=False)]
    y = np.array([table.query(a, C10) for a in train])
    test = [table.archs[i] for i in rng.choice(len(table.archs), 300, replace=False)]
    spread = {}
    for bootstrap in (False, True):
        runs = [predict_mean_std(fit_surrogate("fast", SPACE, train, y, seed=3, bootstrap=bootstrap), test) for _ in range(2)]
        assert np.array_equal(runs[0][0], runs[1][0])  # same seed, same fit
        spread[bootstrap] = runs[0][1].mean()
    assert spread[True] > 1.2 * spread[False], spread


def test_acquisition_objective_is_differentiable_and_noise_aware(table):
    rng = np.random.default_rng(1)
    train = SPACE.sample(40, rng)
    y = np.array([table.query(a, C10) for a in train])
    sur = fit_surrogate("fast", SPACE, train, y, noise_aware=True, steps=60, seed=0)
    obj = AcquisitionObjective(sur, kappa=1.0)
    x = torch.randn(4, SPACE.num_nodes, SPACE.num_ops, requires_grad=True)
    out = obj(x, torch.full((4,), 0.5))
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert out.shape == (4,) and torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert obj.sde_config == sur.sde_config and obj.space_name == "nb201"


def test_bo_q_evaluates_q_archs_per_round(table):
    res = run_search(build_method("bananas", SPACE, {**FAST_BO, "q": 3, "n_init": 4}), TableEvaluator(table, C10),
                     budget=13, seed=0)
    assert res.n_queries == 13 and res.rounds == 2 + 3  # n_init 4 = 3 + 1, then 9 = 3 x 3
    one = run_search(build_method("bananas", SPACE, {**FAST_BO, "q": 1, "n_init": 4}), TableEvaluator(table, C10),
                     budget=4, seed=0)
    assert [q.arch for q in res.history[:4]] == [q.arch for q in one.history]  # the same random start, q at a time


def test_guided_pool_prefers_what_the_surrogate_prefers(table):
    ctx = _ctx(table, 40, seed=2)
    archs = [q.arch for q in ctx.history]
    sur = fit_surrogate("fast", SPACE, archs, np.array([q.value for q in ctx.history]), noise_aware=True,
                        steps=150, seed=0)
    common = dict(pool_size=64, n_samples=64, prior=UniformPrior(), solver={"name": "pc", "steps": 30})
    guided = build_pool_optimizer("diffusion", SPACE, weight=20.0, **common).propose(ctx, sur)
    plain = build_pool_optimizer("prior_filter", SPACE, **common).propose(ctx, sur)
    assert guided and plain
    seen = {SPACE.canonical(a) for a in archs}
    assert not seen & {SPACE.canonical(a) for a in guided + plain}
    g, p = predict_mean_std(sur, guided)[0].mean(), predict_mean_std(sur, plain)[0].mean()
    assert g > p + 1.0  # percent accuracy, as predicted
    true = lambda pool: np.mean([table.query(a, C10) for a in pool])  # noqa: E731
    assert true(guided) > true(plain)


def test_diffusion_bo_runs_in_the_loop(table):
    extra: dict = {}
    res = run_search(
        build_method("diffusion_bo", SPACE, {"n_init": 5, "surrogate_params": {"steps": 40},
                                             "optimizer_params": {"prior": UniformPrior(), "n_samples": 32}}),
        TableEvaluator(table, C10), budget=8, seed=0, on_round=lambda ctx: extra.update(ctx.extra))
    assert res.n_queries == 8 and len({q.arch for q in res.history}) == 8
    # every BO query is attributed to the part of the pool that proposed it
    assert set(extra["sources"]) <= {"guided", "mutation"} and sum(extra["sources"].values()) == 8 - 5


def test_alternate_rounds_take_generated_then_mutation_pools(table):
    extra: dict = {}
    params = {"n_init": 5, "surrogate_params": {"steps": 40},
              "optimizer_params": {"prior": UniformPrior(), "n_samples": 32, "alternate": True}}
    per_round = []
    searcher = build_method("diffusion_bo", SPACE, params)
    searcher.on_pool = lambda ctx, pool, *_: per_round.append({searcher.optimizer.source_of(a) for a in pool})
    run_search(searcher, TableEvaluator(table, C10), budget=10, seed=0, on_round=lambda ctx: extra.update(ctx.extra))
    assert per_round == [{"guided"}, {"mutation"}] * 2 + [{"guided"}]
    assert extra["pool_rounds"] == 5 and extra["sources"] == {"guided": 3, "mutation": 2}
    with pytest.raises(ConfigError, match="alternate=True needs mutations > 0"):
        build_pool_optimizer("diffusion", SPACE, alternate=True, mutations=0)


def test_missing_default_prior_is_a_clear_error(table, monkeypatch):
    from nag.diffusion import prior as prior_mod
    from nag.errors import MissingDataError

    monkeypatch.setattr(prior_mod, "ASSETS", prior_mod.ASSETS.parent / "no_such_folder")
    with pytest.raises(MissingDataError, match="train_prior"):
        run_search(build_method("diffusion_bo", SPACE, {"n_init": 2}), TableEvaluator(table, C10), budget=3, seed=0)


def test_incumbent_mixture_is_highest_at_the_best_arch():
    from nag.diffusion.sde import VESDE
    from nag.modules.arch_data import to_state
    from nag.search.bo import IncumbentMixture

    best, other = SPACE.sample(2, np.random.default_rng(0))
    centres = to_state(SPACE, [best, other])
    mix = IncumbentMixture(VESDE(0.1, 5.0), centres, np.array([94.0, 80.0]), radius=1.0)
    far = to_state(SPACE, [n for n in SPACE.neighbours(best) if n != other][:1])
    t = torch.full((1,), 0.01)
    assert mix(centres[:1], t) > mix(centres[1:], t)  # the better arch weighs more
    assert mix(centres[:1], t) > mix(far, t)
    x = far.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(mix(x, t).sum(), x)
    assert (grad * (centres[:1] - far)).sum() > 0  # the guide pulls towards the best arch


def test_bo_with_the_gnn_predictor_surrogate(table):
    """The project's fit_predictor (GNN, Lightning) plugs in as the surrogate too."""
    params = {"n_init": 4, "surrogate": "predictor", "optimizer_params": {"pool_size": 20},
              "surrogate_params": {"ensemble": 2, "steps": 5, "noise_aware": False,
                                   "net_config": {"name": "gnn", "hidden": 16, "layers": 1}}}
    res = run_search(build_method("bananas", SPACE, params), TableEvaluator(table, C10), budget=5, seed=0)
    assert res.n_queries == 5 and len({q.arch for q in res.history}) == 5


def test_bo_hands_the_trainer_settings_to_a_lightning_surrogate_only():
    cpu = {"accelerator": "cpu", "devices": 1}
    assert build_method("bananas", SPACE, {"surrogate": "predictor", "trainer": cpu}).surrogate_params == {"trainer": cpu}
    assert "trainer" not in build_method("bananas", SPACE, {"surrogate": "fast", "trainer": cpu}).surrogate_params
    own = {"surrogate": "predictor", "trainer": cpu, "surrogate_params": {"trainer": {"accelerator": "auto"}}}
    assert build_method("bananas", SPACE, own).surrogate_params["trainer"] == {"accelerator": "auto"}  # the explicit one wins


@pytest.mark.slow  # 15,625 queries: ~20 s on a busy 2-core box
def test_random_search_can_exhaust_the_space(table):
    res = run_search(build_method("random", SPACE), TableEvaluator(table, C10), budget=10**6, seed=1)
    assert res.n_queries == SPACE.size == len({q.arch for q in res.history})
    assert res.best_value == float(table.values(C10).max())


def test_guidance_scale_ignores_the_broken_tail(table):
    from nag.search.bo import guidance_scale

    ctx = _ctx(table, 40, seed=4)
    values = np.array([q.value for q in ctx.history])
    assert 0 < guidance_scale(values) < values.std()


def test_bo_presets_share_the_initial_design_and_the_prior_sampler():
    """A fair comparison: every BO preset spends the same random queries before its first fit, and
    the presets that sample the prior use the same sampler."""
    bo = [m for m in list_methods() if is_bo(m)]
    assert {"random_bo", "bananas", "exhaustive_bo", "prior_filter", "diffusion_bo"} <= set(bo)
    # no preset restates BayesOpt's n_init or acquisition, nor the prior pools' solver: all share the defaults
    for m in bo:
        settings = method_settings(m)[1]
        assert "n_init" not in settings and "acquisition" not in settings, m
        assert "solver" not in settings.get("optimizer_params", {}), m
    assert build_method("bananas", SPACE).n_init == build_method("diffusion_bo", SPACE).n_init == 5


def test_diffusion_bo_differs_from_bananas_only_by_the_guided_samples():
    """diffusion_bo's mutation rounds rank a bananas-sized mutation pool with the same acquisition
    and surrogate: what it adds is the guided rounds, so the benchmark measures exactly that."""
    from nag.search.bo import MutationPool

    _, bananas = method_settings("bananas")
    _, diffusion = method_settings("diffusion_bo")
    assert diffusion.get("acquisition") == bananas.get("acquisition")
    assert diffusion.get("surrogate", "fast") == bananas.get("surrogate", "fast")
    assert diffusion.get("target_transform") == bananas.get("target_transform")
    pool_size = bananas.get("optimizer_params", {}).get("pool_size", MutationPool(SPACE).pool_size)
    assert diffusion["optimizer_params"]["mutations"] >= pool_size
    assert diffusion["optimizer_params"]["alternate"]


@pytest.mark.parametrize("normal_form", [True, False])
def test_bo_surrogate_reads_normal_forms(table, monkeypatch, normal_form):
    """With ``normal_form`` on, BO fits and ranks with ``space.normal_form`` of every arch; the
    searched and recorded archs stay as generated."""
    import nag.search.bo as bo

    seen: list = []
    real_fit, real_predict = bo.fit_surrogate, bo.predict_mean_std
    monkeypatch.setattr(bo, "fit_surrogate", lambda name, space, archs, *a, **k: (seen.extend(archs), real_fit(name, space, archs, *a, **k))[1])
    monkeypatch.setattr(bo, "predict_mean_std", lambda sur, archs: (seen.extend(archs), real_predict(sur, archs))[1])
    searcher = build_method("bananas", SPACE, {**FAST_BO, "normal_form": normal_form})
    result = run_search(searcher, TableEvaluator(table, "cifar10_test_acc"), budget=12, seed=0)
    assert seen
    is_normal = [SPACE.normal_form(a) == a for a in seen]
    assert all(is_normal) if normal_form else not all(is_normal)
    assert not all(SPACE.normal_form(q.arch) == q.arch for q in result.history)
