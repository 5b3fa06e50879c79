"""BenchmarkTable: loading real tables, O(1) lookups, ranks, and the errors users meet."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nag.tables import BenchmarkTable
from nag.errors import ArchNotInTableError, ConfigError, InvalidArchError, MissingDataError, UnknownNameError
from nag.spaces.nb201 import NB201Space

SPACE = NB201Space()
A, B, C = SPACE.enumerate()[100:103]


@pytest.fixture
def nb201(nb201_table) -> BenchmarkTable:
    return nb201_table


def write(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


# ----- the real NB201 table -----------------------------------------------------------------
def test_loads_the_nb201_table(nb201: BenchmarkTable, nb201_csv) -> None:
    with open(nb201_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(nb201) == 15625 and set(nb201.archs) == set(SPACE.enumerate())
    assert nb201.archs == [SPACE.parse(r["arch"]) for r in rows]  # table order
    assert "iso_key" not in nb201.metrics and "arch" not in nb201.metrics
    for name in ("cifar10_test_acc", "cifar100_test_acc", "params_M_cifar10", "flops_M_cifar10", "latency_ms_pixel3"):
        assert name in nb201.metrics
        column = nb201.values(name)
        assert column.shape == (15625,) and not column.flags.writeable
        for i in (0, 777, 15624):
            assert column[i] == float(rows[i][name])
            assert nb201.query(nb201.archs[i], name) == float(rows[i][name])
            assert nb201.query(rows[i]["arch"], name) == float(rows[i][name])  # string form
    assert nb201.row(rows[5]["arch"])["cifar100_test_acc"] == float(rows[5]["cifar100_test_acc"])


def test_optima_and_ranks(nb201: BenchmarkTable) -> None:
    n = len(nb201)
    assert nb201.quantile_threshold("cifar10_test_acc", 1 / n) == pytest.approx(94.3733)
    assert nb201.quantile_threshold("cifar100_test_acc", 1 / n) == pytest.approx(73.5133)
    best = nb201.archs[int(np.argmax(nb201.values("cifar10_test_acc")))]
    assert nb201.rank_fraction(best, "cifar10_test_acc") == 1 / n
    assert nb201.quantile_threshold("cifar10_test_acc", 1.0) == nb201.values("cifar10_test_acc").min()
    top = nb201.values("cifar10_test_acc") >= nb201.quantile_threshold("cifar10_test_acc", 0.05)
    assert math.ceil(0.05 * n) <= top.sum() <= math.ceil(0.05 * n) + 5  # ties at the threshold
    fastest = nb201.quantile_threshold("latency_ms_pixel3", 1 / n, higher_is_better=False)
    assert fastest == nb201.values("latency_ms_pixel3").min()


def test_membership(nb201: BenchmarkTable) -> None:
    assert A in nb201 and SPACE.format(A) in nb201
    assert "|bad~0|" not in nb201 and ("none",) * 5 not in nb201 and ["none"] * 6 not in nb201


def test_ofa_table_through_arch_fn(ofa_csv) -> None:
    mbv3 = pytest.importorskip("nag.spaces.mbv3")
    space = mbv3.MBv3Space()
    fn = lambda r: space.from_ofa(r["depths"], r["kernel_sizes"], r["expand_ratios"])  # noqa: E731
    table = BenchmarkTable.from_csv(ofa_csv, space, arch_fn=fn)
    assert len(table) == 5000 and "resolution" in table.metrics and "depths" not in table.metrics
    at224 = BenchmarkTable.from_csv(ofa_csv, space, arch_fn=lambda r: fn(r) if r["resolution"] == "224" else None)
    assert 0 < len(at224) < 5000 and set(at224.values("resolution")) == {224.0}
    arch = at224.archs[0]
    assert at224.query(arch, "latency_ms_titan_rtx_1") == table.query(arch, "latency_ms_titan_rtx_1")


# ----- small tables ---------------------------------------------------------------------------
def test_empty_cells_and_text_columns(tmp_path: Path) -> None:
    path = write(
        tmp_path / "t.csv",
        ["note", "arch", "acc", "lat", "blank"],
        [["x", SPACE.format(A), 90.5, "", ""], ["y", SPACE.format(B), 80, 3.5, ""]],
    )
    table = BenchmarkTable.from_csv(path, SPACE)
    assert table.metrics == ["acc", "lat"]
    assert math.isnan(table.query(A, "lat")) and table.query(B, "lat") == 3.5
    assert table.quantile_threshold("lat", 1.0) == 3.5  # NaN ignored
    assert table.rank_fraction(B, "lat") == 1.0


def test_custom_arch_column(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", ["cell", "acc"], [[SPACE.format(A), 1]])
    assert BenchmarkTable.from_csv(path, SPACE, arch_column="cell").query(A, "acc") == 1.0


def test_duplicate_policies(tmp_path: Path) -> None:
    path = write(
        tmp_path / "t.csv", ["arch", "acc"], [[SPACE.format(A), 1], [SPACE.format(B), 5], [SPACE.format(A), 3]]
    )
    with pytest.raises(ConfigError, match="on_duplicate='first' or 'mean'") as info:
        BenchmarkTable.from_csv(path, SPACE)
    assert SPACE.format(A) in str(info.value)
    first = BenchmarkTable.from_csv(path, SPACE, on_duplicate="first")
    mean = BenchmarkTable.from_csv(path, SPACE, on_duplicate="mean")
    assert first.archs == mean.archs == [A, B]
    assert first.query(A, "acc") == 1.0 and mean.query(A, "acc") == 2.0 and mean.query(B, "acc") == 5.0
    with pytest.raises(ConfigError, match="accepted: error, first, mean"):
        BenchmarkTable.from_csv(path, SPACE, on_duplicate="last")


# ----- errors -------------------------------------------------------------------------------
def test_missing_file_names_the_config_key(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "nb201.csv"
    with pytest.raises(MissingDataError) as info:
        BenchmarkTable.from_csv(missing, SPACE)
    msg = str(info.value)
    for needle in ("benchmark.path", str(missing), "'arch'", "cifar10_test_acc", "docs/benchmark_tables.md"):
        assert needle in msg
    assert isinstance(info.value, FileNotFoundError)
    with pytest.raises(MissingDataError):
        BenchmarkTable.from_csv(tmp_path, SPACE)  # a folder is not a table


def test_unknown_metric_lists_the_known_ones(tmp_path: Path) -> None:
    table = BenchmarkTable.from_csv(write(tmp_path / "t.csv", ["arch", "acc", "lat"], [[SPACE.format(A), 1, 2]]), SPACE)
    for call in (lambda: table.query(A, "accuracy"), lambda: table.values("accuracy")):
        with pytest.raises(UnknownNameError, match="unknown metric 'accuracy'.*Known metrics: acc, lat"):
            call()


def test_arch_not_in_table_and_foreign_archs(tmp_path: Path) -> None:
    table = BenchmarkTable.from_csv(write(tmp_path / "t.csv", ["arch", "acc"], [[SPACE.format(A), 1]]), SPACE)
    with pytest.raises(ArchNotInTableError, match="valid nb201 arch but is not in the benchmark table") as info:
        table.query(B, "acc")
    assert SPACE.format(B) in str(info.value) and isinstance(info.value, KeyError)
    with pytest.raises(InvalidArchError, match="nor_conv_3x3"):
        table.query("|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|", "acc")
    with pytest.raises(InvalidArchError):
        table.query(("none",) * 5, "acc")


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no 'arch' column; its columns are \['cell', 'acc'\]"):
        BenchmarkTable.from_csv(write(tmp_path / "a.csv", ["cell", "acc"], [[SPACE.format(A), 1]]), SPACE)
    with pytest.raises(ConfigError, match="no rows"):
        BenchmarkTable.from_csv(write(tmp_path / "b.csv", ["arch", "acc"], []), SPACE)
    bad = write(tmp_path / "c.csv", ["arch", "acc"], [[SPACE.format(A), 1], ["|none~0|+|oops", 2]])
    with pytest.raises(InvalidArchError, match=r"c\.csv, line 3: invalid NB201 arch string"):
        BenchmarkTable.from_csv(bad, SPACE)
    with pytest.raises(ConfigError, match="skipped every row"):
        BenchmarkTable.from_csv(write(tmp_path / "d.csv", ["arch"], [[SPACE.format(A)]]), SPACE, arch_fn=lambda r: None)
    with pytest.raises(ConfigError, match="top_frac must be in"):
        BenchmarkTable(SPACE, [A], {"acc": [1.0]}).quantile_threshold("acc", 0)


# ----- rank properties ----------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 6), min_size=1, max_size=40),  # small ints: many ties
    st.floats(0.001, 1.0),
    st.booleans(),
)
def test_threshold_and_rank_fraction_agree(values, frac, higher) -> None:
    archs = SPACE.enumerate()[: len(values)]
    table = BenchmarkTable(SPACE, archs, {"m": [float(v) for v in values]})
    n = len(values)
    k = math.ceil(frac * n - 1e-9)
    thr = table.quantile_threshold("m", frac, higher_is_better=higher)
    reach = [(v >= thr) if higher else (v <= thr) for v in values]
    assert sum(reach) >= k
    strictly = sum((v > thr) if higher else (v < thr) for v in values)
    assert strictly < k
    for arch, ok in zip(archs, reach):
        assert ok == (table.rank_fraction(arch, "m", higher_is_better=higher) <= k / n)
