"""Shared fixtures. W&B is disabled in tests; benchmark data is read from ../shared/data."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")
# The suite's networks are tiny: one intra-op thread beats two (and avoids thrashing on a
# shared 2-core box). Set before torch is imported; subprocesses (CLI tests) inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("NAG_NUM_THREADS", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"benchmark data folder {SHARED_DATA} is absent (it ships beside the repo, not in it)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def nb201_csv(shared_data: Path) -> Path:
    path = shared_data / "nb201" / "nb201.csv"
    if not path.is_file():
        pytest.skip(f"NB201 table {path} is absent")
    return path


@pytest.fixture(scope="session")
def nb201_table(nb201_csv: Path):
    """The NB201 table on the nb201 space, parsed once per session (tests only read it)."""
    from nag.tables.table import BenchmarkTable
    from nag.spaces import get_space

    return BenchmarkTable.from_csv(nb201_csv, get_space("nb201"))


@pytest.fixture(scope="session")
def ofa_csv(shared_data: Path) -> Path:
    path = shared_data / "ofa" / "ofa_mbv3_latency.csv"
    if not path.is_file():
        pytest.skip(f"OFA latency table {path} is absent")
    return path
