"""MobileNetV3 once-for-all space: tokens, decoding rules, strings, OFA format, timm build, costs."""
from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from nag.errors import ConfigError, InvalidArchError
from nag.evaluation import train_eval
from nag.spaces import EMPTY, get_space, list_spaces
from nag.spaces.base import to_unit_scale
from nag.spaces.mbv3 import DEPTHS, EXPANDS, KERNELS, MBv3Space, ResizeInput

SMALLEST = tuple(((3, 3),) * 2 for _ in range(5))
LARGEST = tuple(((7, 6),) * 4 for _ in range(5))
TINY = dict(width_mult=0.25, resolution=32, num_classes=10)


@pytest.fixture(scope="module")
def space() -> MBv3Space:
    return get_space("mbv3")


layer_st = st.tuples(st.sampled_from(KERNELS), st.sampled_from(EXPANDS))
arch_st = st.tuples(*[st.lists(layer_st, min_size=2, max_size=4).map(tuple)] * 5)


def check_stage_rules(space: MBv3Space, tokens: torch.Tensor) -> None:
    t = tokens.view(-1, 5, 4)
    assert ((t >= EMPTY) & (t < 9)).all()
    assert (t[..., :2] != EMPTY).all(), "slots 1-2 must always be present"
    assert (t[..., 3][t[..., 2] == EMPTY] == EMPTY).all(), "slot 4 used only if slot 3 is"


