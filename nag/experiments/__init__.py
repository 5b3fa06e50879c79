"""Experiments: one function per experiment, ``fn(cfg: DictConfig) -> dict``, registered by name.

``python -m nag.run experiment=<name>`` composes ``experiments/experiment/<name>.yaml`` and calls
:func:`run_experiment`, which runs the registered function inside a W&B run and writes
``config.yaml`` (resolved) and ``results.json`` (numbers and strings only) into the run folder.

A built-in experiment lives in ``nag/experiments/<name>.py`` and is listed in ``_BUILTINS``;
it is imported only when asked for, so a module that is not there simply means "not available".
Third-party experiments register under the entry-point group ``nag.experiments``.
"""
from __future__ import annotations


import contextvars
import importlib
import importlib.util
import math
import numbers
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nag.errors import ConfigError, UnknownNameError
from nag.registry import Registry
from nag.schema import plain

ExperimentFn = Callable[[DictConfig], dict]

EXPERIMENTS: Registry[dict] = Registry("experiment", group="nag.experiments")

# name -> module that registers it. Adding a built-in experiment is one line here.
_BUILTINS: dict[str, str] = {
    "evaluate": "nag.experiments.evaluate",
    "random_search": "nag.experiments.random_search",
    "train_prior": "nag.experiments.train_prior",
    "generate": "nag.experiments.generate",
    "guided_generation": "nag.experiments.guided_generation",
    "transfer_nas": "nag.experiments.transfer_nas",
    "build_meta_db": "nag.experiments.build_meta_db",
    "train_meta_predictor": "nag.experiments.train_meta_predictor",
    "train_dataset_encoder": "nag.experiments.train_dataset_encoder",
    "bo_nas": "nag.experiments.bo_nas",
    "fit_cost_predictor": "nag.experiments.fit_cost_predictor",
    "pareto_generation": "nag.experiments.pareto_generation",
}

_RUN_DIR: contextvars.ContextVar[Path | None] = contextvars.ContextVar("nag_run_dir", default=None)


def experiment(name: str, schema: type | None = None) -> Callable[[ExperimentFn], ExperimentFn]:
    """Decorator: register ``fn(cfg) -> dict`` as experiment ``name``.

    ``schema``: the pydantic model (a ``nag.experiments.config.RunConfig`` subclass) its config is
    validated against before it runs; without one, only the keys every run has are checked.
    """

    def register(fn: ExperimentFn) -> ExperimentFn:
        fn.schema = schema  # type: ignore[attr-defined]
        return EXPERIMENTS.register(name)(fn)

    return register


def _import_builtin(name: str) -> None:
    module = _BUILTINS[name]
    try:
        importlib.import_module(module)
    except ImportError as exc:
        if isinstance(exc, ModuleNotFoundError) and exc.name == module:
            raise UnknownNameError(
                f"experiment {name!r} is not available in this version of nag: "
                f"its module {module} is not there. Available experiments: {', '.join(list_experiments())}."
            ) from exc
        raise UnknownNameError(  # a dependency missing or broken: NAG_TRACEBACK=1 shows where
            f"experiment {name!r} is not available: importing {module} failed ({exc})."
        ) from exc


def get_experiment(name: str) -> ExperimentFn:
    """The function registered as experiment ``name`` (built-in or entry point)."""
    if name in _BUILTINS:
        _import_builtin(name)
    return EXPERIMENTS.get(name)


def list_experiments(pattern: str = "*") -> list[str]:
    """Names of the experiments that can run here (built-ins whose module exists, plus plugins)."""
    import fnmatch

    available = {n for n, m in _BUILTINS.items() if importlib.util.find_spec(m) is not None}
    return sorted(fnmatch.filter(available.union(EXPERIMENTS.names()), pattern))


# ----- helpers shared by every experiment --------------------------------------------------
def build_space(cfg: DictConfig):
    """The search space of ``cfg.space``: ``get_space(cfg.space.name, **other keys)``."""
    from nag.spaces import get_space

    params = dict(plain(cfg.space))
    return get_space(params.pop("name"), **params)


def space_options(cfg: DictConfig) -> dict[str, Any]:
    """The build options of ``cfg.space`` without its name (e.g. ``{"C": 8, "N": 3}``)."""
    return {k: v for k, v in (plain(cfg.space) or {}).items() if k != "name"}


def build_task(cfg: DictConfig):
    """The task of ``cfg.task``: ``get_task(cfg.task.name, classes, **other keys)``."""
    from nag.data import get_task

    params = dict(plain(cfg.task))
    return get_task(params.pop("name"), **params)


def build_budget(cfg: DictConfig, key: str = "train"):
    """The training budget of ``cfg.<key>`` as a ``nag.evaluation.training.TrainBudget``."""
    from nag.evaluation.training import TrainBudget

    return TrainBudget.from_any(plain(cfg.get(key)))


def trainer_settings(cfg: DictConfig):
    """The Lightning settings of ``cfg.trainer`` (the ``trainer/`` group) as ``TrainerSettings``."""
    from nag.modules.trainer import TrainerSettings

    return TrainerSettings.from_any(plain(cfg.get("trainer")))


