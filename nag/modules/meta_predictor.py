"""Meta-predictor: a noise-aware predictor conditioned on a task (dataset) embedding.

``f(x_t, t, D) = head(GraphEncoder(x_t, t) ⊕ DatasetEncoder(D))`` where ``D`` is the task's
per-class feature sets ``[K, n, F]`` (e.g. 20 images per class through a ResNet-18). Training
reuses ``PredictorModule`` entirely (noise, clean share, ensembles, standardisation, loss); only
the member network and the batch condition differ. ``MetaPredictor.for_task(D)`` binds one task's
embedding and returns an ordinary ``Predictor``, which plugs into guidance like any other.
"""
from __future__ import annotations

import copy
import os
from collections.abc import Collection, Mapping, Sequence
from typing import Annotated, Any

import torch
from pydantic import Field
from torch import Tensor, nn

from nag.errors import CheckpointMismatchError, ConfigError
from nag.modules.nets.gnn import GraphEncoder, mlp_head
from nag.modules.nets.set_encoder import DatasetEncoder
from nag.modules.nets.task_kernel import TaskKernelEncoder
from nag.modules.trainer import TrainerSettings
from nag.modules.predictor import (
    FrozenPredictor,
    PREDICTOR_NETS,
    Predictor,
    PredictorModule,
    PredictorNet,
    TensorBatches,
    read_checkpoint,
    target_stats,
    train_module,
)
from nag.registry import Registry
from nag.schema import factory_config, space_difference
from nag.spaces.base import Arch, SearchSpace

DEFAULT_META_NET: dict[str, Any] = {"name": "meta", "conv": "dgcn", "hidden": 64, "layers": 4, "task_dim": 64}
CHECKPOINT_FORMAT = "nag.meta_predictor"
CHECKPOINT_VERSION = 1


def _set_encoder(feature_dim: int, task_dim: int, net: dict[str, Any]) -> nn.Module:
    return DatasetEncoder(feature_dim, net["set_hidden"], task_dim, net["set_heads"], net["num_inducing"])


def _kernel_encoder(feature_dim: int, task_dim: int, net: dict[str, Any]) -> nn.Module:
    return TaskKernelEncoder(feature_dim, task_dim, net["num_tasks"], net["kernel_tau"])


# How a meta-predictor turns a task's features [K, n, F] into its condition [task_dim].
TASK_ENCODERS: Registry[nn.Module] = Registry("task encoder", group="nag.task_encoders")
TASK_ENCODERS.register("set", _set_encoder)
TASK_ENCODERS.register("kernel", _kernel_encoder)


class Experts(nn.ModuleList):
    """G copies of one module, each applied to the same input: x -> [B, G, ...] (``stack``), or
    expert g to slice g of its input: x [B, G, ...] -> [B, G, ...] (``route``)."""

    def stack(self, *args: Any) -> Tensor:
        return torch.stack([m(*args) for m in self], dim=1)

    def route(self, x: Tensor) -> Tensor:
        return torch.stack([m(x[:, g]) for g, m in enumerate(self)], dim=1)


