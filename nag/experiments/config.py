"""Experiment schemas: every composed config is validated by pydantic before a run starts.

An experiment declares its schema, a ``RunConfig`` subclass, in its module and registers it with
``@experiment("<name>", schema=...)``. The schema declares types and ranges only; the values live
in the experiment's YAML recipe and in the config groups, and the parts' own defaults (solver
steps, training budget, ...) live in the parts. Plugin groups (``space``, ``task``, ``solver``,
...) are checked against the signature of the registered factory they name, so a plugin's schema
is its constructor.

``validate_config(cfg)`` returns the config as the run sees it: validated, with the defaults of
the parts filled in, so ``config.yaml`` records what ran.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar

from omegaconf import DictConfig, OmegaConf
from pydantic import BaseModel, ConfigDict, Field

from nag.diffusion.sampling import SamplerSettings
from nag.diffusion.prior import PriorConfig
from nag.modules.trainer import TrainerSettings
from nag.schema import PluginConfig, plain, validate
from nag.tables.table import BenchmarkConfig
from nag.wandb_utils import WandbConfig

PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
Fraction = Annotated[float, Field(gt=0, lt=1)]


class SpaceConfig(PluginConfig):
    """The ``space:`` block (group ``space/``): ``{name, **constructor settings}`` of a registered space."""

    kind: ClassVar[str] = "search space"

    @classmethod
    def factory(cls, name: str) -> Any:
        from nag.spaces import SPACES, list_spaces

        list_spaces()  # registers the built-in spaces
        return SPACES.get(name)  # an unknown name lists the known spaces


class TaskConfig(PluginConfig):
    """The ``task:`` block (group ``task/``): ``{name, classes, **builder settings}`` of a registered
    task; ``classes`` (original class ids) restricts it to a class subset."""

    kind: ClassVar[str] = "task"

    classes: list[int] | None = None

    @classmethod
    def factory(cls, name: str) -> Any:
        from nag.data import TASKS, list_tasks

        list_tasks()  # registers the built-in tasks
        return TASKS.get(name)


class ExecutorConfig(PluginConfig):
    """The ``executor:`` block (group ``executor/``): ``{name, **settings}`` of a registered executor
    (``local``, ``ray``): where architectures are evaluated (docs/scale.md)."""

    kind: ClassVar[str] = "executor"

    @classmethod
    def factory(cls, name: str) -> Any:
        from nag.executor import EXECUTORS

        return EXECUTORS.get(name)


class RunConfig(BaseModel):
    """What every run has: the keys of experiments/config.yaml and its default groups."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True, protected_namespaces=())

    name: str
    runner: str | None = None
    seed: NonNegativeInt
    wandb: WandbConfig
    space: SpaceConfig
    task: TaskConfig
    benchmark: BenchmarkConfig
    trainer: TrainerSettings
    executor: ExecutorConfig


class OpenRunConfig(RunConfig):
    """The schema of an experiment that declares none (a plugin's): the common keys are checked
    where present, its own keys are passed through as given."""

    model_config = ConfigDict(extra="allow")

    seed: NonNegativeInt | None = None
    wandb: WandbConfig | None = None
    space: SpaceConfig | None = None
    task: TaskConfig | None = None
    benchmark: BenchmarkConfig | None = None
    trainer: TrainerSettings | None = None
    executor: ExecutorConfig | None = None


class SamplingConfig(RunConfig, SamplerSettings):
    """A run that samples from a prior: ``prior`` and the sampler keys (``solver``, ``batch_size``,
    ``max_norm_ratio``, ``diversity``; groups ``prior/``, ``solver/``, ``sampler/``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prior: PriorConfig
    torch_threads: PositiveInt | None = None


def register_config_nodes() -> None:
    """Hydra ConfigStore nodes that the group options extend (``defaults: [/_schema/solver/ode@_here_]``):
    every key with the default its part declares, so a YAML option states only what it changes and
    the command line can still set every key (``solver.snr=0.2``).

    ``_schema/trainer`` (TrainerSettings), ``_schema/train`` (TrainBudget), ``_schema/prior``,
    ``_schema/diversity`` (DiversityConfig) and ``_schema/solver/<name>`` per registered solver.
    """
    from hydra.core.config_store import ConfigStore

    from nag.diffusion.sampling import DiversityConfig
    from nag.diffusion.solvers import SOLVERS, SolverConfig
    from nag.evaluation.training import TrainBudget

    store = ConfigStore.instance()
    if "_schema" in store.repo and "solver" in store.repo["_schema"]:
        return  # registered in this process already
    for name, model in (("trainer", TrainerSettings), ("train", TrainBudget), ("prior", PriorConfig),
                        ("diversity", DiversityConfig)):
        store.store(group="_schema", name=name, node=_dump(model.model_validate({})))
    for name in SOLVERS.names():
        store.store(group="_schema/solver", name=name, node=_dump(SolverConfig(name=name)))


PLUGIN_GROUPS: dict[str, type[PluginConfig]] = {"space": SpaceConfig, "task": TaskConfig}


def register_plugin_option(group: str, name: str) -> bool:
    """Make ``<group>=<name>`` selectable for a registered space or task that has no YAML option:
    the option is ``{name, **its constructor's defaults}`` (``???`` for a setting without one).
    False when nothing is registered under ``name``."""
    from hydra.core.config_store import ConfigStore

    from nag.errors import NagError
    from nag.schema import signature_defaults

    model = PLUGIN_GROUPS[group]
    try:
        factory = model.factory(name)
    except NagError:
        return False
    node = {"name": name, **signature_defaults(factory, model.skip, (*model.exclude, *model.model_fields))}
    ConfigStore.instance().store(group=group, name=name, node=node)
    return True


def schema_of(cfg: DictConfig | Mapping[str, Any]) -> type[BaseModel]:
    """The schema of the experiment ``cfg`` runs (``runner``, else ``name``); ``OpenRunConfig`` when
    the experiment declares none or cannot be imported here (running it reports why)."""
    from nag.errors import NagError
    from nag.experiments import get_experiment

    runner = cfg.get("runner") or cfg.get("name")
    try:
        fn = get_experiment(str(runner))
    except NagError:
        return OpenRunConfig
    return getattr(fn, "schema", None) or OpenRunConfig


def validate_config(cfg: DictConfig | Mapping[str, Any]) -> DictConfig:
    """``cfg`` checked against its experiment's schema; returns it with the parts' defaults filled in.

    A wrong type, an out-of-range value or an unknown key is a ConfigError with one line naming
    the key, the value and what is accepted.
    """
    data = {str(k): plain(cfg[k]) for k in cfg if k != "hydra"}  # resolved; Hydra's own node is not ours
    model = validate(schema_of(data), data)
    return OmegaConf.create(_dump(model, exclude_unset=isinstance(model, OpenRunConfig)))


def _dump(model: BaseModel, exclude_unset: bool = False) -> dict[str, Any]:
    """The validated config as plain YAML-able containers (tuples as lists)."""

    def clean(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    return clean(model.model_dump(by_alias=False, exclude_unset=exclude_unset))


__all__ = [
    "Fraction",
    "NonNegativeInt",
    "OpenRunConfig",
    "PositiveInt",
    "RunConfig",
    "SamplingConfig",
    "SpaceConfig",
    "TaskConfig",
    "PLUGIN_GROUPS",
    "register_config_nodes",
    "register_plugin_option",
    "schema_of",
    "validate_config",
]
