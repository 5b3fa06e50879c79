"""A task condition that transfers by similarity: a kernel over the meta-training tasks.

``TaskKernelEncoder`` gives each of the T meta-training tasks a learned embedding (a prototype)
and embeds any task, seen or not, as the kernel-weighted mean of the prototypes:

    a_u = exp(-d(D, D_u) / tau),   emb(D) = (sum_u a_u * prototype_u + kappa * mean_u prototype_u) / (sum_u a_u + kappa)

where ``d`` is a distance between fixed task descriptors (statistics of the per-class image
features ``[K, n, F]``, each block of statistics scaled as a whole over the training tasks; in
units of the training tasks' median pairwise distance). A training task is nearest to itself, so with a small ``tau`` it is
trained mostly on its own prototype; an unseen task gets its nearest training tasks' mix. The
pseudo-count ``kappa`` pulls a task that is far from every training task (all ``a_u`` small)
toward the average prototype, the centre of the training tasks' embeddings; with ``kappa = 0``
the nearest tasks always win, however far they are.

Why not learn the map features -> embedding (``DatasetEncoder``)? With tens of meta-training tasks
a learned set encoder falls back to one ranking for every task (docs/transfer_nas.md); a kernel
needs no more tasks than it has to interpolate between. With every task's features alike (the
unconditioned baseline) the weights are uniform and every task gets the same embedding.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def task_descriptor(features: Tensor, counts: Tensor | None = None) -> Tensor:
    """Per-task statistics of per-class feature sets. [T, K, n, F] -> [T, 3F + 1].

    Mean and std over all images, the std of the class means (how separable the classes look),
    and log K. ``counts`` [T]: real classes per task when padded along K (padding never read).
    A spread of a single value (one class, or one image) is 0.
    """
    t, k, n, f = features.shape
    x = features.float()
    counts = torch.full((t,), k, device=x.device) if counts is None else counts.to(x.device)
    k_real = counts.to(x.dtype).view(t, 1)                                        # [T, 1]
    real = (torch.arange(k, device=x.device).view(1, k) < counts.view(t, 1)).to(x.dtype)  # [T, K]
    class_means = x.mean(2)                                                        # [T, K, F]
    mean = (class_means * real[..., None]).sum(1) / k_real                         # [T, F]
    sq_dev = ((x - mean[:, None, None]) ** 2).sum(2)                               # [T, K, F]
    within = ((sq_dev * real[..., None]).sum(1) / (k_real * n - 1).clamp_min(1)).sqrt()
    between = ((((class_means - mean[:, None]) ** 2) * real[..., None]).sum(1) / (k_real - 1).clamp_min(1)).sqrt()
    return torch.cat([mean, within, between, k_real.log()], dim=-1)


class TaskKernelEncoder(nn.Module):
    """Task embedding as a kernel-weighted mean of learned per-training-task prototypes.

    forward(features): ``[K, n, F]`` -> ``[D]``, or ``[T', K, n, F]`` -> ``[T', D]``;
    ``exclude`` [T', T] (boolean) leaves those training tasks out of each row's weights.

    Args:
        in_dim: feature size F.
        out_dim: embedding size D.
        num_tasks: T, the meta-training tasks (``set_reference`` records their descriptors).
        tau: kernel width, in units of the training tasks' median descriptor distance.
        kappa: pseudo-count of the average prototype (0: none).
    """

    def __init__(self, in_dim: int, out_dim: int, num_tasks: int, tau: float = 0.1, kappa: float = 0.0) -> None:
        super().__init__()
        if num_tasks < 1:
            raise ValueError(f"TaskKernelEncoder needs the number of meta-training tasks (num_tasks >= 1), got {num_tasks}")
        self.in_dim, self.out_dim = in_dim, out_dim
        self.prototypes = nn.Parameter(torch.randn(num_tasks, out_dim))
        dim = 3 * in_dim + 1
        self.register_buffer("reference", torch.zeros(num_tasks, dim))
        self.register_buffer("center", torch.zeros(dim))
        self.register_buffer("spread", torch.ones(dim))
        self.register_buffer("scale", torch.ones(()))
        self.register_buffer("tau", torch.tensor(float(tau)))
        self.register_buffer("kappa", torch.tensor(0.0))
        self.set_width(tau, kappa)

    @torch.no_grad()
    def set_reference(self, features: Tensor, counts: Tensor | None = None) -> None:
        """Record the T training tasks' descriptors, in prototype order. features: [T, K, n, F]."""
        if features.shape[0] != self.prototypes.shape[0]:
            raise ValueError(f"expected features of {self.prototypes.shape[0]} training tasks, got {features.shape[0]}")
        raw = task_descriptor(features, counts)
        self.center.copy_(raw.mean(0))
        f = self.in_dim
        # each block (mean, std, class spread, log K) is scaled as a whole: a dim that varies little stays small
        for block in (slice(0, f), slice(f, 2 * f), slice(2 * f, 3 * f), slice(3 * f, 3 * f + 1)):
            self.spread[block] = raw[:, block].var(0, unbiased=False).mean().sqrt() + 1e-6
        self.reference.copy_((raw - self.center) / self.spread)
        pair = torch.cdist(self.reference, self.reference)
        off = pair[~torch.eye(len(pair), dtype=torch.bool, device=pair.device)]
        self.scale.copy_(off.median().clamp_min(1e-6) if off.numel() else torch.ones(()))

    def set_width(self, tau: float, kappa: float = 0.0) -> None:
        """Set the kernel width ``tau`` (> 0) and the average prototype's pseudo-count ``kappa`` (>= 0)."""
        if not tau > 0 or not kappa >= 0:
            raise ValueError(f"kernel width tau must be > 0 and kappa >= 0, got tau={tau}, kappa={kappa}")
        self.tau.fill_(float(tau))
        self.kappa.fill_(float(kappa))

    def weights(self, features: Tensor, counts: Tensor | None = None, exclude: Tensor | None = None) -> Tensor:
        """Weights over the training tasks, the average prototype last. [T', K, n, F] -> [T', T + 1], rows sum to 1.

        ``exclude`` [T', T] boolean: training tasks left out of each row.
        """
        desc = (task_descriptor(features, counts) - self.center) / self.spread
        logits = -torch.cdist(desc, self.reference) / (self.scale * self.tau)
        if exclude is not None:
            logits = logits.masked_fill(exclude.to(logits.device), -math.inf)
        prior = torch.log(self.kappa).expand(len(logits), 1)  # -inf for kappa = 0
        return torch.softmax(torch.cat([logits, prior], dim=-1), dim=-1)

    def forward(self, features: Tensor, counts: Tensor | None = None, exclude: Tensor | None = None) -> Tensor:
        single = features.dim() == 3
        if single:
            features = features.unsqueeze(0)
        if features.dim() != 4 or features.shape[-1] != self.in_dim:
            raise ValueError(f"TaskKernelEncoder expects features [K, n, {self.in_dim}] or [T, K, n, {self.in_dim}], "
                             f"got {list(features.shape)}")
        emb = self.weights(features, counts, exclude) @ self.prototype_table()
        return emb[0] if single else emb

    def prototype_table(self) -> Tensor:
        """What the weights mix: the T training tasks' prototypes, then their average. -> [T + 1, D]."""
        return torch.cat([self.prototypes, self.prototypes.mean(0, keepdim=True)])