class MetaPredictorNet(nn.Module):
    """Graph encoder ⊕ task encoder -> head.

    ``forward(x [B, N, V], t [B], task_features [U, K, n, F], index [B], counts [U]) -> [B, num_targets]``:
    row b uses task ``index[b]`` of the U task feature sets (each distinct task is encoded once);
    ``counts``: each task's number of classes when tasks with fewer than K are padded.

    Args:
        feature_dim: F, size of the image features.
        task_dim: size of the task condition.
        task_encoder: ``set`` (a learned set transformer over the features, ``DatasetEncoder``:
            set_hidden, set_heads, num_inducing) or ``kernel`` (learned per-training-task
            prototypes mixed by a kernel on feature statistics, ``TaskKernelEncoder``: num_tasks,
            kernel_tau; fit_meta_predictor sets num_tasks).
        experts: G > 1 gives G (graph encoder, head) pairs, one per group of training tasks
            (``task_groups``: each training task's group, e.g. its image source; kernel only).
            A task's prediction is the experts' predictions weighted by the kernel's mass on each
            group (the average-prototype share spread evenly), so a training task trains its own
            group's expert and an unseen task is ranked by the experts of the tasks it resembles.
        head_hidden, head_dropout: regression head.
        **encoder: GraphEncoder options (conv, hidden, layers, time_dim, ...).
    """

    forwards_kwargs_to = GraphEncoder

    def __init__(
        self,
        num_ops: int,
        adjacency: Tensor,
        num_targets: int,
        feature_dim: int = 512,
        task_dim: int = 64,
        task_encoder: str = "set",
        set_hidden: int = 128,
        set_heads: int = 4,
        num_inducing: int = 16,
        num_tasks: int = 0,
        kernel_tau: float = 0.1,
        experts: int = 1,
        task_groups: Sequence[int] | None = None,
        head_hidden: int = 128,
        head_dropout: float = 0.0,
        **encoder: Any,
    ) -> None:
        super().__init__()
        options = {"set_hidden": set_hidden, "set_heads": set_heads, "num_inducing": num_inducing,
                   "num_tasks": num_tasks, "kernel_tau": kernel_tau}
        self.dataset = TASK_ENCODERS.get(task_encoder)(feature_dim, task_dim, options)
        self.task_dim, self.experts = task_dim, experts
        if experts == 1:
            self.encoder = GraphEncoder(num_ops, adjacency, **encoder)
            self.head = mlp_head(self.encoder.out_dim + task_dim, head_hidden, num_targets, head_dropout)
            self.cond_dim = task_dim
            return
        groups = list(task_groups or [])
        if task_encoder != "kernel" or len(groups) != num_tasks or not all(0 <= g < experts for g in groups):
            raise ConfigError(f"experts={experts} needs task_encoder='kernel' and task_groups: one group in "
                              f"0..{experts - 1} per training task ({num_tasks}); got task_encoder={task_encoder!r}, "
                              f"{len(groups)} groups")
        self.encoder = Experts(GraphEncoder(num_ops, adjacency, **encoder) for _ in range(experts))
        self.head = Experts(mlp_head(self.encoder[0].out_dim + task_dim, head_hidden, num_targets, head_dropout)
                            for _ in range(experts))
        self.register_buffer("groups", nn.functional.one_hot(torch.tensor(groups), experts).float())  # [T, G]
        self.cond_dim = task_dim + experts  # the task embedding, then the experts' weights

    def embed_task(self, task_features: Tensor, counts: Tensor | None = None, **kwargs: Any) -> Tensor:
        """A task's condition: [K, n, F] -> [C], or [T, K, n, F] (``counts`` [T] classes each) -> [T, C]
        (C = ``cond_dim``: the embedding, then with experts their weights); ``kwargs`` go to the
        task encoder (``exclude`` for the kernel)."""
        if self.experts == 1:
            return self.dataset(task_features, counts, **kwargs)
        single = task_features.dim() == 3
        weights = self.dataset.weights(task_features.unsqueeze(0) if single else task_features, counts, **kwargs)
        routes = weights[:, :-1] @ self.groups + weights[:, -1:] / self.experts          # [T', G]
        cond = torch.cat([weights @ self.dataset.prototype_table(), routes], dim=-1)
        return cond[0] if single else cond

    def encode(self, x: Tensor, t: Tensor) -> Tensor:
        """Graph encodings: x [B, N, V], t [B] -> [B, E], or [B, G, E] with experts."""
        return self.encoder(x, t) if self.experts == 1 else self.encoder.stack(x, t)

    def forward_embedded(self, x: Tensor, t: Tensor, task_emb: Tensor) -> Tensor:
        """x [B, N, V], t [B], task_emb [B, C] -> [B, num_targets]."""
        return self.predict_encoded(self.encode(x, t), task_emb)

    def predict_encoded(self, graph_emb: Tensor, task_emb: Tensor) -> Tensor:
        """The head alone, on archs already encoded (``encode``): graph_emb [B, E] or [B, G, E],
        task_emb [B, C] -> [B, num_targets]."""
        if self.experts == 1:
            return self.head(torch.cat([graph_emb, task_emb], dim=-1))
        emb, routes = task_emb[:, :self.task_dim], task_emb[:, self.task_dim:]
        pairs = torch.cat([graph_emb, emb.unsqueeze(1).expand(-1, self.experts, -1)], dim=-1)  # [B, G, E + D]
        return torch.einsum("bg,bgk->bk", routes, self.head.route(pairs))

    def forward(self, x: Tensor, t: Tensor, task_features: Tensor, index: Tensor, counts: Tensor | None = None) -> Tensor:
        return self.forward_embedded(x, t, self.embed_task(task_features, counts)[index])


