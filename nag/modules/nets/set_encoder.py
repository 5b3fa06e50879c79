"""Set Transformer blocks (Lee et al. 2019) and the dataset (task) encoder of the meta-predictor.

``DatasetEncoder`` turns per-class feature sets ``[K, n, F]`` (K classes, n samples, F features)
into one task embedding ``[D]``: an intra-class set pooling per class, then an inter-class set
pooling over the K class embeddings. Both poolings are permutation invariant, so the embedding
does not depend on the order of samples within a class nor on the order of the classes.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


class MAB(nn.Module):
    """Multihead attention block: ``H = LN(Q + Att(Q, K, K))``, ``out = LN(H + rFF(H))``.

    q: [B, Nq, D], k: [B, Nk, Dk] -> [B, Nq, D].
    """

    def __init__(self, dim_q: int, dim_k: int, dim: int, heads: int = 4) -> None:
        super().__init__()
        self.proj_q = nn.Linear(dim_q, dim) if dim_q != dim else nn.Identity()
        self.att = nn.MultiheadAttention(dim, heads, kdim=dim_k, vdim=dim_k, batch_first=True)
        self.ff = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))
        self.ln1 = nn.LayerNorm(dim)
        self.ln2 = nn.LayerNorm(dim)

    def forward(self, q: Tensor, k: Tensor) -> Tensor:
        q = self.proj_q(q)
        h = self.ln1(q + self.att(q, k, k, need_weights=False)[0])
        return self.ln2(h + self.ff(h))


class SAB(nn.Module):
    """Set attention block, permutation equivariant. x: [B, n, d_in] -> [B, n, dim]."""

    def __init__(self, dim_in: int, dim: int, heads: int = 4) -> None:
        super().__init__()
        self.mab = MAB(dim_in, dim_in, dim, heads)

    def forward(self, x: Tensor) -> Tensor:
        return self.mab(x, x)


class ISAB(nn.Module):
    """Induced set attention block (O(n m) instead of O(n^2)), permutation equivariant.

    x: [B, n, d_in] -> [B, n, dim], through ``m`` learned inducing points.
    """

    def __init__(self, dim_in: int, dim: int, heads: int = 4, num_inducing: int = 16) -> None:
        super().__init__()
        self.inducing = nn.Parameter(torch.randn(1, num_inducing, dim) / dim**0.5)
        self.mab_induce = MAB(dim, dim_in, dim, heads)
        self.mab_out = MAB(dim_in, dim, dim, heads)

    def forward(self, x: Tensor) -> Tensor:
        h = self.mab_induce(self.inducing.expand(x.shape[0], -1, -1), x)
        return self.mab_out(x, h)


class PMA(nn.Module):
    """Pooling by multihead attention onto ``num_seeds`` learned seeds, permutation invariant.

    x: [B, n, dim] -> [B, num_seeds, dim].
    """

    def __init__(self, dim: int, heads: int = 4, num_seeds: int = 1) -> None:
        super().__init__()
        self.seeds = nn.Parameter(torch.randn(1, num_seeds, dim) / dim**0.5)
        self.ff = nn.Sequential(nn.Linear(dim, dim), nn.ReLU())
        self.mab = MAB(dim, dim, dim, heads)

    def forward(self, x: Tensor) -> Tensor:
        return self.mab(self.seeds.expand(x.shape[0], -1, -1), self.ff(x))


class SetPool(nn.Module):
    """Encoder (2 equivariant blocks) + PMA: a set [B, n, d_in] -> one vector [B, dim]."""

    def __init__(self, dim_in: int, dim: int, heads: int = 4, num_inducing: int | None = 16) -> None:
        super().__init__()
        if num_inducing:
            self.enc = nn.Sequential(ISAB(dim_in, dim, heads, num_inducing), ISAB(dim, dim, heads, num_inducing))
        else:
            self.enc = nn.Sequential(SAB(dim_in, dim, heads), SAB(dim, dim, heads))
        self.pool = PMA(dim, heads, num_seeds=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.enc(x)).squeeze(1)


class DatasetEncoder(nn.Module):
    """Task embedding from per-class feature sets (intra-class, then inter-class pooling).

    forward(features): ``[K, n, F]`` -> ``[D]``, or batched ``[T, K, n, F]`` -> ``[T, D]``.

    Args:
        in_dim: feature size F (512 for a ResNet-18 backbone).
        hidden: width of the set blocks.
        out_dim: task embedding size D.
        heads: attention heads.
        num_inducing: inducing points of the ISABs (None or 0: plain SABs).
    """

    def __init__(
        self, in_dim: int = 512, hidden: int = 128, out_dim: int = 64, heads: int = 4, num_inducing: int | None = 16
    ) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.out_dim = out_dim
        self.intra = SetPool(in_dim, hidden, heads, num_inducing)
        self.inter = SetPool(hidden, hidden, heads, num_inducing)
        self.out = nn.Linear(hidden, out_dim)

    def forward(self, features: Tensor, counts: Tensor | None = None) -> Tensor:
        """``counts`` [T]: the real number of classes of each task when ``features`` is padded
        along K (tasks with fewer classes than K); padding classes are never read."""
        single = features.dim() == 3
        if single:
            features = features.unsqueeze(0)
        if features.dim() != 4 or features.shape[-1] != self.in_dim:
            raise ValueError(
                f"DatasetEncoder expects features [K, n, {self.in_dim}] or [T, K, n, {self.in_dim}], "
                f"got {list(features.shape if not single else features.shape[1:])}"
            )
        t, k, n, f = features.shape
        if counts is None or bool((counts == k).all()):
            emb = self._encode(features)
        else:  # tasks grouped by their class count, each group one batch
            emb = features.new_empty(t, self.out_dim)
            for c in torch.unique(counts).tolist():
                rows = (counts == c).nonzero(as_tuple=True)[0]
                emb[rows] = self._encode(features[rows, : int(c)])
        return emb[0] if single else emb

    def _encode(self, features: Tensor) -> Tensor:
        """[T, K, n, F] (K real classes each) -> [T, D]."""
        t, k, n, f = features.shape
        per_class = self.intra(features.reshape(t * k, n, f)).reshape(t, k, -1)  # [T, K, hidden]
        return self.out(self.inter(per_class))
