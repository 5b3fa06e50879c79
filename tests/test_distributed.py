"""Distributed runs: only rank zero writes; DDP on 2 CPU processes (gloo) for the prior and the predictors."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nag.distributed import global_rank, is_rank_zero
from nag.io import append_jsonl, atomic_torch_save, atomic_write_json, atomic_write_text

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("variable", ["RANK", "LOCAL_RANK", "SLURM_PROCID"])
def test_rank_comes_from_the_launcher_environment(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    for name in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert global_rank() == 0 and is_rank_zero()
    monkeypatch.setenv(variable, "1")
    assert global_rank() == 1 and not is_rank_zero()


def test_only_rank_zero_writes_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RANK", "1")
    atomic_write_text(tmp_path / "a.txt", "x")
    atomic_write_json(tmp_path / "b.json", {"x": 1})
    atomic_torch_save({"x": 1}, tmp_path / "c.pt")
    append_jsonl(tmp_path / "d.jsonl", {"x": 1})
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setenv("RANK", "0")
    append_jsonl(tmp_path / "d.jsonl", {"x": 1})
    assert [p.name for p in tmp_path.iterdir()] == ["d.jsonl"]


def test_run_experiment_on_another_rank_runs_but_writes_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    from nag.experiments import EXPERIMENTS, run_experiment

    calls = []
    EXPERIMENTS.register("_rank_probe", lambda cfg: calls.append(cfg.seed) or {"value": 1.0})
    try:
        cfg = OmegaConf.create({"name": "_rank_probe", "seed": 3, "wandb": {"mode": "offline"}})
        monkeypatch.setenv("LOCAL_RANK", "1")
        assert run_experiment(cfg, tmp_path / "run") == {"value": 1.0}
        assert calls == [3] and not (tmp_path / "run" / "results.json").exists()
        assert not (tmp_path / "run" / "config.yaml").exists() and not (tmp_path / "run" / "wandb").exists()
    finally:
        EXPERIMENTS._items.pop("_rank_probe", None)


def _env() -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "SLURM_PROCID")}
    return {**env, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}


@pytest.mark.slow
def test_train_prior_with_ddp_on_two_cpu_processes(tmp_path: Path) -> None:
    """trainer.devices=2 trainer.strategy=ddp: two gloo ranks train one prior; rank zero writes it once,
    and the prior it wrote generates valid archs."""
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "nag.run", "experiment=train_prior", "trainer.accelerator=cpu", "trainer.devices=2",
           "trainer.strategy=ddp", "train.max_steps=6", "train.ckpt_every=3", "data.n_samples=64", "data.batch_size=16",
           "net.d_model=16", "net.n_layers=1", "net.n_heads=2", "net.d_ff=16", "n=20", "batch_size=20", "solver.steps=2",
           f"hydra.run.dir={run}"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("results: ") == 1  # rank 1 printed and wrote nothing
    results = json.loads((run / "results.json").read_text())
    assert results["steps"] == 6 and (run / "prior.pt").is_file() and (run / "last.ckpt").is_file()
    gen = subprocess.run([sys.executable, "-m", "nag.run", "experiment=generate", f"prior.path={run / 'prior.pt'}", "n=50",
                          f"hydra.run.dir={tmp_path / 'gen'}"], capture_output=True, text=True, env=_env(), timeout=600)
    assert gen.returncode == 0, gen.stderr[-3000:]
    assert json.loads((tmp_path / "gen" / "results.json").read_text())["validity"] == 1.0


def test_predictor_with_ddp_on_two_cpu_processes(tmp_path: Path) -> None:
    """fit_predictor(trainer={devices: 2, strategy: ddp}): both ranks end with the same weights
    (gradients synced), each rank trained on its half of every batch, and rank zero wrote once."""
    script = tmp_path / "fit.py"
    script.write_text(textwrap.dedent(f"""
        import json
        from nag.distributed import global_rank
        from nag.io import append_jsonl
        from nag.modules.predictor import TensorBatches, fit_predictor
        from nag.spaces import get_space

        seen = []
        iterate = TensorBatches.__iter__
        def counting(self):
            for batch in iterate(self):
                seen.append(len(batch[0]))
                yield batch
        TensorBatches.__iter__ = counting

        if __name__ == "__main__":
            space = get_space("nb201")
            archs = space.sample(64, 0)
            y = {{"n_conv": [float(sum("conv" in op for op in a)) for a in archs]}}
            sde = {{"name": "ve", "sigma_min": 0.1, "sigma_max": 5.0}}
            p = fit_predictor(space, archs, y, sde, steps=6, batch_size=16, seed=0,
                              trainer={{"accelerator": "cpu", "devices": 2, "strategy": "ddp"}})
            pred = p.predict_archs(archs[:8])[0].ravel().tolist()
            with open(f"rank{{global_rank()}}.json", "w") as fh:  # each rank's own view, not through nag.io
                json.dump({{"pred": pred, "batch": max(seen)}}, fh)
            append_jsonl({str(tmp_path / "rows.jsonl")!r}, {{"pred": pred}})
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=_env(), timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["pred"] == ranks[1]["pred"]  # the same weights on both ranks
    assert ranks[0]["batch"] == ranks[1]["batch"] == 8  # half of each batch of 16
    rows = (tmp_path / "rows.jsonl").read_text().splitlines()
    assert len(rows) == 1


def test_nag_runs_without_wandb_installed_when_wandb_is_disabled(tmp_path: Path) -> None:
    """The GPU box has torch and lightning but no wandb: with W&B disabled nag must not need it."""
    code = textwrap.dedent(f"""
        import importlib.abc, sys

        class NoWandb(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "wandb" or name.startswith("wandb."):
                    raise ModuleNotFoundError("No module named 'wandb'", name="wandb")
                return None

        sys.meta_path.insert(0, NoWandb())
        from nag.experiments import run_experiment
        from nag.run import compose_config

        cfg = compose_config(["experiment=generate", "n=5", "batch_size=5", "wandb.mode=disabled"])
        print(run_experiment(cfg, {str(tmp_path / "run")!r})["validity"])
        assert "wandb" not in sys.modules
    """)
    env = {**_env(), "WANDB_MODE": "disabled"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "1.0"
