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
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from nag.errors import MissingDataError
from nag.experiments import list_experiments, run_experiment
from nag.run import compose_config
from smoke import SLOW, SMOKE  # tests/ is on sys.path under pytest's default import mode

REPO = Path(__file__).resolve().parents[1]
FILES = sorted((REPO / "experiments" / "experiment").glob("*.yaml"))


def _param(path: Path):
    marks = [pytest.mark.slow] if path.stem in SLOW else []
    return pytest.param(path, id=path.stem, marks=marks)


def test_the_built_in_experiments_are_there():
    assert {"evaluate", "random_search"} <= {p.stem for p in FILES}


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
def test_experiment_fast_run(path, tmp_path):
    cfg = compose_config([f"experiment={path.stem}"])
    runner = str(cfg.get("runner") or cfg.name)
    if runner not in list_experiments():
        pytest.skip(f"experiment {runner!r} has a config but no module yet")
    cfg = compose_config([f"experiment={path.stem}", *SMOKE[path.stem]])
    try:
        results = run_experiment(cfg, out_dir=tmp_path)
    except MissingDataError as exc:  # e.g. a benchmark table or shipped prior that is not here
        pytest.skip(f"experiment {runner!r} needs data that is absent: {exc}")
    assert results and all(isinstance(v, (int, float, str, bool)) or v is None for v in results.values())
    assert json.loads((tmp_path / "results.json").read_text()) == results
    assert OmegaConf.load(tmp_path / "config.yaml").name == path.stem