def distinct_sample(space: Any, n: int, seed: int) -> list:
    """``n`` random archs of ``space`` with distinct isomorphism classes (``space.canonical``),
    in draw order; deterministic in ``seed``, and a prefix of the draws for a larger ``n``."""
    from nag.spaces import as_rng

    rng = as_rng(seed)
    out: list = []
    seen: set = set()
    max_draws = 100 * n
    for _ in range(max_draws):
        arch = space.sample(1, rng)[0]
        key = space.canonical(arch)
        if key not in seen:
            seen.add(key)
            out.append(arch)
            if len(out) == n:
                return out
    raise ConfigError(
        f"found only {len(out)} architectures of distinct isomorphism classes in space {space.name!r} "
        f"after {max_draws} draws; ask for fewer than {n}"
    )


def run_dir() -> Path:
    """The folder of the running experiment (where results.json goes)."""
    path = _RUN_DIR.get()
    if path is None:
        raise ConfigError("run_dir() is only defined inside run_experiment(cfg); call the experiment through it.")
    return path


@contextmanager
def _in_run_dir(path: Path) -> Iterator[Path]:
    token = _RUN_DIR.set(path)
    try:
        yield path
    finally:
        _RUN_DIR.reset(token)


def _hydra_output_dir() -> Path | None:
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return None


def _sweep_group(name: str) -> str | None:
    """The W&B group of a multirun's jobs (one run per job, grouped by sweep), else None."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    return f"{name}-{Path(HydraConfig.get().sweep.dir).name}"


def clean_results(results: Mapping[str, Any], name: str = "experiment") -> dict[str, Any]:
    """Check that results are flat numbers/strings; numpy/torch scalars become Python numbers."""
    if not isinstance(results, Mapping):
        raise TypeError(f"experiment {name!r} must return a dict of numbers and strings, got {type(results).__name__}")
    out: dict[str, Any] = {}
    for key, value in results.items():
        if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
            value = value.item()
        if isinstance(value, (bool, str)) or value is None:
            out[str(key)] = value
        elif isinstance(value, numbers.Integral):
            out[str(key)] = int(value)
        elif isinstance(value, numbers.Real):
            value = float(value)  # NaN/inf become None, exactly as results.json writes them (null)
            out[str(key)] = value if math.isfinite(value) else None
        else:
            raise TypeError(
                f"experiment {name!r} returned {type(value).__name__} for {key!r}; results.json holds numbers "
                f"and strings only (write larger outputs to their own file in run_dir())."
            )
    return out


def run_experiment(cfg: DictConfig, out_dir: str | Path | None = None) -> dict[str, Any]:
    """Run experiment ``cfg.runner`` (default ``cfg.name``) and record it in ``out_dir``.

    ``out_dir`` defaults to Hydra's output folder (``hydra.run.dir``). The config is validated
    first (``nag.experiments.config.validate_config``: a bad value is a ConfigError before
    anything runs). Writes ``config.yaml`` (validated, with the parts' defaults) before the run
    and ``results.json`` after it, both atomically; logs the results to W&B (one run per job; a
    multirun's jobs are grouped by sweep). In a distributed job (DDP, SLURM) every rank runs the
    experiment and only rank zero writes.
    """
    from nag.distributed import is_rank_zero
    from nag.io import atomic_write_json, atomic_write_text
    from nag.wandb_utils import log_metrics, wandb_run

    from nag.experiments.config import validate_config

    name = cfg.get("runner") or cfg.get("name")
    if not name:
        raise ConfigError("the config has no 'name': select an experiment with experiment=<name>.")
    fn = get_experiment(str(name))
    cfg = validate_config(cfg)  # types and ranges, before anything runs; the parts' defaults filled in
    threads = cfg.get("torch_threads") or os.environ.get("NAG_NUM_THREADS")
    if threads:  # on a shared CPU more threads than free cores thrash (20x slower set-encoder steps here)
        import torch

        try:
            torch.set_num_threads(int(threads))
        except ValueError:
            raise ConfigError(f"NAG_NUM_THREADS must be an int >= 1, got {threads!r}") from None
    path = Path(out_dir) if out_dir is not None else _hydra_output_dir()
    if path is None:
        raise ConfigError("run_experiment needs out_dir when it is not called from a Hydra run.")
    atomic_write_text(path / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    wandb_cfg = plain(cfg.get("wandb")) or {}
    with wandb_run(
        plain(cfg),
        project=wandb_cfg.get("project", "nag"),
        name=f"{cfg.get('name', name)}-{path.name}",
        group=_sweep_group(str(cfg.get("name", name))),
        mode=wandb_cfg.get("mode") if is_rank_zero() else "disabled",  # None: $WANDB_MODE, else offline
        dir=str(path),
    ), _in_run_dir(path):
        results = clean_results(fn(cfg), str(name))
        log_metrics({k: v for k, v in results.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
    atomic_write_json(path / "results.json", results)
    return results


__all__ = [
    "EXPERIMENTS",
    "experiment",
    "get_experiment",
    "list_experiments",
    "build_space",
    "build_task",
    "build_budget",
    "distinct_sample",
    "clean_results",
    "plain",
    "trainer_settings",
    "run_dir",
    "run_experiment",
]
