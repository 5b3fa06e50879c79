"""NB201 space: graph, strings, encode/decode, isomorphism classes, the official network and its cost."""
from __future__ import annotations

import csv
from collections import defaultdict

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from nag.errors import InvalidArchError
from nag.spaces.costing import count_cost, count_flops, count_params
from nag.spaces.nb201 import CELL_OPS, NB201Space
from nag.spaces.nb201_ops import NB201Cell, NB201Network

BEST_C10 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
ALL_NONE = ("none",) * 6
ARCHS = st.tuples(*[st.sampled_from(CELL_OPS)] * 6)


SPACE = NB201Space()  # shared: its caches (all archs, tokens, edge costs) are built once


@pytest.fixture(scope="module")
def space() -> NB201Space:
    return SPACE


def read_rows(path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def rows(nb201_slice_csv) -> list[dict[str, str]]:
    """50 real NB201 rows (tests/data/README.md): whole isomorphism classes, both optima, cells at chance."""
    return read_rows(nb201_slice_csv)


# ----- graph -------------------------------------------------------------------------------
def test_registered_and_graph(space: NB201Space) -> None:
    assert space.ops == ("input", "output", "none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
    edges = {(int(i), int(j)) for i, j in space.adjacency.nonzero().tolist()}
    assert edges == {(0, 1), (0, 2), (0, 3), (1, 4), (1, 5), (2, 6), (3, 7), (4, 6), (5, 7), (6, 7)}
    assert torch.equal(space.positions, torch.arange(8))
    allowed = space.allowed_ops()
    assert allowed.shape == (8, 7) and allowed.dtype == torch.bool
    assert allowed[0].tolist() == [True] + [False] * 6
    assert allowed[7].tolist() == [False, True] + [False] * 5
    assert allowed[1:7, 2:].all() and not allowed[1:7, :2].any()
    assert not space.optional_nodes().any()


def test_enumerate(space: NB201Space) -> None:
    archs = space.enumerate()
    assert space.size == len(archs) == len(set(archs)) == 15625
    assert archs[0] == ALL_NONE and archs == space.enumerate()
    assert all(space.is_valid(a) for a in archs[::97])


# ----- strings -------------------------------------------------------------------------------
def test_format_matches_the_benchmark_strings(space: NB201Space, rows) -> None:
    for row in rows:
        assert space.format(space.parse(row["arch"])) == row["arch"]
    assert len({space.parse(r["arch"]) for r in rows}) == len(rows)


@pytest.mark.parametrize(
    "text, bad",
    [
        ("|nor_conv_9x9~0|+|none~0|none~1|+|none~0|none~1|none~2|", "nor_conv_9x9"),
        ("|none~0|+|none~0|none~2|+|none~0|none~1|none~2|", "none~2"),  # wrong ~index
        ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "none~1"),
        ("|none~0|+|none~0|none~1|", "2 '+'-separated"),  # too few nodes
        ("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|+|none~0|", "4 '+'-separated"),  # too many
        ("|none~0|+|none~0|+|none~0|none~1|none~2|", "has 1 input"),
        ("none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "start and end with '|'"),
        ("|none0|+|none~0|none~1|+|none~0|none~1|none~2|", "none0"),
        ("", "1 '+'-separated"),
    ],
)
def test_parse_is_strict_and_says_what_is_accepted(space: NB201Space, text: str, bad: str) -> None:
    with pytest.raises(InvalidArchError, match="invalid NB201 arch string") as info:
        space.parse(text)
    msg = str(info.value)
    assert bad in msg
    assert "|op~0|+|op~0|op~1|+|op~0|op~1|op~2|" in msg
    for op in CELL_OPS:
        assert op in msg


def test_foreign_values_are_refused(space: NB201Space) -> None:
    for junk in (BEST_C10, ("none",) * 5, ["none"] * 6, ("conv",) * 6, 3):
        assert not space.is_valid(junk)
        with pytest.raises(InvalidArchError, match="expected a tuple of 6 op names"):
            space.to_tokens(junk)
    for tokens in ([0, 2, 2, 2, 2, 2, 2, 0], [0, 1, 2, 2, 2, 2, 2, 1], [0, 2, 2], [0, 9, 2, 2, 2, 2, 2, 1]):
        with pytest.raises(InvalidArchError, match="on nodes 1..6"):
            space.from_tokens(tokens)
    assert space.from_tokens(torch.tensor([0, 2, 2, 2, 2, 2, 2, 1])) == ALL_NONE
    with pytest.raises(InvalidArchError, match=r"is not an NB201 arch: expected a tuple of 6 op names"):
        space.encode_batch([ALL_NONE, ("bad",) * 6])


@given(ARCHS)
def test_parse_format_round_trip(arch) -> None:
    space = SPACE
    assert space.parse(space.format(arch)) == arch
    assert space.parse("  " + space.format(arch) + "\n") == arch


# ----- encode / decode -----------------------------------------------------------------------
def test_decode_of_encode_is_identity_for_every_arch(space: NB201Space) -> None:
    """Must-show: decode(stack(encode(a))) == a for all 15,625 archs, in both value scales."""
    archs = space.enumerate()
    x = torch.stack([space.encode(a) for a in archs])
    assert x.shape == (15625, 8, 7) and torch.equal(x, space.encode_batch(archs))
    assert (x.sum(-1) == 1).all()
    assert space.decode(x) == archs
    assert space.decode(2 * x - 1) == archs


@given(ARCHS)
def test_encode_decode_round_trip(arch) -> None:
    space = SPACE
    x = space.encode(arch)
    assert space.decode(x) == [arch]
    assert space.decode(x.unsqueeze(0) * 2 - 1) == [arch]


@settings(max_examples=50, deadline=None)
@given(
    st.integers(1, 6).flatmap(
        lambda b: st.lists(st.floats(-1e6, 1e6, allow_nan=False, width=32), min_size=b * 56, max_size=b * 56)
    )
)
def test_decode_of_any_real_tensor_is_valid(values) -> None:
    space = SPACE
    x = torch.tensor(values).view(-1, 8, 7)
    archs = space.decode(x)
    assert len(archs) == x.shape[0] and all(space.is_valid(a) for a in archs)
    # the masked argmax picks the largest allowed entry of every op node
    best = x[:, 1:7, 2:].max(-1).values
    picked = torch.stack([space.encode(a) for a in archs])[:, 1:7, 2:]
    assert torch.equal((x[:, 1:7, 2:] * picked).sum(-1), best)


def test_decode_rejects_wrong_shapes(space: NB201Space) -> None:
    with pytest.raises(ValueError, match=r"\[B, 8, 7\]"):
        space.decode(torch.zeros(2, 8, 6))


# ----- local moves and sampling ---------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(ARCHS, st.integers(0, 2**32 - 1))
def test_neighbours_and_mutate(arch, seed) -> None:
    space = SPACE
    nbrs = space.neighbours(arch)
    assert len(nbrs) == len(set(nbrs)) == 6 * 4
    for n in nbrs:
        assert space.is_valid(n) and sum(a != b for a, b in zip(n, arch)) == 1
    m = space.mutate(arch, seed)
    assert m in nbrs and m == space.mutate(arch, seed)


def test_sample_is_valid_and_seeded(space: NB201Space) -> None:
    a = space.sample(50, 3)
    assert a == space.sample(50, np.random.default_rng(3)) and a != space.sample(50, 4)
    assert all(space.is_valid(x) for x in a)


# ----- isomorphism ---------------------------------------------------------------------------
def test_canonical_has_6466_classes(space: NB201Space) -> None:
    assert len({space.canonical(a) for a in space.enumerate()}) == 6466


def same_partition(space: NB201Space, rows) -> bool:
    """Whether two rows share canonical() exactly when they share the table's iso_key."""
    ours: dict[str, set[int]] = defaultdict(set)
    theirs: dict[str, set[int]] = defaultdict(set)
    for i, row in enumerate(rows):
        ours[space.canonical(space.parse(row["arch"]))].add(i)
        theirs[row["iso_key"]].add(i)
    return sorted(map(sorted, ours.values())) == sorted(map(sorted, theirs.values()))


def test_canonical_partition_equals_the_benchmark(space: NB201Space, rows) -> None:
    """Two archs share canonical() iff they share the table's iso_key (the slice holds whole classes)."""
    assert same_partition(space, rows)
    assert sum(len([r for r in rows if r["iso_key"] == k]) > 1 for k in {r["iso_key"] for r in rows}) >= 5


@given(ARCHS, st.sampled_from(CELL_OPS))
def test_canonical_ignores_ops_behind_a_cut(arch, other) -> None:
    """With edge 1<-0 'none', node 1 is zero: the ops reading node 1 (edges 2<-1, 3<-1) don't matter."""
    space = SPACE
    cut = ("none",) + arch[1:]
    for edge in (2, 4):
        changed = list(cut)
        changed[edge] = other
        assert space.canonical(tuple(changed)) == space.canonical(cut)


def test_normal_form_keeps_the_class_and_fixes_every_dead_edge(space: NB201Space) -> None:
    """normal_form is a representative of the same class, idempotent, and changing any edge it
    set to 'none' never changes the class (the edge was dead)."""
    forms = set()
    for arch in space.enumerate():
        form = space.normal_form(arch)
        assert space.canonical(form) == space.canonical(arch)
        assert space.normal_form(form) == form
        forms.add(form)
        for i, op in enumerate(form):
            if op == "none" and arch[i] != "none":
                moved = list(arch)
                moved[i] = "nor_conv_3x3" if arch[i] != "nor_conv_3x3" else "skip_connect"
                assert space.canonical(tuple(moved)) == space.canonical(arch), (arch, i)
    assert 6466 < len(forms) < 15625


def test_normal_form_of_a_cell_without_dead_edges_is_itself(space: NB201Space) -> None:
    arch = ("nor_conv_3x3", "skip_connect", "avg_pool_3x3", "nor_conv_1x1", "nor_conv_3x3", "skip_connect")
    assert space.normal_form(arch) == arch
    # node 2 has no way out (2->3 is 'none'): its input edges are dead
    assert space.normal_form(arch[:5] + ("none",)) == ("nor_conv_3x3", "none", "none", "nor_conv_1x1", "nor_conv_3x3", "none")


def test_canonical_sums_commute(space: NB201Space) -> None:
    # with node 1 = skip(x) = x, node 3 = conv3(x) + avg(node 1) equals avg(x) + conv3(node 1)
    a = ("skip_connect", "nor_conv_1x1", "none", "nor_conv_3x3", "avg_pool_3x3", "skip_connect")
    b = ("skip_connect", "nor_conv_1x1", "none", "avg_pool_3x3", "nor_conv_3x3", "skip_connect")
    assert space.canonical(a) == space.canonical(b)
    assert space.canonical(a) != space.canonical(("nor_conv_1x1",) + a[1:])  # node 1 is no longer x
    assert space.canonical(space.format(a)) == space.canonical(a)


# ----- network and cost ----------------------------------------------------------------------
def params_error(space: NB201Space, rows) -> float:
    ours = np.array([space.cost(space.parse(r["arch"]))["params_M"] for r in rows])
    return float(np.abs(ours - np.array([float(r["params_M_cifar10"]) for r in rows])).max())


def test_params_match_the_benchmark(space: NB201Space, rows) -> None:
    """cost(a)['params_M'] equals the table's params_M_cifar10 (every arch: test_the_whole_real_table)."""
    assert params_error(space, rows) < 1e-9


def test_cost_equals_counting_the_whole_network(space: NB201Space) -> None:
    """cost() sums per-edge amounts; check it against counting complete real networks."""
    archs = [space.parse(BEST_C10), ALL_NONE, ("avg_pool_3x3",) * 6] + space.sample(3, 0)
    for arch in archs:
        model = space.build(arch)
        assert space.cost(arch) == count_cost(model, (3, 32, 32))
        assert space.cost(arch)["params_M"] * 1e6 == pytest.approx(sum(p.numel() for p in model.parameters()))


def test_flops_follow_the_nb201_counter(space: NB201Space, rows) -> None:
    """FLOPs = conv/linear MACs + bias adds; the table also charges BN, ReLU and pooling."""
    stem = 32 * 32 * 16 * 27
    reduction = lambda c, hw: hw * hw * (9 * c * 2 * c + 9 * 4 * c * c + c * 2 * c)  # noqa: E731
    none_net = stem + reduction(16, 16) + reduction(32, 8) + 64 * 10 + 10
    assert space.cost(ALL_NONE)["flops_M"] == pytest.approx(none_net / 1e6, abs=1e-12)
    conv3 = 5 * 9 * (16 * 16 * 32 * 32 + 32 * 32 * 16 * 16 + 64 * 64 * 8 * 8)
    assert space.cost(("nor_conv_3x3",) * 6)["flops_M"] == pytest.approx((none_net + 6 * conv3) / 1e6, abs=1e-12)
    assert flops_agree(space, rows)


def flops_agree(space: NB201Space, rows) -> bool:
    """The table's FLOPs are ours plus what it charges for BN, ReLU and pooling (< 7.91 M), tightly correlated."""
    ours = np.array([space.cost(space.parse(r["arch"]))["flops_M"] for r in rows])
    table = np.array([float(r["flops_M_cifar10"]) for r in rows])
    return bool((table >= ours).all() and (table - ours).max() < 7.91 and np.corrcoef(ours, table)[0, 1] > 0.99)


def test_the_whole_real_table_agrees_with_the_space(space: NB201Space, nb201_csv) -> None:
    """The facts above, on all 15,625 rows of the real table: every arch string, the 6,466
    isomorphism classes, the params of every arch, the FLOPs of every arch."""
    rows = read_rows(nb201_csv)
    assert len(rows) == 15625 and {space.parse(r["arch"]) for r in rows} == set(space.enumerate())
    assert all(space.format(space.parse(r["arch"])) == r["arch"] for r in rows)
    assert same_partition(space, rows) and len({r["iso_key"] for r in rows}) == 6466
    assert params_error(space, rows) < 1e-9
    assert flops_agree(space, rows)


def test_build_forward_shapes_and_task(space: NB201Space) -> None:
    class Task:
        input_shape = (1, 8, 8)
        num_classes = 5

    small = NB201Space(C=4, N=1)
    arch = small.parse(BEST_C10)
    net = small.build(arch)
    assert isinstance(net, NB201Network) and net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert sum(isinstance(m, NB201Cell) for m in net.modules()) == 3
    assert small.build(arch, Task())(torch.randn(2, 1, 8, 8)).shape == (2, 5)
    assert sum(isinstance(m, NB201Cell) for m in space.build(arch).modules()) == 15


def test_none_edges_cut_the_network(space: NB201Space) -> None:
    """All-'none' cells pass nothing on: the logits do not depend on the input."""
    torch.manual_seed(0)
    net = NB201Space(C=4, N=1).build(ALL_NONE).eval()
    with torch.no_grad():
        a, b = net(torch.randn(1, 3, 32, 32)), net(torch.randn(1, 3, 32, 32))
        assert torch.allclose(a, b)
        live = NB201Space(C=4, N=1).build(("skip_connect",) + ALL_NONE[1:]).eval()
        # node 3 has no live input either: still constant
        assert torch.allclose(live(torch.randn(1, 3, 32, 32)), live(torch.randn(1, 3, 32, 32)))
        path = NB201Space(C=4, N=1).build(ALL_NONE[:3] + ("skip_connect",) + ALL_NONE[4:]).eval()
        assert not torch.allclose(path(torch.randn(1, 3, 32, 32)), path(torch.randn(1, 3, 32, 32)))


def test_network_trains_one_step(space: NB201Space) -> None:
    net = NB201Space(C=4, N=1).build(space.parse(BEST_C10))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    loss0 = nn.functional.cross_entropy(net(x), y)
    loss0.backward()
    opt.step()
    assert torch.isfinite(loss0)
    assert all(p.grad is not None for p in net.parameters())


# ----- the generic counter -----------------------------------------------------------------
def test_count_cost_on_a_known_model() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),  # 8x8x8 outputs x (27 MACs + 1 bias)
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=4, bias=False),  # 512 x 18
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),  # 4 x (8 + 1)
    )
    model[1].weight.requires_grad_(False)
    flops = 512 * 28 + 512 * 18 + 4 * 9
    params = (8 * 27 + 8) + 8 + 8 * 2 * 9 + (8 * 4 + 4)  # BN weight frozen, its bias counts
    assert count_flops(model, (3, 8, 8)) == flops
    assert count_params(model) == params
    assert count_cost(model, (3, 8, 8)) == {"params_M": params / 1e6, "flops_M": flops / 1e6}
    assert model.training and model[1].weight.device.type == "cpu"  # state restored, weights untouched


def test_count_flops_runs_for_real_when_meta_cannot() -> None:
    class DataDependent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)

        def forward(self, x):
            y = self.conv(x)
            return y * float(y.abs().sum().item() >= 0)  # needs real numbers

    assert count_flops(DataDependent(), (3, 4, 4)) == 16 * 4 * (3 + 1)
