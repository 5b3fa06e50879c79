"""Generation beyond NB201: the shipped mbv3 prior and CPU-latency predictor, cost measurement
(nag.evaluation.measure, nag.modules.cost_predictor), multi-objective guided generation with a Pareto front (experiment=pareto_generation),
and a third-party space (examples/custom_space) that trains a prior and generates with nag as is."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import nag.spaces
from nag.evaluation.latency import LatencyMeter, Timing, timing_like
from nag.evaluation.measure import COST_METRICS, measure_accuracies, measure_costs, read_costs
from nag.metrics import regression_scores
from nag.modules.cost_predictor import cost_predictor_info, default_predictor_path, fit_cost_predictor, load_cost_predictor, resolve_predictor_path, save_cost_predictor, split_rows
from nag.tables.readers import read_table_costs, table_arch_fn
from nag.diffusion.guidance import Guide
from nag.diffusion.prior import default_prior_path, load_prior
from nag.errors import ConfigError, MissingDataError
from nag.experiments import run_experiment
from nag.evaluation.measure import interleave
from nag.experiments.pareto_generation import Axis, PredictorGuide, front_axes, guide_specs, prediction_columns
from nag.metrics import hypervolume_2d, pareto_mask
from nag.registry import Registry
from nag.run import compose_config
from nag.spaces import get_space
from nag.spaces.mbv3 import MBv3Space

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "custom_space"
OFA_READER = {"method": "from_ofa", "columns": ["depths", "kernel_sizes", "expand_ratios"]}


@pytest.fixture(scope="module")
def small() -> MBv3Space:
    """mbv3 at 32 px: every build and timing is cheap."""
    return MBv3Space(resolution=32)


# ----- nag.evaluation.measure: measuring -------------------------------------------------------------------
def test_measure_costs_is_resumable_and_refuses_another_context(small, tmp_path):
    path = tmp_path / "costs.jsonl"
    archs = small.sample(5, 0)
    timing = Timing(runs=1, warmup=0)
    first = measure_costs(small, archs[:3], path, ["latency_ms", "flops_M"], timing, progress=False)
    assert [r["arch"] for r in first] == [small.format(a) for a in archs[:3]]
    assert all(r["latency_ms"] > 0 and r["flops_M"] > 0 for r in first)
    rows = measure_costs(small, archs, path, ["latency_ms", "flops_M"], timing, progress=False)
    assert len(path.read_text().splitlines()) == 5  # only the 2 new archs were measured
    assert rows[:3] == first and rows[2]["context"]["torch_threads"] == torch.get_num_threads()
    got, y = read_costs(path, small, ["latency_ms", "flops_M"])
    assert got == archs and np.allclose(y["flops_M"], [r["flops_M"] for r in rows])
    # FLOPs are exact: the file agrees with space.cost
    assert y["flops_M"][0] == pytest.approx(small.cost(archs[0])["flops_M"])
    scale = rows[0]["reference_ms"]
    assert all(r["reference_ms"] == scale for r in rows)  # the resumed run kept the file's ms scale
    with pytest.raises(ConfigError, match="mix scales"):
        measure_costs(small, archs, path, ["latency_ms"], timing.with_(reference_ms=scale + 1), progress=False)
    with pytest.raises(ConfigError, match="measured under"):
        measure_costs(small, archs, path, ["latency_ms"], Timing(runs=2, warmup=0), progress=False)
    with pytest.raises(ConfigError, match="has no"):
        measure_costs(small, archs, path, ["params_M"], timing, progress=False)


def test_measure_costs_any_space_and_errors(tmp_path):
    """Latency is timed through the contract (build + default_input_shape), so any space can be timed."""
    nb201 = get_space("nb201", C=4, N=1)
    archs = nb201.sample(2, 0)
    rows = measure_costs(nb201, archs, tmp_path / "b.jsonl", ["params_M", "latency_ms"], Timing(runs=2, warmup=1), progress=False)
    assert rows[0]["params_M"] == pytest.approx(nb201.cost(archs[0])["params_M"])
    assert rows[0]["latency_ms"] > 0 and rows[0]["reference_ms"] > 0
    assert rows[0]["context"]["reference"] == nb201.format(nb201.sample(1, 0)[0])
    with pytest.raises(ConfigError, match="accepted"):
        measure_costs(nb201, archs, tmp_path / "a.jsonl", ["energy_mJ"], progress=False)
    with pytest.raises(ConfigError, match="runs"):
        Timing(runs=0)
    assert set(COST_METRICS) == {"latency_ms", "params_M", "flops_M"}
    with pytest.raises(MissingDataError, match="no costs file at .*none.jsonl; write one with .*measure_costs"):
        read_costs(tmp_path / "none.jsonl", nb201, ["params_M"])


def test_measure_accuracies_trains_for_real_and_resumes(small, tmp_path, monkeypatch):
    """Rows of really trained archs: appended per arch, not retrained on a rerun, refused under another budget."""
    import nag.evaluation.measure as measure
    from nag.data import get_task

    calls = []
    train_eval = measure.train_eval
    monkeypatch.setattr(measure, "train_eval", lambda space, arch, *a, **k: calls.append(arch) or train_eval(space, arch, *a, **k))
    task, budget, path = get_task("digits"), {"epochs": 1, "batch_size": 32, "max_steps": 2}, tmp_path / "acc.jsonl"
    archs = small.sample(2, 0)
    first = measure_accuracies(small, archs[:1], path, task, budget, progress=False)
    rows = measure_accuracies(small, archs, path, task, budget, progress=False)
    assert calls == archs  # the rerun trained only the new arch
    assert rows[0] == first[0] and len(path.read_text().splitlines()) == 2
    for r, a in zip(rows, archs):
        assert 0 <= r["val_acc"] <= 100 and 0 <= r["test_acc"] <= 100 and r["train_s"] > 0
        assert r["flops_M"] == pytest.approx(small.cost(a)["flops_M"]) and r["params_M"] == pytest.approx(small.cost(a)["params_M"])
        assert r["context"]["budget"]["max_steps"] == 2 and r["context"]["train_seed"] == 0
    with pytest.raises(ConfigError, match="measured under"):
        measure_accuracies(small, archs, path, task, {**budget, "max_steps": 3}, progress=False)
    with pytest.raises(ConfigError, match="latency_ms"):
        measure_accuracies(small, archs, tmp_path / "b.jsonl", task, budget, metrics=["val_acc", "latency_ms"])
    assert len(calls) == 2


def test_fit_cost_predictor_source_train_eval_resumes(tmp_path):
    """experiment=fit_acc_predictor_mbv3 (source=train_eval): trains each arch once, fits accuracy; a rerun on
    the same rows file trains nothing and fits the same data."""
    rows_file = tmp_path / "acc.jsonl"
    overrides = ["experiment=fit_acc_predictor_mbv3", "n_archs=3", "heldout_frac=0.34", "predictor.steps=2",
                 "train.epochs=1", "train.max_steps=1", "space.resolution=32", f"measure.path={rows_file}",
                 "wandb.mode=disabled"]  # fmt: skip
    first = run_experiment(compose_config(overrides), out_dir=tmp_path / "a")
    text = rows_file.read_text()
    assert first["n_train"] == 2 and first["n_heldout"] == 1 and len(text.splitlines()) == 3
    again = run_experiment(compose_config(overrides), out_dir=tmp_path / "b")
    assert rows_file.read_text() == text and again["val_acc_median"] == first["val_acc_median"]
    info = cost_predictor_info(tmp_path / "b" / "predictor.pt")
    assert info["source"] == "train_eval" and info["measure_context"]["task"]["name"] == "digits"
    assert load_cost_predictor(tmp_path / "b" / "predictor.pt").targets == ["val_acc", "test_acc", "flops_M", "params_M"]


def test_latency_meter_ranks_a_big_net_above_a_small_one(small):
    meter = LatencyMeter(small, Timing(runs=5, warmup=1, reference="k3e4-k3e4|k3e4-k3e4|k3e4-k3e4|k3e4-k3e4|k3e4-k3e4"))
    tiny = small.parse("k3e3-k3e3|k3e3-k3e3|k3e3-k3e3|k3e3-k3e3|k3e3-k3e3")
    huge = small.parse("|".join(["k7e6-k7e6-k7e6-k7e6"] * 5))
    assert meter.reference == "k3e4-k3e4|k3e4-k3e4|k3e4-k3e4|k3e4-k3e4|k3e4-k3e4" and meter.reference_ms > 0
    assert meter.ratio(huge) > 1.3 * meter.ratio(tiny)  # 20 vs 10 blocks, 2x the kernels and expansions
    assert meter(tiny) == pytest.approx(meter.reference_ms * meter.ratio(tiny), rel=0.5)
    fixed = LatencyMeter(small, Timing(runs=3, warmup=1, reference_ms=100.0))
    assert fixed.reference_ms == 100.0 and 30 < fixed(tiny) < 100  # tiny is faster than the sampled reference


def test_timing_like_takes_the_predictors_scale():
    infos = [{"measure_context": {"reference": "a"}, "reference_ms": 5.0}, {}]
    assert timing_like(Timing(), infos) == Timing(reference="a", reference_ms=5.0)
    assert timing_like(Timing(reference_ms=7.0), infos).reference_ms == 7.0  # set values win
    with pytest.raises(ConfigError, match="different"):
        timing_like(Timing(), [*infos, {"reference_ms": 6.0}])


def test_table_reader_and_ofa_table(ofa_slice_csv):
    """On 20 real OFA rows (tests/data/README.md), 4 of them at resolution 224."""
    ofa_csv = ofa_slice_csv
    space = MBv3Space()
    archs, y = read_table_costs(ofa_csv, space, ["latency_ms_titan_rtx_1"], OFA_READER)
    assert len(archs) == 20 and y["latency_ms_titan_rtx_1"].shape == (20,)
    assert all(space.is_valid(a) for a in archs)
    with open(ofa_csv, newline="") as f:
        assert y["latency_ms_titan_rtx_1"].tolist() == [float(r["latency_ms_titan_rtx_1"]) for r in csv.DictReader(f)]
    at224, _ = read_table_costs(ofa_csv, space, ["latency_ms_titan_rtx_1"], {**OFA_READER, "where": {"resolution": 224}})
    assert len(at224) == 4 and at224 == archs[-4:]
    with pytest.raises(ConfigError, match="method"):
        table_arch_fn(space, {"method": "no_such_method", "columns": ["depths"]})
    with pytest.raises(ConfigError, match="no column"):
        read_table_costs(ofa_csv, space, ["latency_ms_titan_rtx_1"], {"method": "from_ofa", "columns": ["depth"]})
    assert table_arch_fn(space, None) is None


# ----- nag.modules.cost_predictor: fitting --------------------------------------------------------------------
def test_regression_scores_and_split():
    true = np.arange(10.0)
    s = regression_scores(true * 2 + 1, true)
    assert s["spearman"] == pytest.approx(1.0) and s["kendall"] == pytest.approx(1.0) and s["mae"] == pytest.approx(5.5)
    assert regression_scores(true, true)["r2"] == pytest.approx(1.0)
    assert regression_scores(-true, true)["spearman"] == pytest.approx(-1.0)
    train, held = split_rows(10, None, 0.3, seed=0)
    assert len(train) == 7 and len(held) == 3 and set(train) | set(held) == set(range(10))
    assert split_rows(10, 4, 0.3, seed=0)[0].tolist() == train[:4].tolist()
    with pytest.raises(ConfigError, match=r"cannot train on 1 of 10 rows; ask for 2\.\.10"):
        split_rows(10, 1, 0.0, seed=0)


def test_fit_save_load_cost_predictor(tmp_path):
    """A FLOPs predictor on 96 NB201 cells ranks 32 others well; it saves with its record and loads back."""
    space = get_space("nb201", C=4, N=1)
    archs = space.sample(128, 0)
    flops = np.array([space.cost(a)["flops_M"] for a in archs])
    ve = {"name": "ve", "sigma_min": 0.1, "sigma_max": 5.0}
    train, held = split_rows(len(archs), None, 0.25, seed=0)
    pred, scores = fit_cost_predictor(space, archs, {"flops_M": flops}, ve, train, held, steps=150, batch_size=64)
    assert scores["flops_M_spearman"] > 0.8, scores
    path = save_cost_predictor(pred, tmp_path / "p.pt", {"source": "test", "heldout_scores": scores})
    assert cost_predictor_info(path)["heldout_scores"] == scores
    again = load_cost_predictor(path, space)
    assert torch.allclose(again.predict_archs(archs[:8])[0], pred.predict_archs(archs[:8])[0])
    with pytest.raises(MissingDataError, match="shipped"):
        resolve_predictor_path("no_such_predictor")
    with pytest.raises(MissingDataError, match="no predictor checkpoint at .*missing.pt; write one with experiment=fit_cost_predictor"):
        resolve_predictor_path(tmp_path / "missing.pt")


# ----- Pareto helpers ------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6), st.integers(0, 3)), min_size=1, max_size=40))
def test_pareto_mask_is_the_set_of_non_dominated_points(points):
    costs = np.array(points, dtype=float)
    mask = pareto_mask(costs)

    def dominates(a, b):
        return bool((a <= b).all() and (a < b).any())

    for i, c in enumerate(costs):
        dominated = any(dominates(d, c) for d in costs)
        assert mask[i] == (not dominated)
    assert mask.any()  # a finite set always has a non-dominated point
    for i in np.flatnonzero(~mask):  # every dominated point is dominated by a front point
        assert any(dominates(costs[j], costs[i]) for j in np.flatnonzero(mask))


def test_hypervolume_2d():
    ref = np.array([4.0, 4.0])
    assert hypervolume_2d(np.array([[1.0, 1.0]]), ref) == pytest.approx(9.0)
    assert hypervolume_2d(np.array([[1.0, 3.0], [3.0, 1.0]]), ref) == pytest.approx(3 + 3 - 1)
    assert hypervolume_2d(np.array([[1.0, 3.0], [3.0, 1.0], [3.5, 3.5]]), ref) == pytest.approx(5.0)  # dominated
    assert hypervolume_2d(np.array([[5.0, 1.0]]), ref) == 0.0  # outside the reference box


def test_guide_specs_and_axes():
    specs = guide_specs(
        [
            {"predictor": "p.pt", "target": "flops_M", "direction": "max", "weight": 0.1},
            {"predictor": "p.pt", "target": "latency_ms", "direction": None, "constraint": "<=6"},
        ]
    )
    assert specs[1].bound == ("<=", 6.0) and specs[1].sense == "min" and specs[0].sense == "max"
    cols = prediction_columns(specs)
    assert cols == ["pred_flops_M", "pred_latency_ms"]
    assert front_axes(None, specs, cols, ["latency_ms"]) == [Axis(column="pred_flops_M", direction="max"),
                                                              Axis(column="latency_ms", direction="min")]
    assert front_axes([{"column": "pred_flops_M", "direction": "min"}], specs, cols, []) == [
        Axis(column="pred_flops_M", direction="min")]
    with pytest.raises(ConfigError, match="the column must be one of"):
        front_axes([{"column": "accuracy", "direction": "max"}], specs, cols, [])
    with pytest.raises(ConfigError, match="guide has no setting 'weigth'; it accepts: .*Did you mean 'weight'"):
        guide_specs([{"predictor": "p.pt", "target": "x", "weigth": 1.0}])
    with pytest.raises(ConfigError, match="'predictor' is missing"):
        guide_specs([{"target": "x"}])
    with pytest.raises(ConfigError, match="non-empty"):
        guide_specs([])
    assert prediction_columns([PredictorGuide(predictor="a.pt", target="x"), PredictorGuide(predictor="b.pt", target="x")]) == [
        "pred_x_0", "pred_x_1"]
    assert interleave([1, 2, 3], ["a"]) == [1, "a", 2, 3]


# ----- the shipped mbv3 prior and latency predictor --------------------------------------------
@pytest.fixture(scope="module")
def mbv3_prior():
    space = MBv3Space(resolution=128)
    assert default_prior_path("mbv3", must_exist=False).is_file(), "nag/assets/priors/mbv3.pt is a shipped asset"
    return load_prior(None, space)


@pytest.fixture(scope="module")
def latency_predictor(mbv3_prior):
    assert default_predictor_path("mbv3", "latency_cpu").is_file(), "the mbv3 latency predictor is a shipped asset"
    return load_cost_predictor("mbv3_latency_cpu", mbv3_prior.space)


def test_shipped_mbv3_prior_generates_valid_unique_archs(mbv3_prior):
    from nag.metrics import generation_metrics

    space = mbv3_prior.space
    train = space.sample(5000, 1)  # the OFA sampling distribution the prior was trained on
    archs = mbv3_prior.sample(200, seed=0)  # default solver (15-step ODE)
    m = generation_metrics(archs, space, train_archs=train)
    assert m["validity"] == 1.0 and m["uniqueness"] == 1.0 and m["op_kl"] < 0.06
    archs = mbv3_prior.sample(200, seed=0, solver={"name": "pc", "steps": 25, "denoise": True})
    m = generation_metrics(archs, space, train_archs=train)
    assert m["validity"] == 1.0 and m["uniqueness"] == 1.0
    assert m["op_kl"] < 0.04  # per-slot op/depth statistics of OFA sampling (200 samples: noise ~0.02)
    depths = np.array([[len(s) for s in a] for a in archs])
    assert set(np.unique(depths)) == {2, 3, 4} and abs(depths.mean() - 3.0) < 0.15


def test_shipped_latency_predictor_record(latency_predictor, mbv3_prior):
    info = cost_predictor_info("mbv3_latency_cpu")
    assert info["source"] == "measure" and info["measure_context"]["space"]["resolution"] == 128
    assert info["measure_context"]["torch_threads"] == 1 and info["n_train"] >= 500
    assert info["heldout_scores"]["latency_ms_spearman"] > 0.9
    assert set(latency_predictor.targets) >= {"latency_ms", "flops_M"}
    assert latency_predictor.sde_config == mbv3_prior.sde.config()  # it can guide the shipped prior


def test_constraint_on_a_one_member_predictor_is_the_softplus_penalty(mbv3_prior, latency_predictor):
    """No ensemble variance: the constraint is -softplus(k (mean - c)), with a finite gradient."""
    archs = mbv3_prior.space.sample(8, 0)
    x = 2 * mbv3_prior.space.encode_batch(archs) - 1
    t = torch.full((8,), 0.05)
    guide = Guide(latency_predictor, direction=None, constraint="<=5.5", target_index="latency_ms", sharpness=10.0,
                  scale="absolute")
    mean = latency_predictor(x, t)[:, latency_predictor.target_index("latency_ms")]
    torch.testing.assert_close(guide.objective(x, t), -torch.nn.functional.softplus(10.0 * (mean - 5.5)))
    grad = guide.gradient(x, t, score=torch.zeros_like(x))
    assert torch.isfinite(grad).all() and grad.abs().max() < 1e3
    # standardized (the default): the sharpness is per unit of the latency's spread
    std = Guide(latency_predictor, direction=None, constraint="<=5.5", target_index="latency_ms", sharpness=10.0, unit=0.5)
    torch.testing.assert_close(std.objective(x, t), -torch.nn.functional.softplus(10.0 * (mean - 5.5) / 0.5))


def test_latency_and_flops_guidance_move_the_samples(mbv3_prior, latency_predictor):
    """Guided to low latency, samples are predicted faster than the prior's 10th percentile; guided to
    high FLOPs, their exact FLOPs (space.cost) beat the prior's median."""
    space = mbv3_prior.space
    plain = mbv3_prior.sample(64, seed=0)
    fast = mbv3_prior.sample(64, seed=0, guides=[Guide(latency_predictor, weight=30.0, direction="min", target_index="latency_ms",
                                                                  scale="absolute")])
    lat = lambda archs: latency_predictor.predict_archs(archs, targets=["latency_ms"])[0][:, 0].numpy()  # noqa: E731
    assert np.median(lat(fast)) < np.percentile(lat(plain), 10)
    big = mbv3_prior.sample(24, seed=1, guides=[Guide(latency_predictor, weight=1.0, direction="max", target_index="flops_M",
                                                                  scale="absolute")])
    flops = lambda archs: np.array([space.cost(a)["flops_M"] for a in archs])  # noqa: E731
    assert np.median(flops(big)) > np.median(flops(plain[:24]))
    assert len(set(fast)) == len(fast)


