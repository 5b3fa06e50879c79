"""train_prior and generate experiments end to end (tiny), resuming, and the shipped NB201 prior."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nag.diffusion.prior import Prior, default_prior_path, load_prior, read_prior_checkpoint
from nag.errors import ConfigError, MissingDataError
from nag.experiments import run_experiment
from nag.modules.arch_data import ArchDataModule
from nag.modules.nets import build_score_net
from nag.run import compose_config
from nag.spaces import get_space

TINY_NET = ["net.d_model=16", "net.n_layers=1", "net.n_heads=2", "net.d_ff=16"]
TINY_TRAIN = ["train.ckpt_every=1", "data.n_samples=64", "data.batch_size=16", *TINY_NET]
TINY_SAMPLE = ["n=12", "batch_size=6", "solver.steps=2"]


def train(tmp_path, steps: int, *extra: str) -> dict:
    cfg = compose_config(["experiment=train_prior", f"train.max_steps={steps}", *TINY_TRAIN, *TINY_SAMPLE, *extra])
    return run_experiment(cfg, out_dir=tmp_path)


def test_train_then_generate(tmp_path):
    res = train(tmp_path / "train", 3)
    for key in ("train_loss", "validity", "uniqueness", "novelty", "op_kl", "wall_s", "n_params", "validity_threshold"):
        assert key in res, key
    assert res["steps"] == 3 and res["validity"] == 1.0 and res["n_train"] == 64
    prior_path = tmp_path / "train" / "prior.pt"
    ckpt = read_prior_checkpoint(prior_path)
    assert ckpt["split"]["n_samples"] == 64 and ckpt["space"]["name"] == "nb201"
    assert set(ckpt["state_dict"]) == set(load_prior(prior_path).net.state_dict())  # EMA weights only

    cfg = compose_config(["experiment=generate", f"prior.path={prior_path}", *TINY_SAMPLE])
    out = run_experiment(cfg, out_dir=tmp_path / "gen")
    for key in ("validity", "uniqueness", "novelty", "op_kl", "archs_per_s", "wall_s", "n"):
        assert key in out, key
    assert out["n"] == 12 and out["validity"] == 1.0
    space = get_space("nb201")
    lines = (tmp_path / "gen" / "archs.txt").read_text().splitlines()
    assert len(lines) == 12 and all(space.is_valid(space.parse(line)) for line in lines)
    train_set = set(ArchDataModule(space, 0.5, seed=0, n_samples=64).train_archs)  # rebuilt, not stored
    distinct = {space.parse(line) for line in lines}
    assert out["novelty"] == pytest.approx(sum(a not in train_set for a in distinct) / len(distinct))


class Killed(Exception):
    """A simulated kill of the process."""


def test_killed_train_prior_resumes_exactly(tmp_path, monkeypatch):
    """Killed during step 4 of 6 (mid-epoch: 64 archs in batches of 16), the rerun trains only steps
    4-6 and ends where an uninterrupted run ends: same weights, EMA, optimizer, RNG and loss."""
    from nag.modules.score import ScoreModule

    full = train(tmp_path / "full", 6)
    steps: list[int] = []
    real_step = ScoreModule.training_step

    def counted(self, batch, batch_idx, kill_at=None):
        if self.global_step == kill_at:
            raise Killed("killed during a training step")
        steps.append(self.global_step)
        return real_step(self, batch, batch_idx)

    monkeypatch.setattr(ScoreModule, "training_step", lambda self, b, i: counted(self, b, i, kill_at=3))
    with pytest.raises(Killed, match="killed during a training step"):
        train(tmp_path / "run", 6)
    assert steps == [0, 1, 2] and torch.load(tmp_path / "run" / "last.ckpt", weights_only=False)["global_step"] == 3
    assert not (tmp_path / "run" / "results.json").exists()

    steps.clear()
    monkeypatch.setattr(ScoreModule, "training_step", lambda self, b, i: counted(self, b, i))
    resumed = train(tmp_path / "run", 6)
    assert steps == [3, 4, 5]  # resumed, not restarted
    assert resumed["steps"] == 6 and json.loads((tmp_path / "run" / "results.json").read_text())["steps"] == 6
    assert resumed["train_loss"] == full["train_loss"] and resumed["heldout_loss"] == full["heldout_loss"]
    a, b = (torch.load(tmp_path / d / "last.ckpt", weights_only=False) for d in ("full", "run"))
    for key in a["state_dict"]:  # the net and its EMA
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    assert torch.equal(a["rng_state"]["torch"], b["rng_state"]["torch"])
    adam_a, adam_b = a["optimizer_states"][0]["state"], b["optimizer_states"][0]["state"]
    assert all(torch.equal(adam_a[k]["exp_avg"], adam_b[k]["exp_avg"]) for k in adam_a)
    prior_a, prior_b = (read_prior_checkpoint(tmp_path / d / "prior.pt") for d in ("full", "run"))
    assert all(torch.equal(prior_a["state_dict"][k], prior_b["state_dict"][k]) for k in prior_a["state_dict"])
    assert (tmp_path / "run" / "archs.txt").read_text() == (tmp_path / "full" / "archs.txt").read_text()


def test_generate_without_a_prior_for_the_space_says_how_to_train(tmp_path, monkeypatch):
    import nag.diffusion.prior as prior_mod

    monkeypatch.setattr(prior_mod, "ASSETS", tmp_path / "none")
    cfg = compose_config(["experiment=generate", *TINY_SAMPLE])
    with pytest.raises(MissingDataError, match="experiment=train_prior space=nb201"):
        run_experiment(cfg, out_dir=tmp_path)


def test_shipped_nb201_prior_loads_and_samples_valid_archs():
    path = default_prior_path("nb201", must_exist=False)
    assert path.is_file(), f"{path} is a shipped, git-tracked asset (build it: see docs/prior.md)"
    assert path.stat().st_size < 5_000_000
    space = get_space("nb201")
    prior = load_prior(path, space=space)
    assert prior.split and prior.split["n_train"] == 7812
    from nag.metrics import validity_threshold

    x = prior.sample_tensor(64, solver={"name": "ode", "steps": 10}, seed=0, batch_size=64)
    assert validity_threshold(x, space) >= 0.95  # the raw model, before masked-argmax decoding


def test_default_sampler_is_particle_guided_in_a_time_window():
    from nag.diffusion.guidance import DiversityGuide
    from nag.diffusion.sampling import SamplerSettings, build_sampler, time_window

    window = time_window(0.3, 0.7)
    assert window(torch.tensor([0.1, 0.5, 0.9])).tolist() == [0.0, 1.0, 0.0]
    with pytest.raises(ConfigError, match=r"'diversity.window' = \[0.7, 0.3\]: a window is \[lo, hi\] with 0 <= lo < hi"):
        SamplerSettings(diversity={"weight": 1.0, "window": [0.7, 0.3]})
    cfg = compose_config(["experiment=generate"])
    space = get_space("nb201")
    net_cfg = {"d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 16}
    net = build_score_net(net_cfg, 8, 7, space.adjacency, space.positions)
    prior = Prior(space, {"name": "ve"}, net, net_cfg, ArchDataModule(space, 0.5).split_info())
    sampler = build_sampler(prior, SamplerSettings.pick(cfg))
    (guide,) = sampler.guides
    assert isinstance(guide, DiversityGuide) and guide.memory == cfg.diversity.memory
    assert guide.weight_at(torch.tensor([0.5, 0.95])).tolist() == [cfg.diversity.weight, 0.0]
    iid = build_sampler(prior, SamplerSettings.pick(compose_config(["experiment=generate", "sampler=iid"])))
    assert iid.guides == () and iid.solver.config()["steps"] == cfg.solver.steps
    archs = prior.sample(6, seed=0, batch_size=3)  # Prior.sample: same GuidedSampler path, default solver
    assert len(archs) == 6 and all(space.is_valid(a) for a in archs)


SPACE_CONFIGS = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "experiments" / "space").glob("*.yaml"))


@pytest.mark.parametrize("space_name", SPACE_CONFIGS)
def test_train_prior_works_for_every_configured_space(space_name, tmp_path):
    """No per-space code: only the SearchSpace contract (finite or sampled, optional nodes or not)."""
    res = train(tmp_path, 2, f"space={space_name}", "data.n_samples=32")
    assert res["steps"] == 2 and res["validity"] == 1.0 and res["n"] == 12

