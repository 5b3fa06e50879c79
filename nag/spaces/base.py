"""The SearchSpace contract. A space knows its architectures; nothing else in nag does.

An architecture is an immutable, hashable value (a tuple or string), never an nn.Module.
Graph view used by the diffusion model and the predictors:

* ``num_nodes`` N nodes with a fixed ``adjacency`` [N, N] (``A[i, j] = 1`` for an edge i -> j),
* a vocabulary ``ops`` of V operations; node ``i`` holds token ``t_i`` in ``0..V-1``,
  or ``EMPTY`` (an all-zero one-hot row) where the space allows a node to be absent,
* ``positions`` [N]: integer position ids fed to the score network's position encoding.

A new space implements ``ops``, ``num_nodes``, ``adjacency``, ``to_tokens``/``from_tokens``,
``parse``/``format`` and ``build``; encode, decode, sampling and mutation come from here. Training
(``nag.evaluation.train_eval``) trains ``build(arch, task)``; a space with its own recipe defines
``train_eval(arch, task, budget, seed, logger) -> dict`` and is trained that way instead.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from nag.errors import InvalidArchError, NotFiniteSpaceError

Arch = Hashable
EMPTY = -1  # token of an absent node (all-zero one-hot row)

RngLike = "np.random.Generator | int | None"


def as_rng(generator: np.random.Generator | int | None) -> np.random.Generator:
    """Normalise a seed or generator into a numpy Generator."""
    if isinstance(generator, np.random.Generator):
        return generator
    return np.random.default_rng(generator)


def to_unit_scale(x: Tensor) -> Tensor:
    """Node features in [0, 1] or [-1, 1] -> the [0, 1] one-hot scale. x: [B, N, V] -> [B, N, V].

    The scale is read per sample from its median entry: at least (V-1)/V of a one-hot sample's
    entries sit at the "off" level (0, or -1 in the diffusion scale), so a median below -0.5
    means [-1, 1]. Robust to noise well beyond what a denoised sample carries.
    """
    x = x.float()
    if x.numel() == 0:
        return x
    pm1 = x.flatten(1).median(dim=1).values < -0.5  # [B]
    return torch.where(pm1.view(-1, *([1] * (x.dim() - 1))), (x + 1) / 2, x)


class SearchSpace(ABC):
    """Base class of every search space plugin."""

    name: ClassVar[str] = "space"
    ops: tuple[str, ...]
    num_nodes: int

    # ----- graph -------------------------------------------------------------------
    @property
    @abstractmethod
    def adjacency(self) -> Tensor:
        """Fixed DAG shared by every architecture. [N, N] float, A[i, j] = 1 for i -> j."""

    @property
    def positions(self) -> Tensor:
        """Position id of each node, [N] long. Default: 0..N-1."""
        return torch.arange(self.num_nodes)

    @property
    def num_ops(self) -> int:
        return len(self.ops)

    def allowed_ops(self) -> Tensor:
        """Which tokens each node may hold. [N, V] bool. Default: every op everywhere."""
        return torch.ones(self.num_nodes, self.num_ops, dtype=torch.bool)

    def optional_nodes(self) -> Tensor:
        """Which nodes may be EMPTY. [N] bool. Default: none."""
        return torch.zeros(self.num_nodes, dtype=torch.bool)

    # ----- tokens (what a plugin implements) ---------------------------------------
    @abstractmethod
    def to_tokens(self, arch: Arch) -> tuple[int, ...]:
        """Token per node (op index, or EMPTY). Raises InvalidArchError for a foreign arch."""

    @abstractmethod
    def from_tokens(self, tokens: Sequence[int]) -> Arch:
        """Inverse of to_tokens. Raises InvalidArchError when the tokens break the space's rules."""

    @abstractmethod
    def parse(self, text: str) -> Arch:
        """Arch from its string form. Raises InvalidArchError naming what is accepted."""

    @abstractmethod
    def format(self, arch: Arch) -> str:
        """String form of an arch; ``parse(format(a)) == a``."""

    @abstractmethod
    def build(self, arch: Arch, task: Any = None) -> nn.Module:
        """The trainable network for ``arch`` on ``task`` (space defaults when task is None)."""

    # ----- encode / decode ------------------------------------------------------------
    def encode(self, arch: Arch) -> Tensor:
        """One-hot node features of ``arch``. [N, V] float in {0, 1}."""
        tokens = torch.tensor(self.to_tokens(arch), dtype=torch.long)
        x = torch.zeros(self.num_nodes, self.num_ops)
        present = tokens != EMPTY
        x[present.nonzero(as_tuple=True)[0], tokens[present]] = 1.0
        return x

    def encode_batch(self, archs: Iterable[Arch]) -> Tensor:
        """[B, N, V] float in {0, 1}."""
        tokens = torch.tensor([self.to_tokens(a) for a in archs], dtype=torch.long)
        if tokens.numel() == 0:
            return torch.zeros(0, self.num_nodes, self.num_ops)
        present = tokens != EMPTY
        x = torch.zeros(*tokens.shape, self.num_ops)
        x.scatter_(-1, tokens.clamp_min(0).unsqueeze(-1), present.unsqueeze(-1).float())
        return x

    def decode_tokens(self, x: Tensor) -> Tensor:
        """Masked argmax: x [B, N, V] (in [0, 1] or [-1, 1], larger = more likely) -> tokens [B, N].

        An optional node is EMPTY when none of its allowed entries exceeds 0.5 on the [0, 1]
        scale (the paper's threshold; see ``to_unit_scale``). A space with rules across nodes
        need not override this: ``decode`` repairs a row that ``from_tokens`` refuses with the
        next-best tokens (``nearest_valid``). Override it only to repair differently (call
        super() and then enforce the rules, as MobileNetV3's depth rule does).
        """
        masked = x.float().masked_fill(~self.allowed_ops().to(x.device), float("-inf"))
        tokens = masked.argmax(dim=-1)
        optional = self.optional_nodes().to(x.device)
        if optional.any():
            unit = to_unit_scale(x).masked_fill(~self.allowed_ops().to(x.device), float("-inf"))
            absent = optional & ~(unit.amax(dim=-1) > 0.5)
            tokens = tokens.masked_fill(absent, EMPTY)
        return tokens

    def decode(self, x: Tensor) -> list[Arch]:
        """x [B, N, V] (in [0, 1] or [-1, 1]) -> list of B valid archs.

        Total for any space: a row whose decoded tokens ``from_tokens`` refuses (a rule across
        nodes) becomes the most likely tokens it accepts (``nearest_valid``), so sampling never
        dies on one bad decode.
        """
        if x.dim() == 2:
            x = x.unsqueeze(0)
        if x.shape[1:] != (self.num_nodes, self.num_ops):
            raise ValueError(
                f"{self.name}.decode expects [B, {self.num_nodes}, {self.num_ops}], got {list(x.shape)}"
            )
        x = x.detach().cpu()
        tokens = self.decode_tokens(x)
        try:
            return self.from_tokens_batch(tokens)
        except InvalidArchError:
            out = []
            for row, toks in zip(x, tokens.tolist()):
                try:
                    out.append(self.from_tokens(toks))
                except InvalidArchError:
                    out.append(self.nearest_valid(row))
            return out

    def token_scores(self, x: Tensor) -> tuple[list[list[int]], list[list[float]]]:
        """Per node of one state ``x [N, V]``, its possible tokens best first and their scores on the
        [0, 1] scale (EMPTY, on an optional node, scores the 0.5 threshold). The order ``decode``
        repairs a refused row in."""
        unit = to_unit_scale(x.unsqueeze(0))[0]
        allowed, optional = self.allowed_ops(), self.optional_nodes()
        tokens, scores = [], []
        for i in range(self.num_nodes):
            cands = [(float(unit[i, v]), v) for v in allowed[i].nonzero(as_tuple=True)[0].tolist()]
            if optional[i]:
                cands.append((0.5, EMPTY))
            cands.sort(key=lambda c: -c[0])  # stable: ties keep token order
            tokens.append([t for _, t in cands])
            scores.append([s for s, _ in cands])
        return tokens, scores

    def nearest_valid(self, x: Tensor, max_tries: int = 10_000) -> Arch:
        """The most likely arch that ``from_tokens`` accepts for one state ``x [N, V]``.

        Token assignments are tried best first by total score (each node's score from
        ``token_scores``; a best-first walk over per-node ranks, so one refused rule costs the
        fewest and least likely changes). After ``max_tries`` refusals the space's rules are
        close to unsatisfiable near ``x``: a seeded random valid arch is returned, with a warning.
        """
        import heapq

        tokens, scores = self.token_scores(x)
        start = (0,) * self.num_nodes
        heap = [(0.0, start)]
        seen = {start}
        for _ in range(max_tries):
            if not heap:
                break
            loss, ranks = heapq.heappop(heap)
            try:
                return self.from_tokens([tokens[i][r] for i, r in enumerate(ranks)])
            except InvalidArchError:
                pass
            for i, r in enumerate(ranks):
                if r + 1 < len(tokens[i]):
                    nxt = ranks[:i] + (r + 1,) + ranks[i + 1 :]
                    if nxt not in seen:
                        seen.add(nxt)
                        heapq.heappush(heap, (loss + scores[i][r] - scores[i][r + 1], nxt))
        import warnings

        warnings.warn(
            f"{self.name}: no token assignment near a sample passes from_tokens after {max_tries} tries; "
            "decoding it as a random valid arch (check the space's rules, or override decode_tokens)",
            stacklevel=2,
        )
        return self.sample(1, int(abs(hash(tuple(x.flatten().tolist()))) % 2**32))[0]

    def from_tokens_batch(self, tokens: Tensor) -> list[Arch]:
        """tokens [B, N] long -> B archs. Default: from_tokens per row; spaces may vectorise."""
        return [self.from_tokens(t) for t in tokens.tolist()]

    # ----- membership -----------------------------------------------------------------
    def is_valid(self, arch: Arch) -> bool:
        try:
            return self.from_tokens(self.to_tokens(arch)) == arch
        except (InvalidArchError, TypeError, ValueError, KeyError, IndexError):
            return False

    def canonical(self, arch: Arch) -> Hashable:
        """Isomorphism key: two archs computing the same function share it. Default: arch."""
        return arch

    def normal_form(self, arch: Arch) -> Arch:
        """A representative of ``arch`` that computes the same function, with the choices that
        cannot matter (e.g. ops on edges cut off from the output) set to fixed values.

        BO's surrogate can read archs in this form (``BayesOpt(normal_form=True)``), so it does
        not spend data on learning that dead choices are irrelevant. Default: ``arch`` unchanged.
        """
        return arch

    @property
    def size(self) -> int | None:
        """Number of architectures, or None when it is not finite/known."""
        return None

    def enumerate(self) -> list[Arch]:
        """All archs, in a fixed order (finite spaces only)."""
        raise NotFiniteSpaceError(f"space {self.name!r} is too large to enumerate; use sample(n)")

    # ----- sampling and local moves -----------------------------------------------------
    def sample(self, n: int, generator: np.random.Generator | int | None = None) -> list[Arch]:
        """n archs drawn uniformly per node (rejecting token sets the space refuses)."""
        rng = as_rng(generator)
        allowed = self.allowed_ops().numpy()
        optional = self.optional_nodes().numpy()
        out: list[Arch] = []
        while len(out) < n:
            tokens = []
            for i in range(self.num_nodes):
                choices = list(np.flatnonzero(allowed[i])) + ([EMPTY] if optional[i] else [])
                tokens.append(int(rng.choice(choices)))
            try:
                out.append(self.from_tokens(tokens))
            except InvalidArchError:
                continue
        return out

    def neighbours(self, arch: Arch) -> list[Arch]:
        """Every valid arch that differs from ``arch`` in exactly one node's token.

        Must be a function of ``arch`` alone (same list, same order): ``mutate`` caches it.
        """
        tokens = list(self.to_tokens(arch))
        allowed = self.allowed_ops()
        optional = self.optional_nodes()
        out = []
        for i in range(self.num_nodes):
            choices = allowed[i].nonzero(as_tuple=True)[0].tolist() + ([EMPTY] if optional[i] else [])
            for c in choices:
                if c == tokens[i]:
                    continue
                new = tokens.copy()
                new[i] = c
                try:
                    out.append(self.from_tokens(new))
                except InvalidArchError:
                    continue
        return out

    def mutate(self, arch: Arch, generator: np.random.Generator | int | None = None) -> Arch:
        """A random neighbour of ``arch``."""
        rng = as_rng(generator)
        nbrs = self._cached_neighbours(arch)
        return nbrs[int(rng.integers(len(nbrs)))]

    def _cached_neighbours(self, arch: Arch) -> tuple[Arch, ...]:
        """``neighbours(arch)``, remembered for up to 4,096 archs: BO mutates the same few parents
        hundreds of times a round."""
        cache: dict[Arch, tuple[Arch, ...]] = self.__dict__.setdefault("_neighbour_cache", {})
        try:
            return cache[arch]
        except KeyError:
            pass
        except TypeError:  # an unhashable arch value: no caching
            return tuple(self.neighbours(arch))
        if len(cache) >= 4096:
            cache.clear()
        nbrs = cache[arch] = tuple(self.neighbours(arch))
        return nbrs

    # ----- cost ------------------------------------------------------------
    def cost(self, arch: Arch) -> dict[str, float]:
        """{'params_M', 'flops_M'} of ``build(arch)``. Default counts params; FLOPs by hooks."""
        from nag.spaces.costing import count_cost

        return count_cost(self.build(arch, None), self.default_input_shape())

    def default_input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) used by build(arch, None) and cost()."""
        return (3, 32, 32)

    # ----- identity ---------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """What a checkpoint records to refuse a mismatched space."""
        return {"name": self.name, "num_nodes": self.num_nodes, "ops": list(self.ops)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, N={self.num_nodes}, V={self.num_ops})"


def coerce_arch(space: SearchSpace, arch: Arch | str) -> Arch:
    """Accept an arch value or its string form."""
    if isinstance(arch, str) and not space.is_valid(arch):
        return space.parse(arch)
    if not space.is_valid(arch):
        raise InvalidArchError(f"{arch!r} is not an architecture of space {space.name!r}")
    return arch
