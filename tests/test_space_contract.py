"""The SearchSpace contract, checked on every registered space (built-ins and installed plugins)."""
from __future__ import annotations

import re
from collections.abc import Hashable

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nag.errors import InvalidArchError, NotFiniteSpaceError
from nag.spaces import EMPTY, SearchSpace, get_space, list_spaces
from nag.spaces.costing import count_params

NAMES = list_spaces()
_SPACES: dict[str, SearchSpace] = {}


def space_named(name: str) -> SearchSpace:
    if name not in _SPACES:
        _SPACES[name] = get_space(name)
    return _SPACES[name]


@pytest.fixture(params=NAMES, scope="module")
def space(request) -> SearchSpace:
    return space_named(request.param)


@pytest.fixture(scope="module")
def archs(space: SearchSpace) -> list:
    return space.sample(16, 0)


def test_builtins_are_listed() -> None:
    assert "nb201" in NAMES


def test_identity(space: SearchSpace) -> None:
    assert space.name in NAMES and type(get_space(space.name)) is type(space)
    d = space.describe()
    assert d["name"] == space.name and d["num_nodes"] == space.num_nodes and d["ops"] == list(space.ops)
    assert len(set(space.ops)) == space.num_ops > 0


def test_graph(space: SearchSpace) -> None:
    n, v = space.num_nodes, space.num_ops
    a = space.adjacency
    assert a.shape == (n, n) and a.dtype.is_floating_point
    assert set(a.unique().tolist()) <= {0.0, 1.0} and a.diagonal().sum() == 0
    assert torch.linalg.matrix_power(a, n).abs().sum() == 0  # acyclic: no path of length n
    assert space.positions.shape == (n,) and space.positions.dtype == torch.long
    allowed, optional = space.allowed_ops(), space.optional_nodes()
    assert allowed.shape == (n, v) and allowed.dtype == torch.bool
    assert optional.shape == (n,) and optional.dtype == torch.bool
    assert allowed.any(dim=1).all()  # every node can hold something


def test_sample_is_seeded_and_valid(space: SearchSpace, archs: list) -> None:
    assert len(archs) == 16 and archs == space.sample(16, 0)
    for arch in archs:
        assert isinstance(arch, Hashable) and not isinstance(arch, torch.nn.Module)
        assert space.is_valid(arch)


def test_tokens_respect_allowed_and_optional(space: SearchSpace, archs: list) -> None:
    allowed, optional = space.allowed_ops(), space.optional_nodes()
    for arch in archs:
        tokens = space.to_tokens(arch)
        assert len(tokens) == space.num_nodes
        for i, t in enumerate(tokens):
            assert (t == EMPTY and optional[i]) or (t != EMPTY and allowed[i, t])
        assert space.from_tokens(tokens) == arch


def test_encode_decode(space: SearchSpace, archs: list) -> None:
    x = space.encode_batch(archs)
    assert x.shape == (len(archs), space.num_nodes, space.num_ops)
    assert set(x.unique().tolist()) <= {0.0, 1.0} and (x.sum(-1) <= 1).all()
    assert torch.equal(x, torch.stack([space.encode(a) for a in archs]))
    assert space.decode(x) == archs
    assert space.decode(2 * x - 1) == archs  # diffusion scale
    assert space.decode(x[0]) == archs[:1]
    assert space.encode_batch([]).shape == (0, space.num_nodes, space.num_ops)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_decode_of_any_real_tensor_is_valid(name: str, data) -> None:
    space = space_named(name)
    b = data.draw(st.integers(1, 4))
    seed = data.draw(st.integers(0, 2**31 - 1))
    scale = data.draw(st.sampled_from([0.1, 1.0, 10.0, 1e4]))
    x = torch.randn(b, space.num_nodes, space.num_ops, generator=torch.Generator().manual_seed(seed)) * scale
    archs = space.decode(x)
    assert len(archs) == b and all(space.is_valid(a) for a in archs)


def test_strings(space: SearchSpace, archs: list) -> None:
    for arch in archs:
        text = space.format(arch)
        assert isinstance(text, str) and space.parse(text) == arch
    for junk in ("", "not an arch", "|||", "+" * 5):
        with pytest.raises(InvalidArchError, match=re.escape(repr(junk))):  # the message names the bad string
            space.parse(junk)
        assert not space.is_valid(junk)


def test_neighbours_and_mutate(space: SearchSpace, archs: list) -> None:
    for arch in archs[:4]:
        tokens = space.to_tokens(arch)
        nbrs = space.neighbours(arch)
        assert nbrs and arch not in nbrs
        for n in nbrs:
            assert space.is_valid(n)
            assert sum(a != b for a, b in zip(space.to_tokens(n), tokens)) == 1
        assert space.mutate(arch, 0) in nbrs


def test_mutate_draws_like_an_uncached_pick_from_the_neighbours(space: SearchSpace, archs: list) -> None:
    # the neighbour cache must not change a single draw: searches stay reproducible across versions
    for i, arch in enumerate(archs[:4]):
        for seed in range(3):
            rng_a, rng_b = np.random.default_rng(seed), np.random.default_rng(seed)
            for _ in range(3):  # repeated calls hit the cache
                nbrs = space.neighbours(arch)
                assert space.mutate(arch, rng_a) == nbrs[int(rng_b.integers(len(nbrs)))]
    space.__dict__.pop("_neighbour_cache", None)


def test_canonical(space: SearchSpace, archs: list) -> None:
    for arch in archs:
        key = space.canonical(arch)
        assert isinstance(key, Hashable) and key == space.canonical(space.parse(space.format(arch)))


def test_size_and_enumerate(space: SearchSpace) -> None:
    size = space.size
    assert size is None or size > 0
    if size is None:
        with pytest.raises(NotFiniteSpaceError, match="too large to enumerate; use sample"):
            space.enumerate()
    elif size <= 100_000:
        everything = space.enumerate()
        assert len(everything) == len(set(everything)) == size
        assert all(space.is_valid(a) for a in everything[:: max(1, size // 500)])


def test_build_and_cost(space: SearchSpace, archs: list) -> None:
    arch = archs[0]
    model = space.build(arch)
    assert isinstance(model, torch.nn.Module)
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(1, *space.default_input_shape()))
    assert out.dim() == 2 and out.shape[0] == 1 and torch.isfinite(out).all()
    cost = space.cost(arch)
    assert set(cost) >= {"params_M", "flops_M"} and all(isinstance(v, float) for v in cost.values())
    assert cost["params_M"] == pytest.approx(count_params(model) / 1e6)
    assert cost["flops_M"] > 0
