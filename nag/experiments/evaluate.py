"""``experiment=evaluate``: really train one architecture on the task.

Results: ``arch`` (string form), ``val_acc`` / ``test_acc`` (percent, mean over ``budget``
training runs with seeds ``seed .. seed+budget-1``), ``test_acc_std`` (0 for one run),
``n_runs``, ``wall_s`` (summed over runs) and ``params_M``.
"""
from __future__ import annotations

import statistics

from omegaconf import DictConfig
from tqdm import tqdm

from nag.evaluation import TrainBudget, train_eval
from nag.errors import ConfigError
from nag.experiments import build_budget, build_space, build_task, experiment, trainer_settings
from nag.experiments.config import PositiveInt, RunConfig
from nag.spaces import coerce_arch
from nag.wandb_utils import log_metrics


class EvaluateConfig(RunConfig):
    arch: str | None
    budget: PositiveInt
    train: TrainBudget


@experiment("evaluate", schema=EvaluateConfig)
def evaluate(cfg: DictConfig) -> dict:
    """Train ``cfg.arch`` ``cfg.budget`` times on ``cfg.task`` with the ``cfg.train`` budget."""
    space = build_space(cfg)
    if cfg.get("arch") is None:
        raise ConfigError(f"evaluate needs an architecture: arch=<string form of a {space.name} arch>")
    arch = coerce_arch(space, str(cfg.arch))
    runs = cfg.budget
    task = build_task(cfg)
    budget = build_budget(cfg)
    trainer = trainer_settings(cfg)
    metrics = []
    for k in tqdm(range(runs), desc="evaluate", unit="run", disable=None):
        m = train_eval(space, arch, task, budget, seed=int(cfg.seed) + k, trainer=trainer)
        log_metrics({"run_val_acc": m["val_acc"], "run_test_acc": m["test_acc"]}, step=k)
        metrics.append(m)
    tests = [m["test_acc"] for m in metrics]
    return {
        "arch": space.format(arch),
        "val_acc": statistics.fmean(m["val_acc"] for m in metrics),
        "test_acc": statistics.fmean(tests),
        "test_acc_std": statistics.stdev(tests) if runs > 1 else 0.0,
        "n_runs": runs,
        "wall_s": sum(m["wall_s"] for m in metrics),
        "params_M": metrics[0]["params_M"],
    }
