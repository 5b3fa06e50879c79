"""experiment=bo_nas's settings, the W&B sweep files, and an offline Hydra multirun.

Its results on a table and its kill-and-resume tests are in test_resume.py."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from nag.errors import MissingDataError
from nag.experiments import run_experiment
from nag.schema import plain
from nag.run import compose_config

REPO = Path(__file__).resolve().parents[1]
SWEEPS = sorted((REPO / "experiments" / "sweeps").glob("*.yaml"))


def test_bo_nas_without_a_table_path_says_which_key(tmp_path):
    """An unset data path is MissingDataError, as everywhere (guided_generation, fit_cost_predictor)."""
    cfg = compose_config(["experiment=bo_nas", "evaluator=table", "method=random", "wandb.mode=disabled"])
    with pytest.raises(MissingDataError, match="evaluator=table needs benchmark.path=<csv>"):
        run_experiment(cfg, out_dir=tmp_path)


def test_bo_block_overrides_only_what_is_set():
    from nag.experiments.bo_nas import method_overrides

    cfg = compose_config(["experiment=bo_nas", "method=diffusion_bo", "bo.target_transform=none", "bo.normal_form=true", "bo.ensemble=3",
                          "wandb.mode=disabled"])
    out = method_overrides(cfg)
    assert out.pop("trainer") == plain(cfg.trainer)  # a Lightning-trained surrogate trains where the run's trainer/ says
    assert out == {"target_transform": "none", "normal_form": True, "surrogate_params": {"ensemble": 3}}
    default = compose_config(["experiment=bo_nas", "wandb.mode=disabled"])
    assert method_overrides(default) == {"trainer": plain(default.trainer)}  # BO hands it to Lightning surrogates only


def sweep_overrides(path: Path) -> list[str]:
    """One point of a W&B sweep as the Hydra overrides ``${args_no_hyphens}`` would render."""
    spec = yaml.safe_load(path.read_text())
    fixed = [a for a in spec["command"] if isinstance(a, str) and "=" in a and not a.startswith("${")]
    point = []
    for name, p in spec["parameters"].items():
        value = p["value"] if "value" in p else p["values"][0] if "values" in p else p["min"]
        point.append(f"{name}={value}")
    return fixed + point


def sweep_points(path: Path) -> list[list[str]]:
    """The first point of a sweep, then every other value of each parameter with the rest as in
    the first point (a distribution contributes its max), as Hydra overrides."""
    spec = yaml.safe_load(path.read_text())
    base = sweep_overrides(path)
    points = [base]
    for name, p in spec["parameters"].items():
        others = p.get("values", [])[1:] if "values" in p else [p["max"]] if "max" in p else []
        for value in others:
            points.append([o for o in base if o.split("=", 1)[0] != name] + [f"{name}={value}"])
    return points


def test_there_are_sweeps():
    assert {"bo_nas_methods", "bo_acquisition", "diffusion_guidance"} <= {p.stem for p in SWEEPS}


def test_readme_shows_how_to_run_a_sweep_and_its_file_exists():
    readme = (REPO / "README.md").read_text()
    files = re.findall(r"wandb sweep (experiments/sweeps/\S+\.yaml)", readme)
    assert files and all((REPO / f).is_file() for f in files)
    assert "wandb agent <entity>/<project>/<sweep_id>" in readme
    assert "python -m nag.run -m experiment=bo_nas" in readme  # the offline grid


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_sweep_renders_into_a_composable_config(path):
    spec = yaml.safe_load(path.read_text())
    cmd = spec["command"]
    assert cmd[cmd.index("-m") + 1] == "nag.run" and "${args_no_hyphens}" in cmd
    assert spec["method"] in ("grid", "random", "bayes") and spec["metric"]["goal"] in ("minimize", "maximize")
    overrides = sweep_overrides(path)
    cfg = compose_config(overrides)  # composes and validates, as python -m nag.run does on the agent
    assert cfg.name == "bo_nas"
    for item in overrides:
        key, _, value = item.lstrip("+").partition("=")
        if key == "experiment":  # a config group choice, not a key
            continue
        if key == "method":  # a config group: the preset named by the value
            key = "method.name"
        assert str(OmegaConf.select(cfg, key)) == value


@pytest.mark.slow  # a subprocess that imports the whole stack: ~15 s on an idle 2-core box, over a minute on a busy one
def test_offline_hydra_multirun(synthetic_csv, synthetic_table, tmp_path):
    """Each point of the grid is its own run, with its own seed: its results are those of that search."""
    from nag.evaluation import TableEvaluator
    from nag.search import build_method, run_search
    from nag.spaces import get_space

    env = {**os.environ, "WANDB_MODE": "disabled"}
    cmd = [sys.executable, "-m", "nag.run", "-m", "experiment=bo_nas", "evaluator=table",
           f"benchmark.path={synthetic_csv}", "method=random", "seed=0,1", "budget=3",
           f"hydra.sweep.dir={tmp_path}"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = sorted(tmp_path.glob("*/results.json"))
    assert len(found) == 2
    space = get_space("nb201")
    seeds = []
    for path in found:
        results, seed = json.loads(path.read_text()), OmegaConf.load(path.parent / "config.yaml").seed
        expected = run_search(build_method("random", space), TableEvaluator(synthetic_table, "cifar10_test_acc"), 3, seed=seed)
        assert results["n_queries"] == 3 and results["method"] == "random"
        assert (results["best_arch"], results["best_value"]) == (space.format(expected.best_arch), expected.best_value)
        seeds.append(seed)
    assert sorted(seeds) == [0, 1]


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_every_value_of_a_sweep_builds_its_search_method(path):
    """Each value a sweep can send (one parameter at a time) gives settings the method accepts: a
    combination the preset refuses would only fail on a W&B agent, after the search started."""
    from nag.experiments import build_space
    from nag.experiments.bo_nas import method_overrides
    from nag.search import build_method

    for overrides in sweep_points(path):
        cfg = compose_config(overrides)
        build_method(plain(cfg.method), build_space(cfg), method_overrides(cfg))