# ----- graph -------------------------------------------------------------------------------
def test_registered_and_graph(space: MBv3Space) -> None:
    assert "mbv3" in list_spaces()
    assert space.num_nodes == 20 and len(space.ops) == 9 and space.ops[0] == "k3_e3" and "k7_e6" in space.ops
    a = space.adjacency
    assert a.shape == (20, 20) and a.sum() == 19 and all(a[i, i + 1] == 1 for i in range(19))
    assert torch.equal(space.optional_nodes(), torch.tensor([False, False, True, True] * 5))
    pos = space.positions
    assert pos.shape == (20,) and len(set(pos.tolist())) == 20
    assert [(p // 4, p % 4) for p in pos.tolist()[4:8]] == [(1, 0), (1, 1), (1, 2), (1, 3)]
    assert space.size == (9**2 + 9**3 + 9**4) ** 5


def test_sample_covers_depths_and_ops(space: MBv3Space) -> None:
    archs = space.sample(2000, np.random.default_rng(0))
    assert all(space.is_valid(a) for a in archs[:200])
    depths = np.array([[len(s) for s in a] for a in archs])
    assert set(depths.ravel()) == set(DEPTHS)
    assert abs((depths == 4).mean() - 1 / 3) < 0.03  # OFA-style uniform depth per stage
    assert {layer for a in archs for s in a for layer in s} == {(k, e) for k in KERNELS for e in EXPANDS}
    assert space.sample(5, 7) == space.sample(5, 7)


# ----- encode / decode -----------------------------------------------------------------------
def test_encode_decode_round_trip_10k(space: MBv3Space) -> None:
    archs = space.sample(10_000, np.random.default_rng(1))
    x = space.encode_batch(archs)
    assert x.shape == (10_000, 20, 9)
    empty_rows = x.sum(-1) == 0
    assert empty_rows.any() and (x.sum(-1) <= 1).all()
    assert space.decode(x) == archs  # [0, 1] scale
    assert space.decode(2 * x - 1) == archs  # diffusion [-1, 1] scale: EMPTY row = all -1


def test_encode_single_matches_batch(space: MBv3Space) -> None:
    a = space.sample(1, 3)[0]
    assert torch.equal(space.encode(a), space.encode_batch([a])[0])
    assert space.decode(space.encode(a)) == [a]


@settings(max_examples=60, deadline=None)
@given(
    arrays(
        np.float32,
        (3, 20, 9),
        elements=st.floats(-50, 50, width=32) | st.sampled_from([np.nan, np.inf, -np.inf, 0.5, -0.5]),
    )
)
def test_decode_arbitrary_tensor_is_valid(space: MBv3Space, values: np.ndarray) -> None:
    x = torch.from_numpy(values)
    check_stage_rules(space, space.decode_tokens(x))
    archs = space.decode(x)
    assert len(archs) == 3 and all(space.is_valid(a) for a in archs)
    assert all(len(s) in DEPTHS for a in archs for s in a)


@settings(max_examples=60, deadline=None)
@given(arch_st, st.integers(0, 2**31 - 1))
def test_decode_tolerates_noise_in_both_scales(space: MBv3Space, arch, seed: int) -> None:
    x = space.encode(arch)
    noise = 0.39 * (2 * torch.rand(x.shape, generator=torch.Generator().manual_seed(seed)) - 1)
    assert space.decode(2 * x - 1 + noise) == [arch]
    assert space.decode(x + noise / 2) == [arch]


def test_decode_presence_threshold(space: MBv3Space) -> None:
    a = space.sample(1, 5)[0]
    x = 2 * space.encode(a) - 1  # [-1, 1]
    # stage 1 slot 3 just above / below the 0.5 threshold of the [0, 1] scale
    for value, present in ((0.1, True), (-0.1, False)):
        y = x.clone()
        y[2] = -1
        y[2, 4] = value
        tokens = space.decode_tokens(y.unsqueeze(0))[0]
        assert (tokens[2] != EMPTY) == present
        if not present:
            assert tokens[3] == EMPTY  # slot 4 follows slot 3
    y = x.clone()
    y[2], y[3] = -1, -1
    y[3, 0] = 1  # slot 4 asks to be present, slot 3 absent -> depth 2
    assert len(space.decode(y)[0][0]) == 2


def test_unit_scale_detection() -> None:
    onehot = torch.zeros(2, 20, 9)
    onehot[:, :, 0] = 1
    assert torch.equal(to_unit_scale(onehot), onehot)
    assert torch.allclose(to_unit_scale(2 * onehot - 1), onehot)


def test_decode_rejects_wrong_shape(space: MBv3Space) -> None:
    with pytest.raises(ValueError, match=r"\[B, 20, 9\]"):
        space.decode(torch.zeros(2, 20, 7))


# ----- tokens and membership -------------------------------------------------------------------
def test_from_tokens_enforces_rules(space: MBv3Space) -> None:
    ok = [0, 1, EMPTY, EMPTY] * 5
    assert space.from_tokens(ok) == tuple(((3, 3), (3, 4)) for _ in range(5))
    with pytest.raises(InvalidArchError, match="slots 1 and 2"):
        space.from_tokens([0, EMPTY, EMPTY, EMPTY] + ok[4:])
    with pytest.raises(InvalidArchError, match="slot 4 is used only if slot 3"):
        space.from_tokens([0, 1, EMPTY, 2] + ok[4:])
    with pytest.raises(InvalidArchError, match="20 tokens"):
        space.from_tokens(ok[:19])
    with pytest.raises(InvalidArchError, match="accepted 0..8"):
        space.from_tokens([9] + ok[1:])


def test_is_valid(space: MBv3Space) -> None:
    assert space.is_valid(SMALLEST) and space.is_valid(LARGEST)
    assert not space.is_valid(SMALLEST[:4])
    assert not space.is_valid((((3, 3),),) + SMALLEST[1:])  # depth 1
    assert not space.is_valid((((3, 3),) * 5,) + SMALLEST[1:])  # depth 5
    assert not space.is_valid((((3, 2), (3, 3)),) + SMALLEST[1:])  # expand 2
    assert not space.is_valid((((9, 3), (3, 3)),) + SMALLEST[1:])  # kernel 9
    assert not space.is_valid(space.format(SMALLEST))  # strings go through parse
    assert space.canonical(LARGEST) == LARGEST


def test_neighbours_and_mutate(space: MBv3Space) -> None:
    a = space.sample(1, 11)[0]
    nbrs = space.neighbours(a)
    assert nbrs and a not in nbrs and all(space.is_valid(n) for n in nbrs)
    assert all(sum(x != y for x, y in zip(space.to_tokens(a), space.to_tokens(n))) == 1 for n in nbrs)
    # from the smallest arch: 5 stages x (2 slots x 8 other ops + 9 ways to add slot 3)
    assert len(space.neighbours(SMALLEST)) == 5 * (2 * 8 + 9)
    assert space.mutate(a, 0) in nbrs


# ----- strings ---------------------------------------------------------------------------------
@settings(max_examples=100, deadline=None)
@given(arch_st)
def test_parse_format_round_trip(space: MBv3Space, arch) -> None:
    text = space.format(arch)
    assert space.parse(text) == arch
    assert text.count("|") == 4


def test_format_example(space: MBv3Space) -> None:
    text = "k3e4-k5e6|k7e3-k3e3-k5e4|k3e3-k3e3|k5e4-k5e4-k5e4-k5e4|k7e6-k7e6"
    arch = space.parse(text)
    assert arch[1] == ((7, 3), (3, 3), (5, 4)) and space.format(arch) == text
    assert space.build(text) is not None  # build accepts the string form too


@pytest.mark.parametrize(
    "text, match",
    [
        ("k3e4-k5e6|k7e3-k3e3", "2 stage"),
        ("k3e4|k3e4-k3e4|k3e4-k3e4|k3e4-k3e4|k3e4-k3e4", "stage 1 .* 1 layer"),
        ("k3e4-k3e4|k3e4-k3e4|k3e4-k3e4-k3e4-k3e4-k3e4|k3e4-k3e4|k3e4-k3e4", "stage 3 .* 5 layer"),
        ("k3e4-k3e4|k3e4-k4e4|k3e4-k3e4|k3e4-k3e4|k3e4-k3e4", "layer 'k4e4' in stage 2"),
        ("k3e4-k3e4|k3e4-k3e5|k3e4-k3e4|k3e4-k3e4|k3e4-k3e4", "layer 'k3e5'"),
        ("k3e4-k3e4|k3_e4-k3e4|k3e4-k3e4|k3e4-k3e4|k3e4-k3e4", "layer 'k3_e4'"),
        ("", "1 stage"),
    ],
)
def test_parse_strict_errors(space: MBv3Space, text: str, match: str) -> None:
    with pytest.raises(InvalidArchError, match=match) as info:
        space.parse(text)
    assert "kernel in (3, 5, 7)" in str(info.value) and "expand in (3, 4, 6)" in str(info.value)


def test_parse_rejects_non_string(space: MBv3Space) -> None:
    with pytest.raises(InvalidArchError, match="expects a string"):
        space.parse(SMALLEST)  # type: ignore[arg-type]


# ----- OFA / HELP format ---------------------------------------------------------------------------
def test_from_ofa_on_csv_rows(space: MBv3Space, ofa_csv) -> None:
    with open(ofa_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5000
    archs = []
    for row in rows:
        a = space.from_ofa(row["depths"], row["kernel_sizes"], row["expand_ratios"])
        depths = [int(d) for d in row["depths"].split("-")]
        ks = [int(k) for k in row["kernel_sizes"].split("-")]
        es = [int(e) for e in row["expand_ratios"].split("-")]
        assert [len(s) for s in a] == depths
        assert all(a[s][j] == (ks[4 * s + j], es[4 * s + j]) for s in range(5) for j in range(depths[s]))
        archs.append(a)
    assert all(space.is_valid(a) for a in archs)
    assert len(set(archs)) > 4900  # distinct subnets once unused slots are dropped
    d, k, e = space.to_ofa(archs[0])
    assert space.from_ofa(d, k, e) == archs[0]


def test_from_ofa_ignores_unused_slots_and_validates(space: MBv3Space) -> None:
    d = [2] * 5
    k = [3, 5, 9, 9] * 5  # 9 only in unused slots
    e = [4, 6, 0, 0] * 5
    assert space.from_ofa(d, k, e) == tuple(((3, 4), (5, 6)) for _ in range(5))
    with pytest.raises(InvalidArchError, match="depth must be in"):
        space.from_ofa([1, 2, 2, 2, 2], k, e)
    with pytest.raises(InvalidArchError, match="5 depths and 20"):
        space.from_ofa(d, k[:19], e)
    with pytest.raises(InvalidArchError, match="kernel in"):
        space.from_ofa([3] * 5, k, e)  # slot 3 is used now and holds kernel 9
    with pytest.raises(InvalidArchError, match="'-'-joined"):
        space.from_ofa("2-2-x-2-2", k, e)


# ----- networks ----------------------------------------------------------------------------------
def test_build_default_is_ofa_mbv3(space: MBv3Space) -> None:
    model = space.build(SMALLEST)
    from timm.models.mobilenetv3 import MobileNetV3

    assert isinstance(model, MobileNetV3)
    assert model.conv_stem.in_channels == 3 and model.conv_stem.out_channels == 16
    assert model.conv_stem.stride == (2, 2)
    assert [len(s) for s in model.blocks] == [1, 2, 2, 2, 2, 2, 1]
    assert [s[0].conv_pwl.out_channels for s in model.blocks[1:6]] == [24, 40, 80, 112, 160]
    assert [s[0].conv_dw.stride[0] for s in model.blocks[1:6]] == [2, 2, 2, 1, 2]
    se = [not isinstance(s[0].se, torch.nn.Identity) for s in model.blocks[1:6]]
    assert se == [False, True, False, True, True]
    relu = [isinstance(s[0].bn1.act, torch.nn.ReLU) for s in model.blocks[1:6]]
    assert relu == [True, True, False, False, False]
    assert model.blocks[6][0].conv.out_channels == 960 and model.conv_head.out_channels == 1280
    assert model.conv_head.bias is None and model.classifier.out_features == 1000
    big = space.build(LARGEST)
    assert big.blocks[5][3].conv_dw.kernel_size == (7, 7) and big.blocks[5][3].conv_pw.out_channels == 160 * 6
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 224, 224)).shape == (1, 1000)


def test_build_for_small_image_task() -> None:
    space = MBv3Space(**TINY)
    task = SimpleNamespace(num_classes=7, input_shape=(1, 8, 8))
    model = space.build(SMALLEST, task)
    assert isinstance(model, ResizeInput) and model.min_resolution == 32
    assert model.net.conv_stem.in_channels == 1
    with torch.no_grad():
        assert model(torch.randn(4, 1, 8, 8)).shape == (4, 7)
    model(torch.randn(4, 1, 8, 8)).sum().backward()  # trainable end to end
    assert model.net.conv_stem.weight.grad is not None
    with pytest.raises(ConfigError, match="input_shape"):
        space.build(SMALLEST, SimpleNamespace(num_classes=7, input_shape=(8, 8)))


def test_width_mult_scales_channels() -> None:
    model = MBv3Space(width_mult=1.2).build(SMALLEST)
    assert [s[0].conv_pwl.out_channels for s in model.blocks[1:6]] == [32, 48, 96, 136, 192]
    assert model.conv_head.out_channels == 1536


def test_cost_params_equal_timm_count(space: MBv3Space) -> None:
    pytest.importorskip("nag.spaces.costing", reason="costing.py not written yet")
    for arch in (SMALLEST, LARGEST):
        c = space.cost(arch)
        n = sum(p.numel() for p in space.build(arch).parameters())
        assert round(c["params_M"] * 1e6) == n
        assert c["flops_M"] > 0
    assert space.cost(LARGEST)["flops_M"] > space.cost(SMALLEST)["flops_M"]
    assert space.cost(space.format(SMALLEST)) == space.cost(SMALLEST)  # cached, string accepted


def test_latency_positive_and_cached(tmp_path) -> None:
    path = tmp_path / "lat.json"
    space = MBv3Space(**TINY, latency_cache=path)
    ms = space.latency(SMALLEST, runs=3, warmup=1)
    assert isinstance(ms, float) and ms > 0
    assert space.latency(SMALLEST, runs=3, warmup=1) == ms  # in memory
    stored = json.loads(path.read_text())
    assert list(stored.values()) == [ms] and space.format(SMALLEST) in next(iter(stored))
    fresh = MBv3Space(**TINY, latency_cache=path)
    assert fresh.latency(space.format(SMALLEST)) == ms  # from disk, no re-measurement
    assert space.latency(SMALLEST, batch_size=2, runs=2, warmup=0) > 0  # another key
    assert len(json.loads(path.read_text())) == 2
    with pytest.raises(ConfigError, match="runs >= 1"):
        space.latency(SMALLEST, runs=0)


def test_constructor_validates() -> None:
    with pytest.raises(ConfigError, match="width_mult"):
        MBv3Space(width_mult=0)
    with pytest.raises(ConfigError, match="resolution"):
        MBv3Space(resolution=0)
    assert MBv3Space(resolution=160).default_input_shape() == (3, 160, 160)


@pytest.fixture(scope="module")
def digits():
    pytest.importorskip("nag.evaluation.training", reason="training.py not written yet")
    from nag.data import get_task

    return get_task("digits")


def test_train_eval_digits_runs(digits) -> None:
    """The base train_eval trains the timm net on 8x8 images (upsampled inside the model)."""
    space = MBv3Space(**TINY)
    metrics = train_eval(space, SMALLEST, digits, budget={"epochs": 1, "batch_size": 64, "max_steps": 3}, seed=0)
    assert metrics["steps"] == 3 and 0 <= metrics["val_acc"] <= 100 and 0 <= metrics["test_acc"] <= 100
    assert np.isfinite(metrics["train_loss"]) and metrics["wall_s"] > 0
    n_params = sum(p.numel() for p in space.build(SMALLEST, digits).parameters())
    assert metrics["params_M"] == pytest.approx(n_params / 1e6)


@pytest.mark.slow
def test_train_eval_digits_learns(digits) -> None:
    space = MBv3Space(**TINY)
    metrics = train_eval(space, SMALLEST, digits, budget={"epochs": 3, "batch_size": 64}, seed=0)
    assert metrics["val_acc"] > 30  # chance is 10%; 3 epochs reach ~64% (seed 0)
