"""The wheel and the sdist carry every config and every asset, and an installed wheel runs an
experiment from any folder (``python -m nag.run``, configs found in the package).

The builds run on a copy of the working tree, so the repository gets no build/ or egg-info.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p.relative_to(REPO / "experiments").as_posix() for p in (REPO / "experiments").rglob("*.yaml"))
ASSETS = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "nag" / "assets").rglob("*") if p.is_file())


def _tree_files() -> list[str]:
    """The files of the working tree that a build may read (tracked, or untracked and not ignored)."""
    try:
        out = subprocess.run(["git", "-C", str(REPO), "ls-files", "-co", "--exclude-standard", "-z"],
                             capture_output=True, check=True)
        return [f for f in out.stdout.decode().split("\0") if f and (REPO / f).is_file()]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout (e.g. an unpacked sdist)
        skip = {".venv", "runs", "build", "dist", "__pycache__", ".pytest_cache", ".git"}
        return [p.relative_to(REPO).as_posix() for p in REPO.rglob("*")
                if p.is_file() and not skip & set(p.relative_to(REPO).parts)]


@pytest.fixture(scope="module")
def source_copy(tmp_path_factory) -> Path:
    dst = tmp_path_factory.mktemp("src") / "nag"
    for rel in _tree_files():
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, dst / rel)
    return dst


@pytest.fixture(scope="module")
def wheel(source_copy, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("W")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), "."],
                   cwd=source_copy, check=True, capture_output=True, timeout=600)
    (whl,) = out.glob("nag-*.whl")
    return whl


def test_wheel_carries_every_config_and_asset(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"nag/conf/{c}" for c in CONFIGS} <= names, sorted({f"nag/conf/{c}" for c in CONFIGS} - names)
    assert set(ASSETS) <= names, sorted(set(ASSETS) - names)
    assert "nag/conf/experiment/generate.yaml" in names and "nag/run.py" in names


def test_sdist_carries_every_config_and_asset(source_copy, tmp_path):
    code = ("import sys; from setuptools.build_meta import build_sdist; "
            "print(build_sdist(sys.argv[1]))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=source_copy, check=True, capture_output=True,
                         text=True, timeout=600)
    sdist = tmp_path / out.stdout.strip().splitlines()[-1]
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    assert {f"experiments/{c}" for c in CONFIGS} <= names, sorted({f"experiments/{c}" for c in CONFIGS} - names)
    assert set(ASSETS) <= names and {"setup.py", "pyproject.toml", "README.md"} <= names


def test_installed_wheel_runs_from_another_folder(wheel, tmp_path):
    """The issue's check: pip install --target T W/*.whl, then PYTHONPATH=T python -m nag.run ... elsewhere
    (12 s on this project's 2-core box under load; not marked slow, it is the packaging guarantee)."""
    target = tmp_path / "T"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=600)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("NAG_CONFIG_DIR", "NAG_TRACEBACK")}
    env.update(PYTHONPATH=str(target), WANDB_MODE="disabled")
    cmd = [sys.executable, "-m", "nag.run", "experiment=generate", "space=nb201", "n=50", "hydra.run.dir=D"]
    out = subprocess.run(cmd, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads((elsewhere / "D" / "results.json").read_text())
    assert results["n"] == 50 and results["validity"] == 1.0
    probe = subprocess.run([sys.executable, "-c", "import nag.config_files as c; print(c.config_dir())"], cwd=elsewhere,
                           env=env, capture_output=True, text=True, check=True)
    assert Path(probe.stdout.strip()) == target / "nag" / "conf"  # the package's own configs, not the repository's
