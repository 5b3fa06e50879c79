"""Generation metrics: validity, uniqueness, novelty, op-frequency KL, threshold validity."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nag.metrics import generation_metrics, op_frequencies, op_kl, threshold_valid_mask, validity_threshold
from nag.spaces import get_space


@pytest.fixture(scope="module")
def nb201():
    return get_space("nb201")


@pytest.fixture(scope="module")
def mbv3():
    return get_space("mbv3")


def state(space, archs):
    return 2 * space.encode_batch(archs) - 1


def test_validity_uniqueness_novelty(nb201):
    a, b, c = nb201.sample(3, 0)
    junk = ("conv_9x9",) * 6
    archs = [a, a, b, None, junk, c, c, c]
    m = generation_metrics(archs, nb201, train_archs=[a, b])
    assert m["n"] == 8
    assert m["validity"] == pytest.approx(6 / 8)
    assert m["uniqueness"] == pytest.approx(3 / 6)
    assert m["novelty"] == pytest.approx(1 / 3)  # of the distinct valid {a, b, c}, only c is new
    assert set(generation_metrics(archs, nb201)) == {"n", "validity", "uniqueness", "uniqueness_iso"}
    empty = generation_metrics([], nb201, train_archs=[a])
    assert empty["validity"] == 0.0 and empty["uniqueness"] == 0.0 and empty["novelty"] == 0.0


def test_uniqueness_iso_counts_isomorphism_classes(nb201):
    archs = nb201.enumerate()
    classes = {nb201.canonical(x) for x in archs}
    m = generation_metrics(archs, nb201)
    assert m["uniqueness"] == 1.0
    assert m["uniqueness_iso"] == pytest.approx(len(classes) / len(archs))
    assert len(classes) == 6466  # the published number of NB201 isomorphism classes


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 60))
def test_metric_properties(seed, n):
    space = get_space("nb201")
    archs = space.sample(n, seed)
    m = generation_metrics(archs, space, train_archs=archs)
    assert m["validity"] == 1.0
    assert m["uniqueness"] == pytest.approx(len(set(archs)) / n)
    assert m["novelty"] == 0.0
    assert m["op_kl"] == pytest.approx(0.0, abs=1e-12)
    assert 0.0 <= m["uniqueness_iso"] <= m["uniqueness"]
    assert generation_metrics(archs, space, train_archs=[])["novelty"] == 1.0


def test_op_kl_matches_hand_computation(nb201):
    ops = nb201.ops
    conv = ops.index("nor_conv_3x3")
    gen = [("nor_conv_3x3",) * 6] * 3
    train = [("skip_connect",) * 6] * 2 + [("nor_conv_3x3",) * 6]
    # per edge node: 5 possible ops; add-one smoothing
    p = np.full(5, 1 / 8)
    p[conv - 2] = 4 / 8
    q = np.full(5, 1 / 8)
    q[conv - 2] = 2 / 8
    q[ops.index("skip_connect") - 2] = 3 / 8
    expected = float((p * np.log(p / q)).sum())
    assert op_kl(gen, train, nb201) == pytest.approx(expected)
    assert op_kl(train, train, nb201) == 0.0
    assert generation_metrics(gen, nb201, train)["op_kl"] == pytest.approx(expected)
    freq = op_frequencies(train, nb201)
    assert freq.shape == (8, 8) and np.allclose(freq.sum(1), 1.0)
    assert freq[0, ops.index("input")] == 1.0  # input/output nodes have one possible token


def test_op_kl_covers_empty_nodes(mbv3):
    archs = mbv3.sample(300, 0)
    shallow = [a for a in archs if sum(mbv3.to_tokens(a)[i] == -1 for i in range(20)) >= 8]
    deep = [a for a in archs if sum(mbv3.to_tokens(a)[i] == -1 for i in range(20)) <= 2]
    assert shallow and deep
    assert op_kl(shallow, deep, mbv3) > 0.2 > op_kl(archs[:150], archs[150:], mbv3)


def test_validity_threshold_on_clean_and_noisy_states(nb201):
    archs = nb201.sample(64, 1)
    x = state(nb201, archs)
    assert validity_threshold(x, nb201) == 1.0
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    assert validity_threshold(x + 0.15 * z, nb201) == 1.0  # a 6.7-sigma crossing: never
    assert validity_threshold(x + 1.0 * z, nb201) < 0.1  # most rows cross somewhere
    assert validity_threshold(x[0], nb201) == 1.0  # a single [N, V] state
    assert validity_threshold(x[:0], nb201) == 0.0


def test_validity_threshold_rejects_each_kind_of_bad_row(nb201):
    x = state(nb201, nb201.sample(4, 2))
    x[0, 3, :] = -1.0  # no op on a required node
    x[1, 2, 2:4] = 1.0  # two ops on one node
    x[2, 4, :] = -1.0
    x[2, 4, 0] = 1.0  # 'input' on an edge node: not allowed there
    mask = threshold_valid_mask(x, nb201)
    assert mask.tolist() == [False, False, False, True]
    assert validity_threshold(x, nb201) == 0.25
    # decode (masked argmax) still gives valid archs: the threshold measures the raw model only
    assert all(nb201.is_valid(a) for a in nb201.decode(x))


def test_validity_threshold_uses_optional_nodes_and_cross_node_rules(mbv3):
    archs = mbv3.sample(3, 3)
    x = state(mbv3, archs)
    assert validity_threshold(x, mbv3) == 1.0  # skipped slots are all-zero rows: valid
    tokens = list(mbv3.to_tokens(archs[0]))
    tokens[2], tokens[3] = -1, 4  # slot 4 used while slot 3 is skipped
    bad = torch.full((1, 20, 9), -1.0)
    for i, tok in enumerate(tokens):
        if tok >= 0:
            bad[0, i, tok] = 1.0
    assert validity_threshold(bad, mbv3) == 0.0
    x[1, 0, :] = -1.0  # slot 1 of stage 1 is never optional
    assert threshold_valid_mask(x, mbv3).tolist() == [True, False, True]


def test_op_kl_is_nan_only_without_data(nb201):
    assert math.isnan(generation_metrics([None], nb201, train_archs=nb201.sample(3, 0))["op_kl"])


def test_spearman_is_none_where_it_is_undefined():
    from nag.metrics import spearman

    assert spearman([1.0, 2.0, 3.0], [10.0, 30.0, 20.0]) == pytest.approx(0.5)
    assert spearman([1.0, 2.0, 3.0], [100.0, 100.0, 100.0]) is None  # a saturated task: every arch 100%
    assert spearman([0.5, 0.5, 0.5], [1.0, 2.0, 3.0]) is None
    assert spearman([1.0, 2.0], [1.0, 2.0]) is None