@pytest.fixture(scope="module")
def accuracy_predictor(mbv3_prior):
    assert default_predictor_path("mbv3", "digits_acc").is_file(), "the mbv3 accuracy predictor is a shipped asset"
    return load_cost_predictor("mbv3_digits_acc", mbv3_prior.space)


def test_shipped_accuracy_predictor_record(accuracy_predictor, mbv3_prior):
    """Fit on subnets really trained on digits; its record holds the held-out scores docs/mbv3.md reports."""
    info = cost_predictor_info("mbv3_digits_acc")
    assert info["source"] == "train_eval" and info["measure_context"]["task"]["name"] == "digits"
    assert info["n_train"] + info["n_heldout"] >= 150 and info["heldout_scores"]["val_acc_spearman"] > 0.2
    assert accuracy_predictor.sde_config == mbv3_prior.sde.config()
    rows = Path(str(default_predictor_path("mbv3", "digits_acc")).replace(".pt", ".jsonl"))
    assert len(rows.read_text().splitlines()) == info["n_train"] + info["n_heldout"]  # the shipped rows rebuild it


def test_pareto_generation_writes_the_front(tmp_path, mbv3_prior, latency_predictor, accuracy_predictor):
    cfg = compose_config(
        ["experiment=pareto_generation", "n=12", "n_unguided=12", "batch_size=12", "solver.steps=4",
         "timing.runs=2", "timing.warmup=1", "measure=[flops_M]"]
    )  # fmt: skip
    results = run_experiment(cfg, out_dir=tmp_path)
    assert results["n"] == 12 and 1 <= results["front_size"] <= 24
    with open(tmp_path / "samples.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 24 and set(rows[0]) == {"set", "arch", "pred_val_acc", "pred_latency_ms", "flops_M", "on_front"}
    space = mbv3_prior.space
    for r in rows[:3]:
        assert float(r["flops_M"]) == pytest.approx(space.cost(space.parse(r["arch"]))["flops_M"], rel=1e-4)
    # the front: exactly the samples no other sample beats on (higher pred_val_acc, lower pred_latency_ms)
    costs = np.array([[-float(r["pred_val_acc"]), float(r["pred_latency_ms"])] for r in rows])
    assert [r["on_front"] == "True" for r in rows] == pareto_mask(costs).tolist()
    with open(tmp_path / "pareto_front.csv", newline="") as f:
        front = list(csv.DictReader(f))
    assert len(front) == results["front_size"] and all(r["on_front"] == "True" for r in front)
    assert (tmp_path / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert 0.0 <= results["pred_latency_ms_frac_satisfied"] <= 1.0
    assert json.loads((tmp_path / "results.json").read_text()) == results


@pytest.mark.slow
def test_latency_constraint_holds_when_measured(tmp_path, mbv3_prior, latency_predictor, accuracy_predictor):
    """Accuracy guidance under a latency bound: most guided samples meet the bound by real CPU timing,
    far more than unguided ones."""
    cfg = compose_config(["experiment=pareto_generation", "n=48", "n_unguided=48", "batch_size=48"])
    results = run_experiment(cfg, out_dir=tmp_path)
    assert results["latency_ms_frac_satisfied"] >= 0.8
    assert results["latency_ms_frac_satisfied"] > results["unguided_latency_ms_frac_satisfied"] + 0.3


# ----- bo_nas on mbv3: diffusion BO over the shipped prior, every query really trained -------------
def test_bo_nas_on_mbv3_trains_on_digits(tmp_path, mbv3_prior):
    """experiment=bo_nas, space=mbv3, task=digits (offline), evaluator=train_eval: 2 random queries, then
    one round of diffusion BO (the surrogate guides the shipped prior); each query trains a timm net."""
    overrides = ["experiment=bo_nas", "space=mbv3", "task=digits", "method=diffusion_bo", "budget=3", "bo.n_init=2",
                 "bo.ensemble=2", "bo.pool_size=8", "+method_params.optimizer_params.n_samples=8",
                 "+method_params.optimizer_params.solver.steps=3", "+method_params.optimizer_params.mutations=4",
                 "train.epochs=1", "train.max_steps=2", "train.batch_size=32", "wandb.mode=disabled"]  # fmt: skip
    results = run_experiment(compose_config(overrides), out_dir=tmp_path)
    assert results["method"] == "diffusion_bo" and results["n_queries"] == 3
    history = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    space = MBv3Space()
    archs = [space.parse(h["arch"]) for h in history]
    assert len(archs) == 3 and len(set(archs)) == 3 and all(space.is_valid(a) for a in archs)
    for h in history:  # real training: train_eval's own record of each query
        assert h["steps"] == 2 and 0 <= h["value"] == h["val_acc"] <= 100 and h["params_M"] > 0
    best = max(history, key=lambda h: h["value"])
    assert results["best_value"] == best["value"] and results["best_test_acc"] == best["test_acc"]
    assert json.loads((tmp_path / "results.json").read_text()) == results


# ----- a third space: the example plugin trains a prior and generates, nag unchanged -----------
@pytest.fixture
def chain_space_plugin(tmp_path, monkeypatch):
    """examples/custom_space found through its own entry-point lines (as after pip install)."""
    import tomllib

    from test_registry import make_dist  # tests/ is on sys.path under pytest's default import mode

    eps = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]["entry-points"]["nag.spaces"]
    monkeypatch.setattr(nag.spaces, "SPACES", Registry("search space", group="nag.spaces"))
    make_dist(tmp_path / "site", "nag-chain-space", {"nag.spaces": eps})
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.syspath_prepend(str(EXAMPLE))
    return f"hydra.searchpath=[file://{EXAMPLE / 'configs'}]"


def test_third_space_trains_a_prior_and_generates(tmp_path, chain_space_plugin):
    tiny = ["train.max_steps=30", "train.ckpt_every=30", "data.batch_size=64", "net.d_model=16", "net.n_layers=1",
            "net.n_heads=2", "net.d_ff=32", "n=64", "batch_size=64", "solver.steps=3"]  # fmt: skip
    cfg = compose_config([chain_space_plugin, "experiment=train_prior", "space=chain_cnn", "space.C=4", *tiny])
    trained = run_experiment(cfg, out_dir=tmp_path / "train")
    assert trained["steps"] == 30 and trained["n_train"] == 312  # half of the 625 archs
    assert trained["validity"] == 1.0 and trained["n"] == 64
    cfg = compose_config(
        [chain_space_plugin, "experiment=generate", "space=chain_cnn", "space.C=4", "n=100", "batch_size=50",
         "solver.steps=3", f"prior.path={tmp_path / 'train' / 'prior.pt'}"]
    )  # fmt: skip
    generated = run_experiment(cfg, out_dir=tmp_path / "gen")
    lines = (tmp_path / "gen" / "archs.txt").read_text().splitlines()
    space = get_space("chain_cnn", C=4)
    assert len(lines) == 100 and all(space.is_valid(space.parse(line)) for line in lines)
    assert generated["validity"] == 1.0 and 0.0 <= generated["novelty"] <= 1.0
    assert generated["uniqueness"] > 0.5  # 100 draws from 625 archs


def test_unknown_cost_source_names_the_known_ones(tmp_path):
    from nag.errors import UnknownNameError

    cfg = compose_config(["experiment=fit_cost_predictor", "source=guess", "space.resolution=32"])
    with pytest.raises(UnknownNameError, match="unknown cost source 'guess'.*measure, table, train_eval"):
        run_experiment(cfg, out_dir=tmp_path)
