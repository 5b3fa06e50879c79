"""benchmarks/gpu.py must run where only torch, lightning and nag exist (the lent GPU machines)."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
BLOCKED = ("hydra", "omegaconf", "wandb", "ray")


def _without_packages(body: str) -> str:
    return textwrap.dedent(f"""
        import importlib.abc, sys

        class Blocked(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {BLOCKED!r}:
                    raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
                return None

        sys.meta_path.insert(0, Blocked())
    """) + textwrap.dedent(body)


def _run(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=900, cwd=tmp_path)


def test_gpu_benchmark_imports_without_hydra_omegaconf_wandb_ray(tmp_path: Path) -> None:
    out = _run(_without_packages(f"""
        sys.path.insert(0, {str(REPO_ROOT / 'benchmarks')!r})
        import gpu
        assert gpu.resolve_device("cpu") == "cpu"
        print("ok")
    """), tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "ok"


@pytest.mark.slow
def test_gpu_benchmark_quick_run_on_the_cpu(tmp_path: Path) -> None:
    out = _run(_without_packages(f"""
        sys.argv = ["gpu.py", "--device", "cpu", "--quick", "--out", {str(tmp_path / 'gpu.json')!r}]
        sys.path.insert(0, {str(REPO_ROOT / 'benchmarks')!r})
        import gpu
        gpu.main()
    """), tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = json.loads((tmp_path / "gpu.json").read_text())
    assert all(v > 0 for v in rows["prior_steps_per_s"].values())
    assert all(r["archs_per_s"] > 0 and r["valid"] == 1.0 for r in rows["sampling"].values())
    assert rows["sampling"]["paper: PC 1000 + corrector, 12x64 net"]["extrapolated"] is True
    assert rows["packing"]["k"] == 2 and rows["packing"]["packed_images_per_s"] > 0
    assert "prior training" in out.stdout and "packing" in out.stdout
