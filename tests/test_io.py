"""Atomic writes and crash-safe JSON Lines (nag.io)."""
from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nag.io import append_jsonl, atomic_torch_save, atomic_write_json, atomic_write_text, read_jsonl, to_jsonable


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_write_text_creates_parents_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "out.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert leftovers(target.parent) == []


def test_written_file_has_normal_permissions(tmp_path: Path) -> None:
    target = atomic_write_text(tmp_path / "r.txt", "x")
    mode = stat.S_IMODE(target.stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask  # not mkstemp's private 0600


def test_json_converts_numpy_torch_and_writes_nan_as_null(tmp_path: Path) -> None:
    obj = {
        "np_float": np.float32(1.5),
        "np_int": np.int64(7),
        "np_bool": np.bool_(True),
        "t_scalar": torch.tensor(2.25),
        "t_vec": torch.tensor([1, 2]),
        "arr": np.arange(3),
        "tuple": (1, "a"),
        "nan": float("nan"),
        "inf": np.float64("inf"),
        "path": tmp_path,
        3: "int key",
    }
    path = atomic_write_json(tmp_path / "r.json", obj)
    back = json.loads(path.read_text())
    assert back == {
        "np_float": 1.5,
        "np_int": 7,
        "np_bool": True,
        "t_scalar": 2.25,
        "t_vec": [1, 2],
        "arr": [0, 1, 2],
        "tuple": [1, "a"],
        "nan": None,
        "inf": None,
        "path": str(tmp_path),
        "3": "int key",
    }
    assert "NaN" not in path.read_text()  # strict JSON


def test_json_refuses_unknown_types_naming_where(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    atomic_write_json(target, {"ok": 1})
    with pytest.raises(TypeError, match=r"\$\.metrics\.model"):
        atomic_write_json(target, {"metrics": {"model": torch.nn.Linear(1, 1)}})
    assert json.loads(target.read_text()) == {"ok": 1}  # the old file survives
    assert leftovers(tmp_path) == []


def test_interrupted_write_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "ckpt.pt"
    atomic_torch_save({"v": 1}, target)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("interrupted before the rename")  # e.g. Ctrl-C between writing and renaming

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt, match="interrupted before the rename"):
        atomic_torch_save({"v": 2}, target)
    monkeypatch.undo()
    assert torch.load(target)["v"] == 1
    assert leftovers(tmp_path) == []


def test_torch_save_roundtrip(tmp_path: Path) -> None:
    state = {"w": torch.randn(3, 4), "step": 5}
    atomic_torch_save(state, tmp_path / "s.pt")
    back = torch.load(tmp_path / "s.pt")
    assert torch.equal(back["w"], state["w"]) and back["step"] == 5


def test_jsonl_append_and_read(tmp_path: Path) -> None:
    path = tmp_path / "log" / "rows.jsonl"
    for i in range(3):
        append_jsonl(path, {"i": i, "acc": np.float32(i / 2)})
    assert read_jsonl(path) == [{"i": 0, "acc": 0.0}, {"i": 1, "acc": 0.5}, {"i": 2, "acc": 1.0}]
    assert path.read_text().count("\n") == 3


def test_jsonl_torn_last_line_is_skipped_and_next_append_is_safe(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    append_jsonl(path, {"i": 0})
    with open(path, "a") as fh:
        fh.write('{"i": 1, "ac')  # a writer killed mid-line
    assert read_jsonl(path) == [{"i": 0}]
    append_jsonl(path, {"i": 2})
    with pytest.warns(UserWarning, match="rows.jsonl:2"):
        rows = read_jsonl(path)
    assert rows == [{"i": 0}, {"i": 2}]


def test_read_jsonl_missing(tmp_path: Path) -> None:
    assert read_jsonl(tmp_path / "none.jsonl", missing_ok=True) == []
    with pytest.raises(FileNotFoundError, match="none.jsonl"):
        read_jsonl(tmp_path / "none.jsonl")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=40, deadline=None)
@given(obj=json_values)
def test_json_roundtrip_property(tmp_path_factory: pytest.TempPathFactory, obj) -> None:
    path = tmp_path_factory.mktemp("prop") / "v.json"
    atomic_write_json(path, {"v": obj})
    assert json.loads(path.read_text()) == {"v": obj}
    assert to_jsonable(obj) == obj


@settings(max_examples=30, deadline=None)
@given(x=st.floats())
def test_floats_are_finite_or_null(x: float) -> None:
    out = to_jsonable({"x": np.float64(x)})["x"]
    assert out is None if not math.isfinite(x) else out == x
