"""Hydra launchers: parallel local multiruns (joblib), a SLURM recipe (submitit), W&B runs grouped by sweep."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_joblib_multirun_completes_every_job(tmp_path: Path) -> None:
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO_ROOT)}
    cmd = [sys.executable, "-m", "nag.run", "-m", "experiment=generate", "seed=0,1", "n=10", "batch_size=10",
           "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    for job, seed in ((0, 0), (1, 1)):
        results = json.loads((tmp_path / "sweep" / str(job) / "results.json").read_text())
        assert results["n"] == 10 and results["validity"] == 1.0
        assert f"seed: {seed}" in (tmp_path / "sweep" / str(job) / "config.yaml").read_text()


def test_slurm_recipe_composes_for_every_experiment_kind() -> None:
    from nag.run import _compose, config_dir

    cfg = _compose(["experiment=train_prior", "hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                    "hydra.launcher.tasks_per_node=2", "trainer.devices=2", "trainer.strategy=ddp"], config_dir())
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert launcher.partition == "gpu" and launcher.tasks_per_node == 2 and cfg.trainer.devices == 2
    assert launcher.submitit_folder.endswith(".submitit/%j")


def test_a_multirun_job_logs_to_wandb_grouped_by_its_sweep(tmp_path: Path) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from nag.experiments import _sweep_group
    from nag.run import _compose, config_dir

    def job_config(mode: RunMode):
        cfg = _compose(["experiment=generate", f"hydra.sweep.dir={tmp_path / 'multirun_x'}", f"hydra.mode={mode.name}"],
                       config_dir())
        HydraConfig.instance().set_config(cfg)

    try:
        job_config(RunMode.MULTIRUN)
        assert _sweep_group("generate") == "generate-multirun_x"
        job_config(RunMode.RUN)
        assert _sweep_group("generate") is None
    finally:
        HydraConfig.instance().cfg = None


@pytest.mark.parametrize("group", ["joblib", "slurm"])
def test_launchers_are_listed_as_hydra_options(group: str) -> None:
    from hydra.core.plugins import Plugins

    Plugins.instance()  # registers the installed launchers' configs
    from nag.run import _compose, config_dir

    cfg = _compose([f"hydra/launcher={group}", "experiment=generate"], config_dir())
    assert "Launcher" in cfg.hydra.launcher._target_
