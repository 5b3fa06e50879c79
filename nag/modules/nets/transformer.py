"""DAG transformer: the score network over a space's fixed graph.

Nodes attend only along the space's DAG. The attention mask is built once, in ``__init__``,
from the adjacency and stored as a buffer (saved with the weights), so training and sampling
use the same mask by construction. (The official code built the training and sampling masks
from differently spelled options, and they silently differed.)
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nag.errors import ConfigError
from nag.modules.nets.embeddings import TimeEmbedding, sinusoidal_embedding


def _symmetric_with_self_loops(reach: Tensor) -> Tensor:
    return reach | reach.T | torch.eye(reach.shape[0], dtype=torch.bool)


def transitive_closure(adjacency: Tensor) -> Tensor:
    """[N, N] bool: R[i, j] iff there is a directed path i -> ... -> j (length >= 1)."""
    a = adjacency.bool()
    reach = a.clone()
    for _ in range(a.shape[0]):
        new = reach | ((reach.float() @ a.float()) > 0)
        if torch.equal(new, reach):
            break
        reach = new
    return reach


ATTENTION_MASKS: dict[str, Callable[[Tensor], Tensor]] = {
    "adjacency": lambda a: _symmetric_with_self_loops(a.bool()),
    "closure": lambda a: _symmetric_with_self_loops(transitive_closure(a)),
    "none": lambda a: torch.ones(a.shape[0], a.shape[0], dtype=torch.bool),
}


def attention_mask(adjacency: Tensor, mask: str) -> Tensor:
    """[N, N] bool, True where node i may attend to node j."""
    if mask not in ATTENTION_MASKS:
        raise ConfigError(f"unknown attention mask {mask!r}; accepted: {sorted(ATTENTION_MASKS)}")
    return ATTENTION_MASKS[mask](adjacency)


class Block(nn.Module):
    """Pre-LN transformer block with masked multi-head self-attention. h: [B, N, d]."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.0) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ConfigError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.n_heads = n_heads
        self.dropout = dropout
        self.ln1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.ln2 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model))

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:
        b, n, d = h.shape
        q, k, v = self.qkv(self.ln1(h)).view(b, n, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )
        h = h + self.proj(a.transpose(1, 2).reshape(b, n, d))
        return h + self.ff(self.ln2(h))


class DAGTransformer(nn.Module):
    """Score network over a fixed DAG: x [B, N, V], t [B] -> [B, N, V].

    Node features are embedded to ``d_model``; a sinusoidal encoding of ``positions`` and a time
    embedding are added; ``n_layers`` pre-LN blocks attend along ``mask`` ("adjacency": the
    symmetrised DAG plus self loops, "closure": its transitive closure, "none": all pairs); the
    outputs of all blocks are concatenated (``concat_layers``) or the last one is used, and an
    MLP maps them back to V values per node.
    """

    def __init__(
        self,
        num_nodes: int,
        num_ops: int,
        adjacency: Tensor,
        positions: Tensor | None = None,
        d_model: int = 64,
        n_layers: int = 4,
        n_heads: int = 4,
        d_ff: int = 128,
        mask: str = "adjacency",
        concat_layers: bool = True,
        head_hidden: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        adjacency = torch.as_tensor(adjacency)
        if adjacency.shape != (num_nodes, num_nodes):
            raise ConfigError(f"adjacency must be [{num_nodes}, {num_nodes}], got {list(adjacency.shape)}")
        positions = torch.arange(num_nodes) if positions is None else torch.as_tensor(positions)
        if positions.shape != (num_nodes,):
            raise ConfigError(f"positions must be [{num_nodes}], got {list(positions.shape)}")
        self.num_nodes, self.num_ops, self.concat_layers = num_nodes, num_ops, concat_layers
        self.register_buffer("attn_mask", attention_mask(adjacency, mask))
        self.register_buffer("pos_enc", sinusoidal_embedding(positions, d_model), persistent=False)
        self.embed = nn.Linear(num_ops, d_model)
        self.time = TimeEmbedding(d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, d_ff, dropout) for _ in range(n_layers))
        head_in = d_model * (n_layers if concat_layers else 1)
        head_hidden = head_hidden or 2 * d_model
        self.head = nn.Sequential(
            nn.LayerNorm(head_in), nn.Linear(head_in, head_hidden), nn.SiLU(), nn.Linear(head_hidden, num_ops)
        )

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        h = self.embed(x) + self.pos_enc + self.time(t).unsqueeze(1)
        outs = []
        for block in self.blocks:
            h = block(h, self.attn_mask)
            outs.append(h)
        return self.head(torch.cat(outs, dim=-1) if self.concat_layers else h)
