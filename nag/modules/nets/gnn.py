"""Graph encoders over a space's fixed DAG, built on torch_geometric.

Every architecture of a space shares one adjacency; only the node features differ. So a batch
of B graphs is one block-diagonal graph whose ``edge_index`` (and GCN edge weights) depend
only on B: ``FixedGraph`` builds it once per (B, device) and caches it. Node features are
dense ``x [B, N, V]`` and may be continuous (a noisy ``x_t`` during guidance); everything is
differentiable w.r.t. ``x``.

Message-passing layers are registered by name in ``GRAPH_CONVS``:

* ``"dgcn"``: directed GCN (as BRP-NAS / MetaD2A): separate GCN propagation along the edges and
  against them, averaged, so information flows both from inputs to outputs and back.
* ``"gin"``: GIN on the symmetrised DAG.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch_geometric.nn import GCNConv, GINConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm

from nag.errors import ConfigError
from nag.modules.nets.embeddings import TimeEmbedding
from nag.registry import Registry


@dataclass(frozen=True)
class BatchedGraph:
    """B copies of the fixed DAG as one graph of B*N nodes.

    ``fwd``/``bwd``: edge_index [2, E'] with self loops along / against the edges, and their
    symmetric GCN normalisation weights [E']; ``sym``: edge_index of the symmetrised DAG.
    """

    fwd: Tensor
    fwd_weight: Tensor
    bwd: Tensor
    bwd_weight: Tensor
    sym: Tensor


class FixedGraph(nn.Module):
    """The space's adjacency [N, N] (``A[i, j] = 1`` for i -> j), batched on demand and cached."""

    def __init__(self, adjacency: Tensor) -> None:
        super().__init__()
        adjacency = torch.as_tensor(adjacency, dtype=torch.float32)
        if adjacency.dim() != 2 or adjacency.shape[0] != adjacency.shape[1]:
            raise ConfigError(f"adjacency must be a square [N, N] matrix, got {list(adjacency.shape)}")
        self.num_nodes = int(adjacency.shape[0])
        self.register_buffer("adjacency", adjacency)
        edges = adjacency.nonzero().T.contiguous()  # [2, E], row 0 = source
        fwd, fwd_w = gcn_norm(edges, num_nodes=self.num_nodes, add_self_loops=True)
        bwd, bwd_w = gcn_norm(edges.flip(0), num_nodes=self.num_nodes, add_self_loops=True)
        sym = torch.cat([edges, edges.flip(0)], dim=1)
        self._base = BatchedGraph(fwd, fwd_w, bwd, bwd_w, sym)
        self._cache: dict[tuple[int, str], BatchedGraph] = {}

    def batched(self, batch: int, device: torch.device) -> BatchedGraph:
        key = (batch, str(device))
        graph = self._cache.get(key)
        if graph is None:
            offsets = torch.arange(batch, device=device) * self.num_nodes

            def tile(ei: Tensor) -> Tensor:
                return (ei.to(device).unsqueeze(1) + offsets.view(1, -1, 1)).reshape(2, -1)

            def tile_w(w: Tensor) -> Tensor:
                return w.to(device).repeat(batch)

            b = self._base
            graph = BatchedGraph(tile(b.fwd), tile_w(b.fwd_weight), tile(b.bwd), tile_w(b.bwd_weight), tile(b.sym))
            if len(self._cache) > 32:  # bounded: batch sizes seen in practice are few
                self._cache.clear()
            self._cache[key] = graph
        return graph


class DirectedGCNLayer(nn.Module):
    """``(GCN_A(h) + GCN_{A^T}(h)) / 2``. h: [B*N, d_in] -> [B*N, d_out]."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.fwd = GCNConv(d_in, d_out, normalize=False, add_self_loops=False)
        self.bwd = GCNConv(d_in, d_out, normalize=False, add_self_loops=False)

    def forward(self, h: Tensor, g: BatchedGraph) -> Tensor:
        return 0.5 * (self.fwd(h, g.fwd, g.fwd_weight) + self.bwd(h, g.bwd, g.bwd_weight))


class GINLayer(nn.Module):
    """GIN on the symmetrised DAG. h: [B*N, d_in] -> [B*N, d_out]."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        mlp = nn.Sequential(nn.Linear(d_in, d_out), nn.ReLU(), nn.Linear(d_out, d_out))
        self.conv = GINConv(mlp, train_eps=True)

    def forward(self, h: Tensor, g: BatchedGraph) -> Tensor:
        return self.conv(h, g.sym)


GRAPH_CONVS: Registry[Callable[[int, int], nn.Module]] = Registry("graph convolution", group="nag.graph_convs")
GRAPH_CONVS.register("dgcn", DirectedGCNLayer)
GRAPH_CONVS.register("gin", GINLayer)


class GraphEncoder(nn.Module):
    """x [B, N, V], t [B] -> embedding [B, out_dim] (``out_dim = hidden + time_dim``).

    Node features are projected to ``hidden``, a learned per-node position embedding (optional)
    and the time embedding are added, ``layers`` message-passing layers (residual) run over the
    fixed graph, the nodes are mean-pooled, and the time embedding is concatenated.

    Args:
        num_ops: V, the node-feature size.
        adjacency: [N, N] fixed DAG.
        conv: name in GRAPH_CONVS ("dgcn" or "gin").
        hidden: node width (144 in MetaD2A / DiffusionNAG).
        layers: number of message-passing layers.
        time_dim: size of the time embedding (0: no time input, a clean-only encoder).
        node_positions: add a learned embedding of each node's slot.
        dropout: dropout after each layer.
    """

    def __init__(
        self,
        num_ops: int,
        adjacency: Tensor,
        conv: str = "dgcn",
        hidden: int = 144,
        layers: int = 4,
        time_dim: int = 32,
        node_positions: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.graph = FixedGraph(adjacency)
        n = self.graph.num_nodes
        self.inp = nn.Linear(num_ops, hidden)
        self.pos = nn.Parameter(torch.zeros(n, hidden)) if node_positions else None
        self.time = TimeEmbedding(time_dim) if time_dim else None
        self.time_to_nodes = nn.Linear(time_dim, hidden) if time_dim else None
        layer_cls = GRAPH_CONVS.get(conv)
        self.convs = nn.ModuleList(layer_cls(hidden, hidden) for _ in range(layers))
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers))
        self.act = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.out_dim = hidden + time_dim

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        b, n, _ = x.shape
        h = self.inp(x)
        if self.pos is not None:
            h = h + self.pos
        temb = None
        if self.time is not None:
            temb = self.time(t)
            h = h + self.time_to_nodes(temb).unsqueeze(1)
        g = self.graph.batched(b, x.device)
        h = h.reshape(b * n, -1)
        for conv, norm in zip(self.convs, self.norms):
            h = h + self.dropout(self.act(conv(norm(h), g)))
        pooled = h.view(b, n, -1).mean(dim=1)
        return pooled if temb is None else torch.cat([pooled, temb], dim=-1)


def mlp_head(d_in: int, hidden: int, d_out: int, dropout: float = 0.0) -> nn.Sequential:
    """Regression head [*, d_in] -> [*, d_out]."""
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, d_out))


class GraphPredictorNet(nn.Module):
    """Graph encoder + MLP head: x [B, N, V], t [B] -> [B, K] (standardised targets).

    Keyword options are those of ``GraphEncoder`` plus ``head_hidden`` and ``head_dropout``.
    """

    forwards_kwargs_to = GraphEncoder

    def __init__(
        self,
        num_ops: int,
        adjacency: Tensor,
        num_targets: int,
        head_hidden: int = 128,
        head_dropout: float = 0.0,
        **encoder: object,
    ) -> None:
        super().__init__()
        self.encoder = GraphEncoder(num_ops, adjacency, **encoder)  # type: ignore[arg-type]
        self.head = mlp_head(self.encoder.out_dim, head_hidden, num_targets, head_dropout)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return self.head(self.encoder(x, t))


__all__ = [
    "GRAPH_CONVS",
    "BatchedGraph",
    "DirectedGCNLayer",
    "FixedGraph",
    "GINLayer",
    "GraphEncoder",
    "GraphPredictorNet",
    "mlp_head",
]
