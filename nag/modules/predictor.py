"""Noise-aware property predictors: training logic (PredictorModule) and the plain Predictor.

A predictor maps a (possibly noisy) architecture state ``x_t [B, N, V]`` and its diffusion time
``t [B]`` to K properties (accuracy, params_M, latency, ...). Noise-aware training perturbs
``x0 = 2 * onehot - 1`` with the prior's SDE at ``t ~ U(eps, T)`` (``nag.diffusion.sde.perturb``,
the same kernel the score model is trained with); a fraction ``clean_frac`` of each batch is
kept clean at ``t = 0``, so the same network is also a good clean predictor (``t = 0``) for
ranking. ``noise_aware=False`` trains on clean states only.

Parametrisation (shared with the score model): the networks see ``c_in(t) x`` with
``c_in = 1 / sqrt(alpha(t)^2 + std(t)^2)``, and regress standardised targets; ``PredictorNet``
maps back to original units. An ensemble of M independently initialised members (each with its
own noise draws) gives a mean and an (epistemic) variance across members; M = 1 has variance 0.
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar

import lightning as L
import numpy as np
import torch
from pydantic import Field
from torch import Tensor, nn

from nag.io import atomic_torch_save
from nag.diffusion.sde import SDE, bcast, build_sde, perturb, sample_time
from nag.errors import CheckpointMismatchError, ConfigError
from nag.modules.trainer import TrainerSettings, build_trainer, quiet_lightning
from nag.registry import Registry
from nag.schema import factory_config
from nag.spaces.base import Arch, SearchSpace

PREDICTOR_NETS: Registry[nn.Module] = Registry("predictor network", group="nag.predictor_nets")
"""Member networks: ``factory(num_ops, adjacency, num_targets, **config)``, ``(x, t, *cond) -> [B, K]``."""

DEFAULT_NET: dict[str, Any] = {"name": "gnn", "conv": "dgcn", "hidden": 64, "layers": 4}
CHECKPOINT_FORMAT = "nag.predictor"
CHECKPOINT_VERSION = 1


def _register_builtins() -> None:
    from nag.modules.nets.gnn import GraphPredictorNet

    if "gnn" not in PREDICTOR_NETS._items:
        PREDICTOR_NETS.register("gnn", GraphPredictorNet)
    if "task_bound" not in PREDICTOR_NETS._items:
        import nag.modules.meta_predictor  # noqa: F401  (registers "meta" and "task_bound")


def build_member(net_config: Mapping[str, Any], num_ops: int, adjacency: Tensor, num_targets: int) -> nn.Module:
    """One member network from ``{"name": ..., **options}``; unknown options are a ConfigError."""
    _register_builtins()
    cfg = dict(net_config)
    name = cfg.pop("name", "gnn")
    return PREDICTOR_NETS.build(name, num_ops, adjacency, num_targets, **cfg)  # checked against its signature


def build_members(
    net_config: Mapping[str, Any], num_ops: int, adjacency: Tensor, num_targets: int, ensemble: int, seed: int
) -> nn.ModuleList:
    """``ensemble`` members, member m initialised under seed ``seed + m`` (global RNG untouched)."""
    if ensemble < 1:
        raise ConfigError(f"ensemble must be a positive number of members, got {ensemble}")
    members = []
    for m in range(ensemble):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + m)
            members.append(build_member(net_config, num_ops, adjacency, num_targets))
    return nn.ModuleList(members)


def as_time(t: float | Tensor, batch: int, device: torch.device) -> Tensor:
    """A scalar or [B] time as a float tensor [B]."""
    t = torch.as_tensor(t, dtype=torch.float32, device=device)
    return t.expand(batch) if t.dim() == 0 else t


class PredictorNet(nn.Module):
    """Ensemble of member nets, input preconditioning and target (de)standardisation.

    ``standardised(x, t, *cond) -> [M, B, K]``; ``forward(x, t, *cond) -> (mean [B, K], var [B, K])``
    in original units (var is the across-member variance, 0 for a single member).
    """

    def __init__(self, members: nn.ModuleList, sde: SDE, num_targets: int) -> None:
        super().__init__()
        self.members = members
        self.sde = sde
        self.register_buffer("y_mean", torch.zeros(num_targets))
        self.register_buffer("y_std", torch.ones(num_targets))

    def set_target_stats(self, mean: Tensor, std: Tensor) -> None:
        self.y_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.y_std.copy_(torch.as_tensor(std, dtype=torch.float32))

    def precondition(self, x: Tensor, t: Tensor) -> Tensor:
        alpha, std = self.sde.marginal_coeffs(t)
        return bcast(torch.rsqrt(alpha.pow(2) + std.pow(2)), x) * x

    def member_output(self, m: int, x: Tensor, t: Tensor, *cond: Any) -> Tensor:
        """Standardised prediction of member m. [B, K]."""
        return self.members[m](self.precondition(x, t), t, *cond)

    def standardised(self, x: Tensor, t: Tensor, *cond: Any) -> Tensor:
        xin = self.precondition(x, t)
        return torch.stack([member(xin, t, *cond) for member in self.members])

    def forward(self, x: Tensor, t: Tensor, *cond: Any) -> tuple[Tensor, Tensor]:
        out = self.standardised(x, t, *cond) * self.y_std + self.y_mean  # [M, B, K]
        var = out.var(dim=0, unbiased=False) if out.shape[0] > 1 else torch.zeros_like(out[0])
        return out.mean(dim=0), var


def noisy_state(sde: SDE, x0: Tensor, noise_aware: bool, clean_frac: float) -> tuple[Tensor, Tensor]:
    """Training inputs: ``x_t`` at ``t ~ U(eps, T)``, with a ``clean_frac`` share clean at t = 0.

    x0: [B, N, V] -> (x [B, N, V], t [B]).
    """
    b = x0.shape[0]
    if not noise_aware:
        return x0, torch.zeros(b, device=x0.device)
    t = sample_time(sde, b, device=x0.device)
    x_t, _, _ = perturb(sde, x0, t)
    clean = torch.rand(b, device=x0.device) < clean_frac
    t = torch.where(clean, torch.zeros_like(t), t)
    return torch.where(bcast(clean, x0), x0, x_t), t


def masked_mse(pred: Tensor, target: Tensor) -> Tensor:
    """Mean squared error over the finite entries of ``target`` (NaN = missing). [B, K]."""
    mask = torch.isfinite(target)
    diff = torch.where(mask, pred - torch.nan_to_num(target), torch.zeros_like(pred))
    return diff.pow(2).sum() / mask.sum().clamp_min(1)


class PredictorModule(L.LightningModule):
    """Training logic of a (noise-aware, possibly ensembled, multi-target) predictor.

    Batches are ``(x0 [B, N, V] in {-1, 1}, y [B, K] standardised, *extra)``; subclasses turn
    ``extra`` into member conditions by overriding ``condition``.

    Args:
        space_describe: ``space.describe()`` (recorded to refuse another space at load time).
        adjacency: [N, N] fixed DAG of the space.
        sde_config: the prior's ``sde.config()``, e.g. ``{"name": "ve", "sigma_min": 0.1, "sigma_max": 5.0}``.
        targets: names of the K predicted properties, e.g. ``["cifar10_test_acc", "params_M"]``.
        net_config: ``{"name": "gnn", **options}`` (see ``GraphEncoder``/``GraphPredictorNet``).
        noise_aware: train on perturbed states (True) or clean states only (False).
        ensemble: number of independently initialised members M.
        lr, weight_decay, warmup_steps: AdamW with linear warm-up then cosine decay to 0.
        clean_frac: share of each batch kept clean at t = 0 in noise-aware training.
        seed: member m is initialised with seed ``seed + m``.
    """

    def __init__(
        self,
        space_describe: Mapping[str, Any],
        adjacency: Any,
        sde_config: Mapping[str, Any],
        targets: Sequence[str],
        net_config: Mapping[str, Any] | None = None,
        noise_aware: bool = True,
        ensemble: int = 1,
        lr: float = 2e-3,
        weight_decay: float = 1e-4,
        warmup_steps: int = 50,
        clean_frac: float = 0.25,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not targets:
            raise ConfigError("a predictor needs at least one target name, e.g. targets=['cifar10_test_acc']")
        if not 0.0 <= clean_frac <= 1.0:
            raise ConfigError(f"clean_frac must be in [0, 1], got {clean_frac}")
        adjacency = torch.as_tensor(adjacency, dtype=torch.float32)
        net_config = dict(net_config or DEFAULT_NET)
        sde = build_sde(sde_config)
        self.save_hyperparameters(
            {
                "space_describe": dict(space_describe),
                "adjacency": adjacency.tolist(),
                "sde_config": sde.config(),
                "targets": list(targets),
                "net_config": net_config,
                "noise_aware": noise_aware,
                "ensemble": ensemble,
                "lr": lr,
                "weight_decay": weight_decay,
                "warmup_steps": warmup_steps,
                "clean_frac": clean_frac,
                "seed": seed,
            }
        )
        self.sde = sde
        self.num_ops = len(space_describe.get("ops", ())) or None
        if self.num_ops is None:
            raise ConfigError("space_describe must list the space's 'ops' (use space.describe())")
        members = build_members(net_config, self.num_ops, adjacency, len(targets), ensemble, seed)
        self.net = PredictorNet(members, sde, len(targets))

    # ----- training ----------------------------------------------------------------------
    def condition(self, extra: Sequence[Tensor]) -> tuple[Any, ...]:
        """Member conditions from a batch's extra tensors (none for a plain predictor)."""
        return ()

    def loss(self, x0: Tensor, y: Tensor, *cond: Any) -> Tensor:
        """Mean over members of the masked MSE on standardised targets; each member draws its own noise."""
        hp = self.hparams
        losses = []
        for m in range(len(self.net.members)):
            x, t = noisy_state(self.sde, x0, hp.noise_aware, hp.clean_frac)
            losses.append(masked_mse(self.net.member_output(m, x, t, *cond), y))
        return torch.stack(losses).mean()

    def training_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        x0, y, *extra = batch
        loss = self.loss(x0, y, *self.condition(extra))
        self.log("train/loss", loss, prog_bar=True, batch_size=x0.shape[0])
        return loss

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        opt = torch.optim.AdamW(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches)) if self._trainer else 1
        warm = min(hp.warmup_steps, total // 4)

        def schedule(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ----- export ------------------------------------------------------------------------
    def member_spec(self) -> dict[str, Any]:
        return dict(self.hparams.net_config)

    def predictor(self, space: SearchSpace | None = None) -> Predictor:
        """A plain Predictor sharing (a frozen copy of) this module's weights."""
        import copy

        hp = self.hparams
        return Predictor(
            copy.deepcopy(self.net).cpu(),
            targets=hp.targets,
            space_describe=hp.space_describe,
            adjacency=torch.tensor(hp.adjacency),
            net_config=self.member_spec(),
            space=space,
        )


class FrozenPredictor:
    """What Predictor and MetaPredictor share: a frozen ``PredictorNet``, the names of its K
    outputs, the space it was trained on, and checkpoint writing and reading.

    Attributes:
        targets: names of the K outputs, in column order.
        space_name, space_describe: the space it was trained on.
        sde_config: the SDE of its noise-aware training (guidance refuses a prior with another).
        ensemble: number of members.
    """

    checkpoint_format: ClassVar[str] = CHECKPOINT_FORMAT
    kind: ClassVar[str] = "predictor"  # in error messages

    def __init__(
        self,
        net: PredictorNet,
        targets: Sequence[str],
        space_describe: Mapping[str, Any],
        adjacency: Tensor,
        net_config: Mapping[str, Any],
        space: SearchSpace | None = None,
    ) -> None:
        self.net = net.eval().requires_grad_(False)
        self.targets = list(targets)
        self.space_describe = dict(space_describe)
        self.space_name = str(self.space_describe.get("name"))
        self.sde_config = net.sde.config()
        self.adjacency = torch.as_tensor(adjacency, dtype=torch.float32)
        self.net_config = dict(net_config)
        self._space = space
        if space is not None:
            check_space(space, self.space_describe, self.kind)

    @property
    def ensemble(self) -> int:
        return len(self.net.members)

    def checkpoint(self) -> dict[str, Any]:
        """Everything ``load`` needs, as plain dicts, lists and tensors."""
        return {
            "format": self.checkpoint_format,
            "version": CHECKPOINT_VERSION,
            "space": self.space_describe,
            "adjacency": self.adjacency.tolist(),
            "sde_config": self.sde_config,
            "targets": self.targets,
            "net_config": self.net_config,
            "ensemble": self.ensemble,
            "state_dict": {k: v.detach().cpu() for k, v in self.net.state_dict().items()},
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the checkpoint atomically (tmp file, then os.replace)."""
        return atomic_torch_save(self.checkpoint(), path)

    @staticmethod
    def net_from_checkpoint(ckpt: Mapping[str, Any]) -> tuple[PredictorNet, Tensor]:
        """The network (weights loaded) and the adjacency recorded in ``ckpt``."""
        adjacency = torch.tensor(ckpt["adjacency"], dtype=torch.float32)
        k = len(ckpt["targets"])
        members = build_members(ckpt["net_config"], len(ckpt["space"]["ops"]), adjacency, k, ckpt["ensemble"], seed=0)
        net = PredictorNet(members, build_sde(ckpt["sde_config"]), k)
        net.load_state_dict(ckpt["state_dict"])
        return net, adjacency


class Predictor(FrozenPredictor):
    """What the rest of nag uses: a frozen predictor, ``x [B, N, V], t [B] -> [B, K]``.

    ``__call__`` returns the ensemble mean in original units and is differentiable w.r.t. ``x``
    (guidance takes ``grad_x``); the network's own parameters are frozen. Attributes: see
    ``FrozenPredictor``.
    """

    @property
    def device(self) -> torch.device:
        return self.net.y_mean.device

    def to(self, device: torch.device | str) -> Predictor:
        self.net.to(device)
        return self

    def __call__(self, x: Tensor, t: float | Tensor) -> Tensor:
        """x: [B, N, V] in [-1, 1], t: [B] or scalar -> mean [B, K] in original units."""
        return self.predict(x, t)[0]

    def predict(self, x: Tensor, t: float | Tensor) -> tuple[Tensor, Tensor]:
        """x: [B, N, V], t: [B] or scalar -> (mean [B, K], var [B, K]) in original units."""
        return self.net(x, as_time(t, x.shape[0], x.device))

    @property
    def space(self) -> SearchSpace:
        if self._space is None:
            from nag.spaces import get_space

            space = get_space(self.space_name)
            check_space(space, self.space_describe, "predictor")
            self._space = space
        return self._space

    def target_index(self, target: str) -> int:
        if target not in self.targets:
            raise ConfigError(f"this predictor has no target {target!r}; its targets are {self.targets}")
        return self.targets.index(target)

    @torch.no_grad()
    def predict_archs(
        self, archs: Sequence[Arch], t: float = 0.0, targets: Sequence[str] | None = None, batch_size: int = 4096
    ) -> tuple[Tensor, Tensor]:
        """Predictions for architectures (clean state at ``t``, default 0) -> (mean [B, K'], var [B, K']).

        ``targets`` selects and orders the columns (default: all of ``self.targets``).
        """
        from nag.modules.arch_data import to_state

        cols = [self.target_index(k) for k in (targets or self.targets)]
        means, vars_ = [], []
        for i in range(0, len(archs), batch_size):
            x = to_state(self.space, list(archs[i : i + batch_size])).to(self.device)
            mean, var = self.predict(x, t)
            means.append(mean[:, cols].cpu())
            vars_.append(var[:, cols].cpu())
        if not means:
            return torch.zeros(0, len(cols)), torch.zeros(0, len(cols))
        return torch.cat(means), torch.cat(vars_)

    # ----- persistence -------------------------------------------------------------------
    @classmethod
    def from_checkpoint(cls, ckpt: Mapping[str, Any], space: SearchSpace | None = None) -> Predictor:
        net, adjacency = cls.net_from_checkpoint(ckpt)
        return cls(net, ckpt["targets"], ckpt["space"], adjacency, ckpt["net_config"], space=space)

    @classmethod
    def load(cls, path: str | os.PathLike, space: SearchSpace | None = None) -> Predictor:
        """Load a saved predictor; refuses a checkpoint of another space (CheckpointMismatchError)."""
        return cls.from_checkpoint(read_checkpoint(path, CHECKPOINT_FORMAT), space)

    def __repr__(self) -> str:
        return (
            f"Predictor(space={self.space_name!r}, targets={self.targets}, ensemble={self.ensemble}, "
            f"sde={self.sde_config.get('name')!r})"
        )


# ----- checkpoint helpers (shared with the meta-predictor) -----------------------------------
def read_checkpoint(path: str | os.PathLike, fmt: str) -> dict[str, Any]:
    """A checkpoint dict of format ``fmt``; CheckpointMismatchError for anything else."""
    from nag.errors import MissingDataError

    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"no checkpoint at {path}")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)  # plain dicts, lists and tensors
    if not isinstance(ckpt, dict) or ckpt.get("format") != fmt:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointMismatchError(f"{path} is not a {fmt} checkpoint (found format {found!r})")
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise CheckpointMismatchError(
            f"{path} has {fmt} version {ckpt.get('version')!r}; this nag reads version {CHECKPOINT_VERSION}"
        )
    return ckpt


def check_space(space: SearchSpace, recorded: Mapping[str, Any], what: str) -> None:
    """Refuse ``space`` when it differs from the space a checkpoint was made for."""
    actual = space.describe()
    if actual != dict(recorded):
        diffs = [k for k in sorted(set(actual) | set(recorded)) if actual.get(k) != recorded.get(k)]
        raise CheckpointMismatchError(
            f"this {what} was trained on space {recorded.get('name')!r} ({dict(recorded)}), not on "
            f"{actual.get('name')!r} ({actual}); they differ in {diffs}. Load it with the space it was "
            f"trained on, or train a new {what} for this space."
        )


# ----- fitting -----------------------------------------------------------------------------
class TensorBatches:
    """Shuffled in-memory minibatches of aligned tensors (one indexing op per batch, no collation).

    Sharded for DDP (``shard(rank, world)``, set by ``train_module`` from its Trainer), every rank
    draws the same order and keeps its 1/W share of each batch, so W ranks together see each batch
    once and their averaged gradients are the whole batch's; a last batch smaller than W is skipped.
    """

    rank: int = 0
    world: int = 1

    def shard(self, rank: int, world: int) -> TensorBatches:
        """Keep rank ``rank``'s share of each batch, of ``world`` ranks."""
        self.rank, self.world = int(rank), int(world)
        return self

    def __init__(self, *tensors: Tensor, batch_size: int, seed: int = 0) -> None:
        self.tensors = tensors
        self.n = tensors[0].shape[0]
        self.batch_size = min(batch_size, self.n)
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        rank, world = self.rank, self.world
        order = torch.randperm(self.n, generator=self.generator)
        for i in range(0, self.n, self.batch_size):
            idx = order[i : i + self.batch_size]
            if len(idx) < world:
                continue
            yield tuple(t[idx[rank::world]] for t in self.tensors)


def target_matrix(y: Mapping[str, Any], targets: Sequence[str], n: int) -> Tensor:
    """Stack ``y[target]`` arrays into [n, K] float (NaN marks a missing value)."""
    missing = [k for k in targets if k not in y]
    if missing:
        raise ConfigError(f"no values for target(s) {missing}; y has {sorted(y)}")
    cols = []
    for k in targets:
        col = np.asarray(y[k], dtype=np.float64).reshape(-1)
        if col.shape[0] != n:
            raise ConfigError(f"target {k!r} has {col.shape[0]} values for {n} architectures")
        cols.append(col)
    return torch.tensor(np.stack(cols, axis=1), dtype=torch.float32)


def target_stats(y: Tensor) -> tuple[Tensor, Tensor]:
    """Per-column nan-mean and nan-std (std floored) of y [n, K]."""
    mask = torch.isfinite(y)
    if not mask.any(0).all():
        raise ConfigError("every target needs at least one finite value to standardise")
    yz = torch.nan_to_num(y)
    cnt = mask.sum(0).clamp_min(1)
    mean = yz.sum(0) / cnt
    var = torch.where(mask, (yz - mean).pow(2), torch.zeros_like(yz)).sum(0) / cnt
    return mean, var.sqrt().clamp_min(1e-6)


def train_module(
    module: L.LightningModule,
    batches: TensorBatches,
    steps: int,
    seed: int,
    progress: bool = False,
    logger: Any = None,
    trainer: TrainerSettings | Mapping[str, Any] | None = None,
) -> None:
    """Run ``steps`` optimisation steps of ``module`` with a Lightning Trainer, deterministically.

    ``trainer``: where to train (``nag.modules.trainer.TrainerSettings``; default: auto accelerator,
    one device). The module ends on the CPU; the caller's global RNG state is restored afterwards.
    """
    with torch.random.fork_rng(devices=[]), quiet_lightning(not progress):
        torch.manual_seed(seed)
        fit = build_trainer(
            trainer,
            max_steps=steps,
            max_epochs=-1,
            logger=logger if logger is not None else False,
            enable_progress_bar=progress,
            gradient_clip_val=1.0,
        )
        fit.fit(module, train_dataloaders=batches.shard(fit.global_rank, fit.world_size))
    module.cpu()


def fit_predictor(
    space: SearchSpace,
    archs: Sequence[Arch],
    y: Mapping[str, Any],
    sde_config: Mapping[str, Any],
    *,
    targets: Sequence[str] | None = None,
    ensemble: Annotated[int, Field(ge=1)] = 1,
    steps: Annotated[int, Field(ge=1)] | None = 1000,
    epochs: Annotated[int, Field(ge=1)] | None = None,
    batch_size: Annotated[int, Field(ge=1)] = 128,
    lr: Annotated[float, Field(gt=0)] = 2e-3,
    net_config: Mapping[str, Any] | None = None,
    noise_aware: bool = True,
    clean_frac: Annotated[float, Field(ge=0, le=1)] = 0.25,
    seed: int = 0,
    progress: bool = False,
    logger: Any = None,
    trainer: TrainerSettings | Mapping[str, Any] | None = None,
) -> Predictor:
    """Train a predictor on ``(archs, y)`` and return the plain Predictor.

    Args:
        space: the search space of ``archs``.
        archs: training architectures.
        y: ``{target: array [len(archs)]}``; NaN marks a missing value.
        sde_config: the prior's SDE config (noise-aware training uses the same kernel).
        targets: which keys of ``y`` to predict, in output order (default: all, sorted).
        ensemble: members M (mean and variance across them).
        steps / epochs: training length (``epochs`` overrides ``steps`` when given).
        net_config: member network (default ``DEFAULT_NET``).
        trainer: where to train (``nag.modules.trainer.TrainerSettings``; default: auto, one device).
    """
    from nag.modules.arch_data import to_state

    if len(archs) < 2:
        raise ConfigError(f"fit_predictor needs at least 2 architectures, got {len(archs)}")
    targets = list(targets or sorted(y))
    x0 = to_state(space, list(archs))
    ys = target_matrix(y, targets, len(archs))
    mean, std = target_stats(ys)
    module = PredictorModule(
        space.describe(),
        space.adjacency,
        sde_config,
        targets,
        net_config,
        noise_aware=noise_aware,
        ensemble=ensemble,
        lr=lr,
        clean_frac=clean_frac,
        seed=seed,
    )
    module.net.set_target_stats(mean, std)
    batches = TensorBatches(x0, (ys - mean) / std, batch_size=batch_size, seed=seed)
    if epochs is not None:
        steps = epochs * len(batches)
    if not steps or steps < 1:
        raise ConfigError(f"training length must be positive: got steps={steps}, epochs={epochs}")
    train_module(module, batches, steps, seed, progress, logger, trainer)
    return module.predictor(space)


def fit_on_table(
    table: Any, rows: Sequence[int], targets: Sequence[str], sde_config: Mapping[str, Any], seed: int = 0,
    **options: Any,
) -> Predictor:
    """``fit_predictor`` on rows ``rows`` of a ``BenchmarkTable``: its archs and its ``targets`` columns."""
    rows = np.asarray(rows)
    archs = [table.archs[i] for i in rows]
    return fit_predictor(table.space, archs, {k: table.values(k)[rows] for k in targets}, sde_config,
                         targets=list(targets), seed=seed, **options)


# The ``predictor:`` config block: fit_predictor's options (the experiment supplies the data).
PredictorOptions = factory_config(
    fit_predictor, kind="predictor options", skip=4, exclude=("targets", "seed", "progress", "logger", "trainer")
)

__all__ = [
    "DEFAULT_NET",
    "PredictorOptions",
    "PREDICTOR_NETS",
    "Predictor",
    "PredictorModule",
    "PredictorNet",
    "TensorBatches",
    "as_time",
    "build_member",
    "build_members",
    "check_space",
    "fit_on_table",
    "fit_predictor",
    "masked_mse",
    "noisy_state",
    "read_checkpoint",
    "train_module",
]
