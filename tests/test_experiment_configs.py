"""Every experiments/experiment/*.yaml composes, validates, and fast-runs with its smoke overrides.

Experiment files are discovered by glob, so a new experiment is covered as soon as its yaml
exists. A new experiment brings:
  - in its yaml, line 1 ``# @package _global_`` and line 2 a ``# <one-line description>`` (shown
    by --help), and ``name: <file stem>``;
  - in tests/smoke.py, ``SMOKE[<name>]``: overrides that make a run take seconds (they stay out of
    the production yaml, so out of every run's config.yaml and W&B), and ``SLOW`` membership when
    even that run takes more than ~30 s.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from nag.experiments import build_space, list_experiments, run_experiment
from nag.run import compose_config
from smoke import SLOW, SMOKE  # tests/ is on sys.path under pytest's default import mode

REPO = Path(__file__).resolve().parents[1]
FILES = sorted((REPO / "experiments" / "experiment").glob("*.yaml"))

# Result keys each experiment documents (README.md, docs/cli.md, docs/search.md, docs/transfer_nas.md,
# and the experiment's module docstring). "{m}" stands for each entry of the config list named in
# PER_ENTRY; the runner's name is the key.
TRANSFER = ["best_arch", "best_val_acc", "best_test_acc", "random_best_arch", "random_best_test_acc",
            "guided_mean_test_acc", "random_mean_test_acc", "n_trained", "n_candidates_unique",
            "predictor_spearman_on_task", "generate_s", "wall_s"]
SAMPLING = ["validity", "uniqueness", "uniqueness_iso", "novelty", "op_kl", "validity_threshold", "n", "wall_s"]
DOCUMENTED: dict[str, list[str]] = {
    "evaluate": ["arch", "val_acc", "test_acc", "test_acc_std", "n_runs", "wall_s", "params_M"],
    "random_search": ["best_arch", "best_val_acc", "best_test_acc", "n_evaluated", "wall_s"],
    "bo_nas": ["best_arch", "best_value", "n_queries", "queries_to_best", "rounds", "wall_s", "best_test_acc"],
    "generate": [*SAMPLING, "archs_per_s"],
    "train_prior": ["train_loss", "steps", "n_params", "n_train", *SAMPLING],
    "guided_generation": ["frac_top5", "frac_top1", "mean_true", "max_true", "uniqueness", "unguided_frac_top5",
                          "unguided_frac_top1", "unguided_mean_true", "unguided_max_true", "unguided_uniqueness",
                          "predictor_spearman", "predictor_spearman_t0.1", "predictor_spearman_t0.5",
                          "predictor_fit_s", "guided_sample_s", "unguided_sample_s", "guided_archs_per_s", "wall_s"],
    "transfer_nas": TRANSFER,
    "build_meta_db": ["n_rows", "n_tasks", "n_trained_now", "mean_test_acc", "wall_s"],
    "train_dataset_encoder": ["n_tasks", "n_classes", "n_train", "val_acc", "test_acc", "train_loss", "steps", "wall_s",
                              "path", "encoder_weights"],
    "train_meta_predictor": ["n_rows", "n_tasks", "encoder_weights", "heldout_spearman", "heldout_spearman_min", "unconditioned_spearman",
                             "params_spearman", "flops_spearman", "fit_s", "wall_s"],
    "fit_cost_predictor": ["n_train", "n_heldout", "{m}_spearman", "{m}_kendall", "{m}_pearson", "{m}_mae", "{m}_r2",
                           "{m}_min", "{m}_median", "{m}_max", "measure_s", "fit_s", "wall_s"],
    "pareto_generation": ["n", "n_unguided", "uniqueness", "{m}_median", "unguided_{m}_median", "frac_feasible",
                          "front_size", "front_guided_frac", "hypervolume", "unguided_hypervolume",
                          "guided_sample_s", "measure_s", "wall_s"],
}
PER_ENTRY = {
    "fit_cost_predictor": lambda cfg: list(cfg.targets),
    # the front's axes: one per guide, its measured column when measured, else its prediction
    "pareto_generation": lambda cfg: [str(a.column) for a in cfg.front] if cfg.front else [
        g.target if g.target in cfg.measure else f"pred_{g.target}" for g in cfg.guides],
}
# What a smoke run needs that its yaml cannot name: data the tests make (see the module docstring).
TEST_DATA = {"guided_generation": lambda data: [f"benchmark.path={data}"]}

PERCENT = ("_acc", "mean_true", "max_true")  # accuracies in %, as everywhere in nag
FRACTION = ("validity", "uniqueness", "novelty", "frac", "validity_threshold")
CORRELATION = ("spearman", "kendall", "pearson")  # NaN (null) where a smoke run has too few points
COUNT = ("n", "n_", "steps", "rounds", "queries_to_best", "front_size", "nfe")
NON_NEGATIVE = ("_s", "_std", "_loss", "_mae", "op_kl", "regret", "latency_ms", "flops_M", "params_M", "hypervolume")


def check_range(key: str, value, space) -> None:
    """The range a key's name promises; every key of a results dict is checked by its name."""
    if key.endswith("_arch") or key == "arch":
        assert isinstance(value, str) and space.is_valid(space.parse(value)), (key, value)
        return
    if any(c in key for c in CORRELATION):
        assert value is None or -1.0 - 1e-9 <= value <= 1.0 + 1e-9, (key, value)
        return
    if key.endswith(("_r2", "_mae")) and value is None:  # NaN where a smoke run has too few held-out rows
        return
    if isinstance(value, str) or value is None:
        assert not key.endswith("_s") and not key.endswith(PERCENT), (key, value)
        return
    assert isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value), (key, value)
    if key.endswith(PERCENT) or key.endswith(("_acc_min", "_acc_max", "_acc_median")):
        assert 0.0 <= value <= 100.0, (key, value)
    elif any(key.startswith(f) or key.endswith(f) or f"_{f}" in key for f in FRACTION):
        assert 0.0 <= value <= 1.0, (key, value)
    elif key in COUNT or key.startswith(COUNT[1:]):
        assert isinstance(value, int) and value >= 0, (key, value)
    elif key.endswith("_r2"):
        assert value <= 1.0, (key, value)
    elif any(key.endswith(f) or key.startswith(f) for f in NON_NEGATIVE):
        assert value >= 0.0, (key, value)