class TaskBoundNet(nn.Module):
    """A MetaPredictorNet with one task's embedding frozen in: x [B, N, V], t [B] -> [B, K]."""

    forwards_kwargs_to = MetaPredictorNet

    def __init__(self, num_ops: int, adjacency: Tensor, num_targets: int, **meta: Any) -> None:
        super().__init__()
        self.net = MetaPredictorNet(num_ops, adjacency, num_targets, **meta)
        self.register_buffer("task_emb", torch.zeros(self.net.cond_dim))

    @classmethod
    def bind(cls, net: MetaPredictorNet, task_emb: Tensor) -> TaskBoundNet:
        bound = cls.__new__(cls)
        nn.Module.__init__(bound)
        bound.net = copy.deepcopy(net)
        bound.register_buffer("task_emb", task_emb.detach().clone())
        return bound

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return self.net.forward_embedded(x, t, self.task_emb.expand(x.shape[0], -1))


PREDICTOR_NETS.register("meta", MetaPredictorNet)
PREDICTOR_NETS.register("task_bound", TaskBoundNet)


class MetaPredictorModule(PredictorModule):
    """PredictorModule whose members are conditioned on the task of each training row.

    Batches are ``(x0 [B, N, V], y [B, K] standardised, task_index [B])``; ``task_features``
    ``[T, K, n, F]`` holds every training task's feature sets (a non-persistent buffer), tasks
    with fewer classes than K padded with zeros (``task_counts`` [T]: their real class counts).

    Args:
        task_names: the T training tasks, in the order of ``task_features``.
        task_features: [T, K, n, F] per-class feature sets.
        task_counts: [T] classes of each task (None: all K).
        targets: default ``["accuracy"]``.
        **kwargs: PredictorModule options (noise_aware, ensemble, lr, clean_frac, seed, ...).
    """

    def __init__(
        self,
        space_describe: Mapping[str, Any],
        adjacency: Any,
        sde_config: Mapping[str, Any],
        task_names: Sequence[str],
        task_features: Tensor,
        targets: Sequence[str] = ("accuracy",),
        net_config: Mapping[str, Any] | None = None,
        task_counts: Tensor | None = None,
        **kwargs: Any,
    ) -> None:
        net_config = dict(net_config or DEFAULT_META_NET)
        if net_config.get("name", "meta") != "meta":
            raise ConfigError(f"a meta-predictor's net must be 'meta', got {net_config.get('name')!r}")
        net_config["name"] = "meta"
        task_features = torch.as_tensor(task_features, dtype=torch.float32)
        if task_features.dim() != 4 or task_features.shape[0] != len(task_names):
            raise ConfigError(
                f"task_features must be [T, K, n, F] with T = {len(task_names)} tasks, got {list(task_features.shape)}"
            )
        net_config.setdefault("feature_dim", int(task_features.shape[-1]))
        net_config["num_tasks"] = len(task_names)
        super().__init__(space_describe, adjacency, sde_config, list(targets), net_config, **kwargs)
        self.hparams["task_names"] = list(task_names)
        self.register_buffer("task_features", task_features, persistent=False)
        counts = torch.full((len(task_names),), task_features.shape[1]) if task_counts is None else task_counts
        self.register_buffer("task_counts", torch.as_tensor(counts, dtype=torch.long), persistent=False)
        for member in self.net.members:
            if hasattr(member.dataset, "set_reference"):  # a kernel over the training tasks records them
                member.dataset.set_reference(task_features, self.task_counts)

    def condition(self, extra: Sequence[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        (task_index,) = extra
        tasks, index = torch.unique(task_index, return_inverse=True)
        return self.task_features[tasks], index, self.task_counts[tasks]

    def meta_predictor(self, space: SearchSpace | None = None) -> MetaPredictor:
        hp = self.hparams
        return MetaPredictor(
            copy.deepcopy(self.net).cpu(),
            targets=hp.targets,
            space_describe=hp.space_describe,
            adjacency=torch.tensor(hp.adjacency),
            net_config=dict(hp.net_config),
            task_names=hp.task_names,
            space=space,
        )


class MetaPredictor(FrozenPredictor):
    """Frozen meta-predictor. ``for_task(features [K, n, F]) -> Predictor`` for guidance and ranking.

    Attributes: those of ``FrozenPredictor``, and ``task_names`` (the tasks it was trained on).
    """

    checkpoint_format = CHECKPOINT_FORMAT
    kind = "meta-predictor"

    def __init__(
        self,
        net: PredictorNet,
        targets: Sequence[str],
        space_describe: Mapping[str, Any],
        adjacency: Tensor,
        net_config: Mapping[str, Any],
        task_names: Sequence[str] = (),
        space: SearchSpace | None = None,
        encoder: Mapping[str, str] | None = None,
        built_with: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(net, targets, space_describe, adjacency, net_config, space)
        self.task_names = list(task_names)
        self.encoder = dict(encoder) if encoder else None  # the dataset encoder its features came from
        self.built_with = dict(built_with) if built_with else None  # its database's macro network and budget
        self.kernel_scores: dict[str, Any] = {}  # what select_kernel_width chose, when it ran

    @property
    def kernel(self) -> bool:
        """Whether the task condition is a kernel over the training tasks (``task_encoder: kernel``)."""
        return self.net_config.get("task_encoder", "set") == "kernel"

    @property
    def kernel_width(self) -> dict[str, float] | None:
        """``{"tau", "kappa"}`` of a kernel meta-predictor's task condition; None for another encoder."""
        if not self.kernel:
            return None
        encoder = self.net.members[0].dataset
        return {"tau": float(encoder.tau), "kappa": float(encoder.kappa)}

    @torch.no_grad()
    def embed_task(self, task_features: Tensor, leave_out: Collection[str] = ()) -> Tensor:
        """Per-member task embeddings. [K, n, F] -> [M, D]. ``leave_out``: training tasks the
        kernel must not weigh (a kernel meta-predictor only)."""
        feats = torch.as_tensor(task_features, dtype=torch.float32, device=self.net.y_mean.device)
        if feats.dim() != 3:
            raise ConfigError(f"task features must be [K, n, F] (classes, samples, features), got {list(feats.shape)}")
        if not leave_out:
            return torch.stack([m.embed_task(feats) for m in self.net.members])
        unknown = sorted(set(leave_out) - set(self.task_names))
        if not self.kernel or unknown:
            raise ConfigError(f"leave_out needs a kernel meta-predictor trained on those tasks (task_encoder="
                              f"{self.net_config.get('task_encoder', 'set')!r}; not training tasks: {unknown})")
        mask = torch.tensor([[name in leave_out for name in self.task_names]], device=feats.device)
        return torch.stack([m.embed_task(feats.unsqueeze(0), exclude=mask)[0] for m in self.net.members])

    def for_task(self, task_features: Tensor, leave_out: Collection[str] = ()) -> Predictor:
        """Bind one task's features [K, n, F]: a plain Predictor ``x, t -> [B, K]`` for that task
        (``leave_out``: see ``embed_task``)."""
        embs = self.embed_task(task_features, leave_out)
        members = nn.ModuleList(TaskBoundNet.bind(m, e) for m, e in zip(self.net.members, embs))
        net = PredictorNet(members, self.net.sde, len(self.targets))
        net.set_target_stats(self.net.y_mean, self.net.y_std)
        cfg = {**self.net_config, "name": "task_bound"}
        return Predictor(net, self.targets, self.space_describe, self.adjacency, cfg, space=self._space)

    def check_encoder(self, identity: Mapping[str, str]) -> None:
        """Refuse task features from another dataset encoder than the one this meta-predictor was
        trained with (CheckpointMismatchError); meta-predictors saved before encoders were recorded pass."""
        if self.encoder is None or self.encoder.get("fingerprint") == identity.get("fingerprint"):
            return
        raise CheckpointMismatchError(
            f"this meta-predictor was trained on features of dataset encoder {self.encoder}, but the run's "
            f"dataset_encoder is {dict(identity)}: its rankings would be meaningless. Set dataset_encoder "
            f"(backbone, pretrained_path) as it was trained, or train a meta-predictor with this encoder "
            f"(experiment=train_meta_predictor dataset_encoder.pretrained_path=...)"
        )

    def space_difference(self, options: Mapping[str, Any]) -> str | None:
        """How the run's space ``options`` (e.g. ``{"C": 8, "N": 1}``) differ from the macro network
        whose accuracies this meta-predictor learned (``space.N=3 (this run: 1)``); None when they
        agree or it does not know (MetaD2A, older checkpoints)."""
        return space_difference(self.built_with, dict(options))

    # ----- persistence -------------------------------------------------------------------
    def checkpoint(self) -> dict[str, Any]:
        return {**super().checkpoint(), "task_names": self.task_names, "encoder": self.encoder,
                "built_with": self.built_with}

    @classmethod
    def load(cls, path: str | os.PathLike, space: SearchSpace | None = None) -> MetaPredictor:
        """Load a saved meta-predictor; refuses another space (CheckpointMismatchError)."""
        ckpt = read_checkpoint(path, CHECKPOINT_FORMAT)
        net, adjacency = cls.net_from_checkpoint(ckpt)
        return cls(net, ckpt["targets"], ckpt["space"], adjacency, ckpt["net_config"], ckpt.get("task_names", ()), space,
                   ckpt.get("encoder"), ckpt.get("built_with"))

    def __repr__(self) -> str:
        return (
            f"MetaPredictor(space={self.space_name!r}, targets={self.targets}, ensemble={self.ensemble}, "
            f"tasks={len(self.task_names)})"
        )


def pad_classes(features: Sequence[Tensor], names: Sequence[str]) -> tuple[Tensor, Tensor]:
    """Per-task feature sets ``[K_i, n, F]`` -> one ``[T, max K, n, F]`` (zero-padded) and ``[T]`` K_i."""
    shapes = {name: tuple(f.shape) for name, f in zip(names, features)}
    if any(len(s) != 3 for s in shapes.values()) or len({s[1:] for s in shapes.values()}) != 1:
        raise ConfigError(f"training tasks must share n and F in their [K, n, F] features; got {shapes}")
    k = max(f.shape[0] for f in features)
    padded = torch.zeros(len(features), k, *features[0].shape[1:])
    for i, f in enumerate(features):
        padded[i, : f.shape[0]] = f
    return padded, torch.tensor([f.shape[0] for f in features])


def _rows_to_arrays(rows: Sequence[Any]) -> tuple[list[str], list[Arch], list[float]]:
    tasks, archs, values = [], [], []
    for row in rows:
        if isinstance(row, Mapping):
            task, arch, value = row["task"], row["arch"], row["accuracy"]
        else:
            task, arch, value = row
        tasks.append(str(task))
        archs.append(arch)
        values.append(float(value))
    return tasks, archs, values


def fit_meta_predictor(
    space: SearchSpace,
    rows: Sequence[Any],
    task_features: Mapping[str, Tensor],
    sde_config: Mapping[str, Any],
    *,
    target: str = "accuracy",
    ensemble: Annotated[int, Field(ge=1)] = 1,
    steps: Annotated[int, Field(ge=1)] | None = 3000,
    epochs: Annotated[int, Field(ge=1)] | None = None,
    batch_size: Annotated[int, Field(ge=1)] = 128,
    lr: Annotated[float, Field(gt=0)] = 1e-3,
    net_config: Mapping[str, Any] | None = None,
    experts_by: str | None = None,
    noise_aware: bool = True,
    clean_frac: Annotated[float, Field(ge=0, le=1)] = 0.25,
    seed: int = 0,
    progress: bool = False,
    logger: Any = None,
    trainer: TrainerSettings | Mapping[str, Any] | None = None,
) -> MetaPredictor:
    """Train a meta-predictor on (task, arch, value) rows.

    Args:
        rows: ``(task_name, arch, value)`` tuples or mappings with keys task / arch / accuracy.
        task_features: ``{task_name: Tensor [K, n, F]}``; all training tasks share n and F (K,
            the number of classes, may differ).
        target: name of the predicted value (the Predictor's single target).
        experts_by: a row key (e.g. ``source``) whose values group the training tasks: one expert
            network per group, mixed by the kernel (``MetaPredictorNet(experts=...)``; needs
            ``task_encoder: kernel``). None: one network.
        Others as ``fit_predictor``.
    """
    from nag.modules.arch_data import to_state

    tasks, archs, values = _rows_to_arrays(rows)
    if len(archs) < 2:
        raise ConfigError(f"fit_meta_predictor needs at least 2 rows, got {len(archs)}")
    names = sorted(set(tasks))
    missing = [n for n in names if n not in task_features]
    if missing:
        raise ConfigError(f"rows name task(s) {missing} without features; task_features has {sorted(task_features)}")
    if experts_by:
        net_config = {**(net_config or DEFAULT_META_NET), **task_groups(rows, names, experts_by)}
    feats, counts = pad_classes([torch.as_tensor(task_features[n], dtype=torch.float32) for n in names], names)
    index = torch.tensor([names.index(t) for t in tasks])
    y = torch.tensor(values, dtype=torch.float32).unsqueeze(1)
    mean, std = target_stats(y)
    module = MetaPredictorModule(
        space.describe(),
        space.adjacency,
        sde_config,
        names,
        feats,
        targets=[target],
        net_config=net_config,
        noise_aware=noise_aware,
        ensemble=ensemble,
        lr=lr,
        clean_frac=clean_frac,
        seed=seed,
        task_counts=counts,
    )
    module.net.set_target_stats(mean, std)
    batches = TensorBatches(to_state(space, archs), (y - mean) / std, index, batch_size=batch_size, seed=seed)
    if epochs is not None:
        steps = epochs * len(batches)
    if not steps or steps < 1:
        raise ConfigError(f"training length must be positive: got steps={steps}, epochs={epochs}")
    train_module(module, batches, steps, seed, progress, logger, trainer)
    meta = module.meta_predictor(space)
    if meta.kernel:
        select_kernel_width(meta, space, rows, task_features)
    return meta


def task_groups(rows: Sequence[Any], names: Sequence[str], key: str) -> dict[str, Any]:
    """``{"experts": G, "task_groups": [group of each of names]}``: the training tasks grouped by
    the value of ``key`` in their rows (sorted values; G = 1, one network, when all share one)."""
    value: dict[str, Any] = {}
    for r in rows:
        if not isinstance(r, Mapping) or r.get(key) is None:
            raise ConfigError(f"experts_by={key!r} needs every row to carry {key!r}; a row has "
                              f"{sorted(r) if isinstance(r, Mapping) else type(r).__name__}")
        value.setdefault(r["task"], r[key])
    groups = sorted({str(value[n]) for n in names})
    if len(groups) == 1:
        return {"experts": 1}
    return {"experts": len(groups), "task_groups": [groups.index(str(value[n])) for n in names]}


KERNEL_TAUS = (0.03, 0.1, 0.3, 1.0)
KERNEL_KAPPAS = (0.0, 1e-3, 1e-2, 0.1, 1.0, 1e6)  # 1e6: in effect the average prototype for every task


@torch.no_grad()
def select_kernel_width(meta: MetaPredictor, space: SearchSpace, rows: Sequence[Any], task_features: Mapping[str, Tensor],
                        taus: Sequence[float] = KERNEL_TAUS, kappas: Sequence[float] = KERNEL_KAPPAS) -> dict:
    """Choose a kernel meta-predictor's ``tau`` and ``kappa`` on its own training tasks, and set them.

    Each training task is ranked with itself left out of the kernel (how a task like the training
    tasks is ranked) and, when the rows name a ``source`` with at least two values, with its whole
    source left out (how a task from a new source is ranked). The pair with the best mean
    Spearman over both wins; ties go to the wider kernel and the larger pseudo-count. Returns
    ``{"tau", "kappa", "score", "grid": {(tau, kappa): score}}``, also kept as ``meta.kernel_scores``.
    """
    from nag.metrics import spearman
    from nag.modules.arch_data import to_state

    tasks, archs, values = _rows_to_arrays(rows)
    names = meta.task_names
    sources = {r["task"]: r["source"] for r in rows if isinstance(r, Mapping) and r.get("source") is not None}
    index: dict[str, list[int]] = {name: [] for name in names}
    for i, task in enumerate(tasks):
        index[task].append(i)
    feats, counts = pad_classes([torch.as_tensor(task_features[n], dtype=torch.float32) for n in names], names)
    masks = [torch.eye(len(names), dtype=torch.bool)]
    if len(set(sources.values())) > 1 and set(sources) >= set(names):
        masks.append(torch.tensor([[sources[a] == sources[b] for b in names] for a in names]))
    members = list(meta.net.members)
    encoded = {}  # task -> per-member graph encodings of its archs at t = 0
    for name, idx in index.items():
        if idx:
            x, t = to_state(space, [archs[i] for i in idx]), torch.zeros(len(idx))
            encoded[name] = [m.encode(meta.net.precondition(x, t), t) for m in members]
    grid: dict[tuple[float, float], float] = {}
    for tau in taus:
        for kappa in kappas:
            scores = []
            for member in members:
                member.dataset.set_width(tau, kappa)
            for mask in masks:
                embs = [m.embed_task(feats, counts, exclude=mask) for m in members]  # M x [T, D]
                for j, name in enumerate(names):
                    if name not in encoded:
                        continue
                    pred = torch.stack([m.predict_encoded(g, e[j].expand(len(g), -1))
                                        for m, g, e in zip(members, encoded[name], embs)]).mean(0)[:, 0]
                    value = spearman(pred.tolist(), [values[i] for i in index[name]])
                    if value is not None:
                        scores.append(value)
            grid[(float(tau), float(kappa))] = float(sum(scores) / len(scores)) if scores else float("-inf")
    tau, kappa = max(sorted(grid, reverse=True), key=grid.__getitem__)
    for member in members:
        member.dataset.set_width(tau, kappa)
    meta.kernel_scores = {"tau": tau, "kappa": kappa, "score": grid[(tau, kappa)], "grid": grid}
    return meta.kernel_scores


# The ``meta_predictor:`` config block of train_meta_predictor: fit_meta_predictor's options.
MetaPredictorOptions = factory_config(
    fit_meta_predictor, kind="meta-predictor options", skip=4, exclude=("seed", "progress", "logger", "trainer")
)

__all__ = [
    "DEFAULT_META_NET",
    "MetaPredictorOptions",
    "MetaPredictor",
    "MetaPredictorModule",
    "MetaPredictorNet",
    "TaskBoundNet",
    "fit_meta_predictor",
    "pad_classes",
    "select_kernel_width",
]
