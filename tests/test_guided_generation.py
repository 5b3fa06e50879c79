"""guided_generation: scoring helpers, config errors, and end-to-end runs.

The fast tests run on the synthetic NB201 table (tests/synthetic_table.py) with a tiny untrained
prior (written with save_prior) or the exact score of the uniform NB201 distribution, so they
need neither ../shared nor the shipped prior; the slow test runs the experiment as documented,
with the shipped prior on the real table, and checks its figures.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nag.diffusion.guidance import DiversityGuide, Guide, GuidedSampler, GuideSpec
from nag.diffusion.sampling import SamplerSettings, build_sampler
from nag.diffusion.sde import VESDE, bcast
from nag.errors import ConfigError, MissingDataError
from nag.experiments import run_experiment
from nag.metrics import constraint_scores, sample_scores
from nag.modules.predictor import PredictorOptions, fit_on_table
from nag.run import CliError, compose_config
from nag.schema import validate
from nag.spaces import get_space
from nag.tables.table import load_benchmark

ACC = "cifar10_test_acc"
PARAMS = "params_M_cifar10"


@pytest.fixture(scope="module")
def space():
    return get_space("nb201")


@pytest.fixture(scope="module")
def table(synthetic_csv, space):
    return load_benchmark({"path": str(synthetic_csv)}, space)


def test_load_benchmark_needs_a_path(space, tmp_path):
    with pytest.raises(MissingDataError, match="benchmark.path is not set; pass benchmark.path="):
        load_benchmark({"path": None}, space)
    with pytest.raises(MissingDataError, match="benchmark table not found at .*absent.csv.*config key benchmark.path"):
        load_benchmark({"path": str(tmp_path / "absent.csv")}, space)


def test_guide_spec_of_an_extra_objective():
    g = GuideSpec(**{"metric": PARAMS, "direction": "min", "weight": 2.0, "constraint": "<=0.5"})
    assert g.target == PARAMS and g.bound == ("<=", 0.5) and g.sense == "min"
    assert g.satisfied(np.array([0.4, 0.5, 0.6])).tolist() == [True, True, False]
    assert GuideSpec(metric=PARAMS, constraint=(">=", 1.0)).satisfied(np.array([0.5, 1.0])).tolist() == [False, True]
    with pytest.raises(ConfigError, match="guide has no setting 'wieght'; it accepts: .*Did you mean 'weight'"):
        GuideSpec(metric=PARAMS, wieght=1.0)
    with pytest.raises(ConfigError, match="cannot read constraint '<5'; write e.g. '<=5.0'"):
        GuideSpec(metric=PARAMS, constraint="<5")
    with pytest.raises(ConfigError, match="direction 'target' needs goal"):
        GuideSpec(metric=PARAMS, direction="target")


def test_extra_guides_must_name_their_column(nb201_csv):
    with pytest.raises(CliError, match="extra_guides.*names its table column"):
        compose_config(["experiment=guided_generation", f"benchmark.path={nb201_csv}", "extra_guides=[{weight: 1.0}]"])


def test_split_is_seeded_and_disjoint(table):
    a, b = table.split(100, 300, seed=3)
    a2, b2 = table.split(100, 300, seed=3)
    assert len(a) == 100 and len(b) == 300 and not set(a) & set(b)
    assert (a == a2).all() and (b == b2).all()
    assert not (table.split(100, 300, seed=4)[0] == a).all()
    with pytest.raises(ConfigError, match="n_labeled"):
        table.split(len(table), 1, seed=0)


def test_sample_scores_on_true_values(table):
    values = table.values(ACC)
    order = np.argsort(-values)
    best = [table.archs[i] for i in order[:50]]
    s = sample_scores(best + best[:10], table, ACC)
    assert s["frac_top5"] == 1.0 and s["frac_top1"] == 1.0
    assert s["max_true"] == pytest.approx(values.max()) and s["uniqueness"] == pytest.approx(50 / 60)
    worst = [table.archs[i] for i in order[-40:]]
    s = sample_scores(worst, table, ACC)
    assert s["frac_top5"] == 0.0 and s["mean_true"] == pytest.approx(values[order[-40:]].mean())
    everything = sample_scores(table.archs, table, ACC)
    assert everything["frac_top5"] == pytest.approx(0.05, abs=2e-3) and everything["uniqueness"] == 1.0
    # lower is better: the smallest nets are the "top" by params
    small = sample_scores([table.archs[i] for i in np.argsort(table.values(PARAMS))[:20]], table, PARAMS, False)
    assert small["frac_top1"] == 1.0


def test_constraint_scores(table):
    params = table.values(PARAMS)
    acc = table.values(ACC)
    small = np.flatnonzero(params <= 0.5)
    big = np.flatnonzero(params > 0.5)
    archs = [table.archs[i] for i in np.concatenate([small[:30], big[:10]])]
    s = constraint_scores(archs, table, ACC, [GuideSpec(metric=PARAMS, constraint=("<=", 0.5))])
    assert s[f"{PARAMS}_frac_satisfied"] == pytest.approx(0.75) and s["frac_feasible"] == pytest.approx(0.75)
    assert s["mean_true_feasible"] == pytest.approx(acc[small[:30]].mean())
    assert s["table_best_feasible"] == pytest.approx(acc[small].max())
    best_small = small[np.argsort(-acc[small])[:5]]
    s = constraint_scores([table.archs[i] for i in best_small], table, ACC, [GuideSpec(metric=PARAMS, constraint=("<=", 0.5))])
    assert s["frac_top5_feasible"] == 1.0
    assert "frac_feasible" not in constraint_scores(archs, table, ACC, [GuideSpec(metric=PARAMS, direction="min")])


def test_guides_and_sampler_from_config(table, space):
    pred = fit_on_table(table, np.arange(40), [ACC, PARAMS], VESDE(0.1, 5.0).config(), steps=2)
    guides = [GuideSpec(weight=3.0).build(pred, ACC), GuideSpec(metric=PARAMS, direction="min").build(pred)]
    assert [type(g) for g in guides] == [Guide, Guide]
    assert guides[0].index == 0 and guides[0].weight == 3.0 and guides[1].index == 1 and guides[1].direction == "min"
    prior = UniformPrior(space)
    sampler = build_sampler(prior, {"diversity": {"weight": 0.5}}, guides)
    assert [type(g) for g in sampler.guides] == [Guide, Guide, DiversityGuide]
    assert len(build_sampler(prior, {"diversity": {"weight": 0.0}}, guides).guides) == 2
    with pytest.raises(ConfigError, match="diversity guide has no setting 'bandwith'.*Did you mean 'bandwidth'"):
        SamplerSettings(diversity={"weight": 1.0, "bandwith": 2.0})
    with pytest.raises(ConfigError, match="predictor options has no setting 'stepz'; it accepts: .*steps"):
        validate(PredictorOptions, {"stepz": 2})


class UniformPrior:
    """Exact score of the uniform distribution over NB201 (each node uniform over its allowed ops)."""

    def __init__(self, space):
        self.space, self.sde = space, VESDE(0.1, 5.0)
        allowed = space.allowed_ops()
        self.logp = torch.where(allowed, 0.0, -torch.inf)  # [N, V]
        self.rows = 2 * torch.eye(space.num_ops) - 1  # candidate clean rows [V, V]

    def score_fn(self, x, t):
        a, std = self.sde.marginal_coeffs(t)
        d = bcast(a, x).unsqueeze(2) * self.rows - x.unsqueeze(2)  # [B, N, V(cand), V]
        var = bcast(std, x).unsqueeze(2) ** 2
        r = (self.logp - (d * d / (2 * var)).sum(-1)).softmax(-1)
        return (r.unsqueeze(-1) * d / var).sum(2)


def test_guidance_with_a_real_predictor_beats_unguided(table, space):
    """A noise-aware predictor fit on 300 table archs steers the exact uniform prior to better archs."""
    prior = UniformPrior(space)
    labeled, _ = table.split(300, 1, seed=0)
    pred = fit_on_table(table, labeled, [ACC], prior.sde.config(), seed=0, steps=150)
    solver = {"name": "pc", "steps": 40}
    unguided = GuidedSampler(prior, (), solver=solver).sample(64, seed=1)
    guided = GuidedSampler(prior, [GuideSpec(weight=2.0).build(pred, ACC)], solver=solver).sample(64, seed=1)
    u, g = sample_scores(unguided, table, ACC), sample_scores(guided, table, ACC)
    assert g["mean_true"] > u["mean_true"] + 3.0
    assert g["frac_top5"] > u["frac_top5"] + 0.1


# ----- end to end ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_prior(tmp_path_factory, space):
    """An untrained 1-block prior: enough to run the pipeline, not to judge it."""
    from nag.diffusion.prior import Prior, save_prior
    from nag.modules.nets import build_score_net

    net_config = {"name": "dag_transformer", "d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32}
    torch.manual_seed(0)
    net = build_score_net(net_config, space.num_nodes, space.num_ops, space.adjacency, space.positions)
    return save_prior(Prior(space, VESDE(0.1, 5.0), net, net_config), tmp_path_factory.mktemp("prior") / "prior.pt")


FAST = ["n_labeled=48", "n_heldout=48", "n=6", "batch_size=6", "solver.steps=3", "predictor.steps=3"]


def test_experiment_end_to_end(synthetic_csv, tiny_prior, tmp_path):
    cfg = compose_config(
        ["experiment=guided_generation", f"benchmark.path={synthetic_csv}", f"prior.path={tiny_prior}", *FAST,
         "diversity.weight=0.1"]
    )
    results = run_experiment(cfg, out_dir=tmp_path)
    keys = {"frac_top5", "frac_top1", "mean_true", "max_true", "uniqueness", "predictor_spearman",
            "predictor_spearman_t0.1", "predictor_spearman_t0.5", "wall_s", "guided_archs_per_s",
            "guidance_weight_factor"}
    keys |= {f"unguided_{k}" for k in ("frac_top5", "frac_top1", "mean_true", "max_true", "uniqueness")}
    assert keys <= set(results)
    assert json.loads((tmp_path / "results.json").read_text()) == results
    for name in ("guided.txt", "unguided.txt"):
        lines = (tmp_path / name).read_text().splitlines()
        assert lines[0] == f"arch\t{ACC}" and len(lines) == 7
        arch, acc = lines[1].split("\t")
        assert 0 < float(acc) < 100 and arch.startswith("|")
    values = [float(line.split("\t")[1]) for line in (tmp_path / "guided.txt").read_text().splitlines()[1:]]
    assert results["mean_true"] == pytest.approx(np.mean(values), abs=1e-3)
    assert 0 <= results["frac_top5"] <= 1 and 0 < results["uniqueness"] <= 1


def test_collapse_guard_in_the_experiment(synthetic_csv, tiny_prior, tmp_path):
    """The config's min_uniqueness reaches the sampler: a strong weight leaves duplicates among 12
    samples; with a floor of 1 the guard weakens it until all are distinct (or gives up at 0.9^5)."""
    common = ["experiment=guided_generation", f"benchmark.path={synthetic_csv}", f"prior.path={tiny_prior}", *FAST,
              "n=12", "guidance.weight=60"]
    off = run_experiment(compose_config([*common, "min_uniqueness=null"]), out_dir=tmp_path / "off")
    assert off["guidance_weight_factor"] == 1.0 and off["uniqueness"] < 1.0
    guarded = run_experiment(compose_config([*common, "min_uniqueness=1.0"]), out_dir=tmp_path / "on")
    assert 0.9**5 - 1e-12 <= guarded["guidance_weight_factor"] < 1.0
    assert guarded["uniqueness"] == 1.0 or guarded["guidance_weight_factor"] == pytest.approx(0.9**5)


def test_experiment_multi_objective_keys(synthetic_csv, tiny_prior, tmp_path):
    cfg = compose_config(
        ["experiment=guided_generation", f"benchmark.path={synthetic_csv}", f"prior.path={tiny_prior}", *FAST,
         f"extra_guides=[{{metric: {PARAMS}, direction: min, weight: 1.0, constraint: '<=0.5'}}]"]
    )
    results = run_experiment(cfg, out_dir=tmp_path)
    for prefix in ("", "unguided_"):
        for k in (f"{PARAMS}_frac_satisfied", f"{PARAMS}_mean_true", "frac_feasible", "mean_true_feasible",
                  "frac_top5_feasible", "table_best_feasible"):
            assert prefix + k in results
    assert f"{PARAMS}_predictor_spearman" in results
    assert (tmp_path / "guided.txt").read_text().splitlines()[0] == f"arch\t{ACC}\t{PARAMS}"


def test_experiment_refuses_unknown_metric(synthetic_csv, tiny_prior, tmp_path):
    cfg = compose_config(
        ["experiment=guided_generation", f"benchmark.path={synthetic_csv}", f"prior.path={tiny_prior}", *FAST,
         "benchmark.metric=cifar11_acc"]
    )
    with pytest.raises(ConfigError, match="benchmark.metric='cifar11_acc' is not a column of .*cifar10_test_acc"):
        run_experiment(cfg, out_dir=tmp_path)


@pytest.mark.slow
def test_shipped_prior_guidance_reaches_the_top(nb201_csv, tmp_path):
    """The documented run, at n=128: guidance puts most samples in the true top 5%."""
    from nag.diffusion.prior import default_prior_path

    assert default_prior_path("nb201", must_exist=False).is_file(), "nag/assets/priors/nb201.pt is a shipped asset"
    cfg = compose_config(["experiment=guided_generation", f"benchmark.path={nb201_csv}", "n=128", "batch_size=128"])
    r = run_experiment(cfg, out_dir=tmp_path)
    assert r["predictor_spearman"] > 0.8
    assert r["frac_top5"] >= 0.5 and r["unguided_frac_top5"] < 0.2
    assert r["mean_true"] > r["unguided_mean_true"] and r["uniqueness"] >= 0.5


def test_sources_join_the_predictors_training_rows_with_masked_targets(table):
    from nag.search.sources import source_target, with_sources
    from nag.search.sources import Source

    labeled = [table.archs[i] for i in range(5)]
    y = {ACC: table.values(ACC)[:5]}
    src = Source("c100", tuple(table.archs[3:8]), table.values("cifar100_test_acc")[3:8])
    archs, cols = with_sources(labeled, y, [src])
    assert archs == [table.archs[i] for i in range(8)] and source_target(src) == "source:c100"
    assert np.array_equal(cols[ACC][:5], y[ACC]) and np.isnan(cols[ACC][5:]).all()
    assert np.isnan(cols["source:c100"][:3]).all()
    assert np.array_equal(cols["source:c100"][3:], src.values)


def test_experiment_with_a_source_column(nb201_csv, tiny_prior, tmp_path):
    cfg = compose_config(["experiment=guided_generation", f"benchmark.path={nb201_csv}", f"prior.path={tiny_prior}", *FAST,
                          "source.metrics=[cifar100_test_acc]", "source.max_rows=80"])
    results = run_experiment(cfg, out_dir=tmp_path)
    assert results["n_source"] == 80 and results["guidance_unit"] > 0 and 0 <= results["frac_top5"] <= 1
    with pytest.raises(ConfigError, match=r"'cifar10_test_acc' is the target metric itself.*one of \[.*'cifar100_test_acc'"):
        run_experiment(compose_config(["experiment=guided_generation", f"benchmark.path={nb201_csv}",
                                       f"prior.path={tiny_prior}", *FAST, f"source.metrics=[{ACC}]"]), out_dir=tmp_path / "b")