def _param(path: Path):
    marks = [pytest.mark.slow] if path.stem in SLOW else []
    return pytest.param(path, id=path.stem, marks=marks)


def test_the_built_in_experiments_are_there():
    assert {"evaluate", "random_search"} <= {p.stem for p in FILES}


def test_every_runner_documents_its_results():
    runners = {str(compose_config([f"experiment={p.stem}"]).get("runner") or p.stem) for p in FILES}
    assert runners <= set(DOCUMENTED), sorted(runners - set(DOCUMENTED))
    assert runners <= set(list_experiments())  # every experiment file has its module


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_experiment_file_header(path):
    lines = path.read_text().splitlines()
    assert lines[0].strip() == "# @package _global_"
    assert lines[1].startswith("# ") and len(lines[1]) > 10, "line 2 must describe the experiment (shown by --help)"


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_experiment_composes(path):
    cfg = compose_config([f"experiment={path.stem}"])
    assert cfg.name == path.stem
    assert {"seed", "space", "task", "wandb", "trainer"} <= set(cfg)
    assert not any(k.startswith("smoke") for k in cfg), "smoke overrides belong in tests/smoke.py"
    assert path.stem in SMOKE, f"add SMOKE[{path.stem!r}] to tests/smoke.py: overrides that make a run take seconds"
    compose_config([f"experiment={path.stem}", *SMOKE[path.stem]])  # every smoke override names a real key


@pytest.mark.parametrize("path", [_param(p) for p in FILES])
def test_experiment_fast_run(path, tmp_path, synthetic_csv):
    """Runs for real at its smoke budget; writes the documented keys, each in its range."""
    cfg = compose_config([f"experiment={path.stem}"])
    runner = str(cfg.get("runner") or cfg.name)
    extra = TEST_DATA.get(path.stem, lambda data: [])(synthetic_csv)
    cfg = compose_config([f"experiment={path.stem}", *SMOKE[path.stem], *extra])
    results = run_experiment(cfg, out_dir=tmp_path)

    entries = [str(m) for m in PER_ENTRY[runner](cfg)] if runner in PER_ENTRY else []
    documented = [k.format(m=m) for k in DOCUMENTED[runner] for m in (entries if "{m}" in k else [None])]
    if runner == "bo_nas" and cfg.evaluator == "table":
        documented = [k for k in documented if k != "best_test_acc"] + ["optimum", "regret"]
    missing = sorted(set(documented) - set(results))
    assert not missing, f"{path.stem} does not write its documented keys {missing}"
    space = build_space(cfg)
    for key, value in results.items():
        check_range(key, value, space)
    assert results["wall_s"] > 0
    assert json.loads((tmp_path / "results.json").read_text()) == results
    assert OmegaConf.load(tmp_path / "config.yaml").name == path.stem


def test_range_rules_reject_what_they_should():
    """The name rules above can fail: a few values out of their promised ranges."""
    from nag.spaces import get_space

    space = get_space("nb201")
    for key, value in (("best_test_acc", 101.0), ("uniqueness", 1.5), ("frac_top5", -0.1), ("n_queries", 2.5),
                       ("wall_s", -1.0), ("heldout_spearman", 1.5), ("best_arch", "|x~0|"), ("mean_true", float("nan")),
                       ("latency_ms_median", -2.0), ("train_loss", -0.5), ("flops_M_r2", 1.5), ("wall_s", None)):
        with pytest.raises((AssertionError, Exception), match=key.split("_")[0] if key != "best_arch" else "x~0"):
            check_range(key, value, space)


@pytest.mark.parametrize(
    "overrides, match",
    [
        (["experiment=bo_nas", "evaluator=table"], "needs benchmark.path=<csv>"),
        (["experiment=bo_nas", "evaluator=table", "benchmark.path={missing}"], "benchmark table not found"),
        (["experiment=guided_generation", "benchmark.path=null"], "benchmark.path is not set"),
        (["experiment=guided_generation", "benchmark.path={missing}"], "benchmark table not found"),
        (["experiment=fit_cost_predictor", "source=table"], "source=table needs benchmark.path=<csv>"),
        (["experiment=generate", "prior.path={missing}"], "no prior checkpoint at .*missing. Pass prior.path="),
        (["experiment=transfer_nas", "meta_predictor.path={missing}"], "meta-predictor .*missing.* does not exist"),
        (["experiment=train_meta_predictor", "meta_db.path={missing}"], "meta-database .*missing.* does not exist"),
    ],
    ids=["bo_nas-unset", "bo_nas-absent", "guided_generation-unset", "guided_generation-absent",
         "fit_cost_predictor-unset", "generate-prior", "transfer_nas-meta_predictor", "train_meta_predictor-meta_db"],
)
def test_an_unset_or_missing_data_path_is_missing_data_error(overrides, match, tmp_path):
    """One error type per situation: whatever the experiment, an unset or absent data path is
    MissingDataError (the CLI prints it as one ``error:`` line and exits 2)."""
    from nag.errors import MissingDataError

    cfg = compose_config([o.format(missing=tmp_path / "missing") for o in overrides])
    with pytest.raises(MissingDataError, match=match):
        run_experiment(cfg, out_dir=tmp_path / "run")
