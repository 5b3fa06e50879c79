"""NAS-Bench-201 search space: 15,625 cells, ops on the 8 nodes of one fixed DAG.

Graph view: node 0 = input, nodes 1..6 = the ops of cell edges (1<-0), (2<-0), (2<-1), (3<-0),
(3<-1), (3<-2), node 7 = output. An arch is a tuple of the 6 op names in that order; its
string form is ``|o1~0|+|o2~0|o3~1|+|o4~0|o5~1|o6~2|``.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from functools import cached_property
from typing import Annotated, Any, ClassVar

import torch
from pydantic import Field
from torch import Tensor, nn

from nag.errors import InvalidArchError
from nag.schema import checked
from nag.spaces.base import SearchSpace, coerce_arch
from nag.spaces.costing import count_flops, count_params
from nag.spaces.nb201_ops import EDGES, NB201Network

CELL_OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NB201Arch = tuple[str, str, str, str, str, str]

_STRING_FORMAT = "|op~0|+|op~0|op~1|+|op~0|op~1|op~2|"
_NUM_EDGES = len(EDGES)
_OP_TOKEN_OFFSET = 2  # tokens 0 and 1 are "input" and "output"


class NB201Space(SearchSpace):
    """The NAS-Bench-201 cell space on its fixed 8-node graph.

    Args:
        C: channels of the first stage of the built network (the benchmark uses 16).
        N: cells per stage (the benchmark uses 5).
    """

    name: ClassVar[str] = "nb201"
    ops: tuple[str, ...] = ("input", "output") + CELL_OPS
    num_nodes: int = 8

    @checked
    def __init__(self, C: Annotated[int, Field(ge=1)] = 16, N: Annotated[int, Field(ge=1)] = 5) -> None:
        self.C = C
        self.N = N

    # ----- graph -------------------------------------------------------------------
    @property
    def adjacency(self) -> Tensor:
        a = torch.zeros(8, 8)
        for i, j in ((0, 1), (0, 2), (0, 3), (1, 4), (1, 5), (2, 6), (3, 7), (4, 6), (5, 7), (6, 7)):
            a[i, j] = 1.0
        return a

    def allowed_ops(self) -> Tensor:
        allowed = torch.zeros(8, len(self.ops), dtype=torch.bool)
        allowed[0, 0] = True
        allowed[7, 1] = True
        allowed[1:7, _OP_TOKEN_OFFSET:] = True
        return allowed

    # ----- the whole space, cached once ----------------------------------------------
    @cached_property
    def _archs(self) -> list[NB201Arch]:
        return [tuple(a) for a in itertools.product(CELL_OPS, repeat=_NUM_EDGES)]  # type: ignore[misc]

    @cached_property
    def _tokens_of(self) -> dict[NB201Arch, tuple[int, ...]]:
        op_token = {op: i for i, op in enumerate(self.ops)}
        return {a: (0, *(op_token[o] for o in a), 1) for a in self._archs}

    @cached_property
    def _arch_of(self) -> dict[tuple[int, ...], NB201Arch]:
        return {t: a for a, t in self._tokens_of.items()}

    @property
    def size(self) -> int:
        return len(CELL_OPS) ** _NUM_EDGES

    def enumerate(self) -> list[NB201Arch]:
        """All 15,625 archs; edge ops vary fastest at the last edge, in CELL_OPS order."""
        return list(self._archs)

    # ----- tokens -----------------------------------------------------------------
    def to_tokens(self, arch: Any) -> tuple[int, ...]:
        try:
            return self._tokens_of[arch]
        except (KeyError, TypeError):
            raise InvalidArchError(
                f"{arch!r} is not an NB201 arch: expected a tuple of {_NUM_EDGES} op names from "
                f"{CELL_OPS} (use NB201Space.parse for strings like {_STRING_FORMAT!r})"
            ) from None

    def from_tokens(self, tokens: Sequence[int]) -> NB201Arch:
        arch = self._arch_of.get(tuple(tokens))  # fast path: a list/tuple of python ints
        if arch is None:
            try:
                arch = self._arch_of.get(tuple(int(t) for t in tokens))
            except (TypeError, ValueError):
                arch = None
        if arch is None:
            raise InvalidArchError(
                f"tokens {list(tokens)!r} are not an NB201 arch: expected 8 tokens, 0 ('input') first, "
                f"1 ('output') last, and tokens {_OP_TOKEN_OFFSET}..{len(self.ops) - 1} "
                f"({', '.join(CELL_OPS)}) on nodes 1..6"
            )
        return arch

    def from_tokens_batch(self, tokens: Tensor) -> list[NB201Arch]:
        """tokens [B, 8] long -> B archs, by their row in enumerate() (ops as base-5 digits)."""
        if tokens.dim() != 2 or tokens.shape[1] != 8:
            return super().from_tokens_batch(tokens)  # from_tokens names the first bad row
        tokens = tokens.long()
        ops = tokens[:, 1:7] - _OP_TOKEN_OFFSET
        ok = (tokens[:, 0] == 0) & (tokens[:, 7] == 1) & ((ops >= 0) & (ops < len(CELL_OPS))).all(dim=1)
        if not bool(ok.all()):
            return super().from_tokens_batch(tokens)
        place = len(CELL_OPS) ** torch.arange(_NUM_EDGES - 1, -1, -1)
        archs = self._archs
        return [archs[i] for i in (ops * place).sum(dim=1).tolist()]

    # ----- encode, vectorised over the cached one-hot of every arch --------------------
    @cached_property
    def _index_of(self) -> dict[NB201Arch, int]:
        return {a: i for i, a in enumerate(self._archs)}

    @cached_property
    def _onehot(self) -> Tensor:
        """One-hot of every arch in enumerate() order. [15625, 8, V]."""
        tokens = torch.tensor([self._tokens_of[a] for a in self._archs])
        return torch.nn.functional.one_hot(tokens, len(self.ops)).float()

    def encode_batch(self, archs: Iterable[Any]) -> Tensor:
        """[B, 8, V] float in {0, 1}."""
        archs = list(archs)
        index = self._index_of
        try:
            rows = [index[a] for a in archs]
        except (KeyError, TypeError):
            for a in archs:
                self.to_tokens(a)  # raises InvalidArchError naming the foreign arch
            raise
        return self._onehot[torch.tensor(rows, dtype=torch.long)]

    # ----- strings ----------------------------------------------------------------
    def parse(self, text: str) -> NB201Arch:
        """Strictly parse ``|o1~0|+|o2~0|o3~1|+|o4~0|o5~1|o6~2|`` (surrounding whitespace ignored)."""

        def fail(problem: str) -> InvalidArchError:
            return InvalidArchError(
                f"invalid NB201 arch string {text!r}: {problem}. Expected the format {_STRING_FORMAT!r} "
                f"with each op one of {', '.join(CELL_OPS)}"
            )

        if not isinstance(text, str):
            raise fail(f"expected a str, got {type(text).__name__}")
        nodes = text.strip().split("+")
        if len(nodes) != 3:
            raise fail(f"found {len(nodes)} '+'-separated node group(s), expected 3")
        arch: list[str] = []
        for node, group in enumerate(nodes, start=1):
            if len(group) < 2 or not (group.startswith("|") and group.endswith("|")):
                raise fail(f"node group {node} {group!r} must start and end with '|'")
            entries = group[1:-1].split("|")
            if len(entries) != node:
                raise fail(f"node group {node} {group!r} has {len(entries)} input(s), expected {node}")
            for src, entry in enumerate(entries):
                op, sep, index = entry.partition("~")
                if not sep or index != str(src):
                    raise fail(f"entry {entry!r} of node group {node} must be 'op~{src}'")
                if op not in CELL_OPS:
                    raise fail(f"unknown op {op!r} in {entry!r}")
                arch.append(op)
        return tuple(arch)  # type: ignore[return-value]

    def format(self, arch: Any) -> str:
        self.to_tokens(arch)  # validates
        groups = (arch[0:1], arch[1:3], arch[3:6])
        return "+".join("|" + "|".join(f"{op}~{i}" for i, op in enumerate(g)) + "|" for g in groups)

    # ----- isomorphism ------------------------------------------------------------
    def canonical(self, arch: Any) -> str:
        """NB201's isomorphism key of ``arch`` (6,466 classes; equals the benchmark's ``iso_key``).

        Each node's value is an expression in the input '0': an op on node i gives ``(e_i)@op``,
        'skip_connect' passes ``e_i`` through, and 'none', or any op on an all-zero node, gives the
        zero term '#'. A node is the '+'-join of its sorted terms (summation is commutative), so
        neither the order of summands nor the ops behind a cut matter. The zero terms themselves
        are kept, as NB201 does, so the partition is exactly the benchmark's.
        """
        return _iso_key(coerce_arch(self, arch))

    def normal_form(self, arch: Any) -> tuple[str, ...]:
        """``arch`` with its dead edges set to 'none': edges out of node 1 when node 1 is zero,
        and edges into or out of a node that does not reach the output. Same ``canonical`` key."""
        return _pruned(coerce_arch(self, arch))

    # ----- network and cost --------------------------------------------------------
    def build(self, arch: Any, task: Any = None) -> nn.Module:
        """The official NB201 network for ``arch``: x [B, C_in, H, W] -> logits [B, num_classes]."""
        ops = coerce_arch(self, arch)
        in_channels = task.input_shape[0] if task is not None else self.default_input_shape()[0]
        num_classes = task.num_classes if task is not None else 10
        return NB201Network(ops, C=self.C, N=self.N, num_classes=num_classes, in_channels=in_channels)

    def cost(self, arch: Any) -> dict[str, float]:
        """{'params_M', 'flops_M'} of ``build(arch)`` on CIFAR-10 (3x32x32, 10 classes).

        Every cell edge maps C -> C at its stage's resolution, so the network's params and FLOPs are
        those of the all-'none' network plus a fixed amount per edge op. Those amounts are counted
        once, on real networks (``_edge_costs``); ``tests/test_nb201.py`` checks the sum against
        whole-network counts.
        """
        ops = coerce_arch(self, arch)
        base, per_op = self._edge_costs
        params = base[0] + sum(per_op[op][0] for op in ops)
        flops = base[1] + sum(per_op[op][1] for op in ops)
        return {"params_M": params / 1e6, "flops_M": flops / 1e6}

    @cached_property
    def _edge_costs(self) -> tuple[tuple[int, int], dict[str, tuple[int, int]]]:
        """(params, FLOPs) of the all-'none' network, and what one edge of each op adds to them."""

        def counts(ops: tuple[str, ...]) -> tuple[int, int]:
            with torch.device("meta"):  # shapes only: no weight init, no arithmetic
                model = self.build(ops, None)
            return count_params(model), count_flops(model, self.default_input_shape())

        base = counts(("none",) * _NUM_EDGES)
        per_op = {}
        for op in CELL_OPS:
            params, flops = counts((op,) + ("none",) * (_NUM_EDGES - 1))
            per_op[op] = (params - base[0], flops - base[1])
        return base, per_op


def _pruned(ops: Sequence[str]) -> tuple[str, ...]:
    # Only what the iso key provably ignores: node 1 is the exact zero term when its one input
    # edge is 'none' (nodes 2 and 3 sum several terms, which the key keeps), and a node that
    # does not reach the output contributes nothing, nor do its edges.
    zero = [False, ops[0] == "none", False, False]
    live = {3: True}
    for node in (2, 1, 0):
        live[node] = any(op != "none" and live[dst] for op, (dst, src) in zip(ops, EDGES) if src == node)
    return tuple(
        "none" if zero[src] or not live[src] or not live[dst] else op for op, (dst, src) in zip(ops, EDGES)
    )


def _iso_key(ops: Sequence[str]) -> str:
    nodes = ["0"]
    for to in (1, 2, 3):
        terms = []
        for op, (dst, src) in zip(ops, EDGES):
            if dst != to:
                continue
            if op == "none" or nodes[src] == "#":
                terms.append("#")
            elif op == "skip_connect":
                terms.append(nodes[src])
            else:
                terms.append(f"({nodes[src]})@{op}")
        nodes.append("+".join(sorted(terms)))
    return nodes[3]
