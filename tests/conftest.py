"""Shared fixtures. W&B is disabled in tests.

Benchmark data:
  - the real tables are read from ``../shared/data`` (``$NAG_SHARED_DATA`` overrides the folder;
    point it at a missing folder to see what a clean clone tests). Only tests of quality
    thresholds on the real tables need them, and they skip without them;
  - ``tests/data/`` holds a small committed slice of the real tables (see its README) for
    parser and metric tests: a missing slice is a failure, not a skip;
  - ``synthetic_csv`` / ``synthetic_table``: a synthetic table over the whole NB201 space
    (``tests/synthetic_table.py``), for the mechanics of search, evaluators, guidance and scripts.
"""
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
SHARED_DATA = Path(os.environ.get("NAG_SHARED_DATA") or REPO_ROOT.parent / "shared" / "data")
TEST_DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"benchmark data folder {SHARED_DATA} is absent (it ships beside the repo, not in it)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def nb201_csv(shared_data: Path) -> Path:
    """The real NB201 table (15,625 rows): for tests of quality on real data only."""
    path = shared_data / "nb201" / "nb201.csv"
    if not path.is_file():
        pytest.skip(f"NB201 table {path} is absent")
    return path


@pytest.fixture(scope="session")
def nb201_table(nb201_csv: Path):
    """The real NB201 table on the nb201 space, parsed once per session (tests only read it)."""
    from nag.tables.table import BenchmarkTable
    from nag.spaces import get_space

    return BenchmarkTable.from_csv(nb201_csv, get_space("nb201"))


def _tracked(name: str) -> Path:
    path = TEST_DATA / name
    assert path.is_file(), f"{path} is committed test data and must be there (tests/data/README.md)"
    return path


@pytest.fixture(scope="session")
def nb201_slice_csv() -> Path:
    """50 real NB201 rows (both optima, cells at chance, whole isomorphism classes); tests/data/README.md."""
    return _tracked("nb201_slice.csv")


@pytest.fixture(scope="session")
def ofa_slice_csv() -> Path:
    """20 real OFA MobileNetV3 latency rows (4 at resolution 224); tests/data/README.md."""
    return _tracked("ofa_slice.csv")


@pytest.fixture(scope="session")
def synthetic_csv(tmp_path_factory) -> Path:
    """The synthetic NB201 table as a CSV (tests/synthetic_table.py; not real data)."""
    from synthetic_table import write_csv

    return write_csv(tmp_path_factory.mktemp("synthetic") / "nb201_synthetic.csv")


@pytest.fixture(scope="session")
def synthetic_table(synthetic_csv: Path):
    """The synthetic table on the nb201 space, parsed from its CSV as a user's table would be."""
    from nag.tables.table import BenchmarkTable
    from nag.spaces import get_space

    return BenchmarkTable.from_csv(synthetic_csv, get_space("nb201"))


class TrainingLog(list):
    """Every real training started during a test, as ``(space name, arch string)``, in order.

    Set ``kill_at = k`` to simulate a kill as training number k starts (``kills.Killed``).
    """

    kill_at: int | None = None

    def archs(self) -> list[str]:
        return [arch for _, arch in self]


@pytest.fixture
def trainings(monkeypatch) -> TrainingLog:
    """Counts the real trainings (``nag.evaluation.train_eval``) of a test; each still trains for real.

    Modules bind ``train_eval`` by name, so every nag module holding it gets the counting one
    (the built-in experiments are imported first). The one place that knows where training is
    entered: when that moves, change only this.
    """
    import importlib
    import sys

    import nag.experiments as experiments
    from kills import Killed
    from nag.evaluation import training

    for module in experiments._BUILTINS.values():
        importlib.import_module(module)
    log = TrainingLog()
    real = training.train_eval

    def counted(space, arch, *args, **kwargs):
        if log.kill_at is not None and len(log) + 1 == log.kill_at:
            log.kill_at = None
            raise Killed(f"killed while training arch number {len(log) + 1}")
        log.append((space.name, space.format(arch)))
        return real(space, arch, *args, **kwargs)

    holders = [m for name, m in list(sys.modules.items()) if name.startswith("nag") and getattr(m, "train_eval", None) is real]
    assert training in holders and len(holders) > 3, [m.__name__ for m in holders]
    for module in holders:
        monkeypatch.setattr(module, "train_eval", counted)
    return log


@pytest.fixture
def one_torch_thread():
    """Tiny nets and tensors: one intra-op thread is as fast, and immune to OpenMP oversubscription on
    shared cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
