"""Plugins: a search space nag has never heard of is found through the ``nag.spaces`` entry-point
group, without pip-installing anything (a distribution written into tmp_path and put on
sys.path); a broken plugin is named in the error; the example plugin in examples/custom_space
works directly, through entry points, and from the command line."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
import torch

import nag.spaces
from nag.errors import InvalidArchError
from nag.registry import Registry
from nag.spaces import SearchSpace, get_space, list_spaces
from nag.spaces.base import to_unit_scale
from test_registry import make_dist  # tests/ is on sys.path under pytest's default import mode

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "custom_space"

RING_SPACE = textwrap.dedent(
    '''
    import torch
    from torch import nn
    from nag.errors import InvalidArchError
    from nag.spaces import SearchSpace

    class RingSpace(SearchSpace):
        """3 nodes on a chain, each 'narrow' or 'wide'."""
        name = "ring3"
        ops = ("narrow", "wide")
        num_nodes = 3

        def __init__(self, width: int = 4):
            self.width = width

        @property
        def adjacency(self):
            return torch.tensor([[0.0, 1, 0], [0, 0, 1], [0, 0, 0]])

        def to_tokens(self, arch):
            if not (isinstance(arch, tuple) and len(arch) == 3 and set(arch) <= set(self.ops)):
                raise InvalidArchError(f"{arch!r} is not a ring3 arch")
            return tuple(self.ops.index(o) for o in arch)

        def from_tokens(self, tokens):
            return tuple(self.ops[int(t)] for t in tokens)

        def parse(self, text):
            return tuple(text.split(","))

        def format(self, arch):
            return ",".join(arch)

        def build(self, arch, task=None):
            return nn.Linear(self.width, 2)
    '''
)


@pytest.fixture
def spaces(monkeypatch) -> Registry:
    """A fresh ``nag.spaces.SPACES`` for one test (built-ins re-register into it), so plugins
    registered or discovered here leave no trace in other tests."""
    fresh: Registry = Registry("search space", group="nag.spaces")
    monkeypatch.setattr(nag.spaces, "SPACES", fresh)
    return fresh


def test_unknown_plugin_is_found_through_entry_points(tmp_path, monkeypatch, spaces):
    assert "ring3" not in list_spaces()  # entry points read once: nothing called ring3
    make_dist(
        tmp_path / "site",
        "nag-ring-space",
        {"nag.spaces": {"ring3": "nag_test_ring_space:RingSpace"}},
        {"nag_test_ring_space": RING_SPACE},
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    nag.spaces.SPACES.reload_entry_points()
    assert "ring3" in list_spaces() and "nb201" in list_spaces()
    assert list_spaces("ring*") == ["ring3"]
    space = get_space("ring3", width=6)
    assert isinstance(space, SearchSpace) and type(space).__name__ == "RingSpace" and space.width == 6
    arch = ("wide", "narrow", "wide")
    assert space.decode(space.encode(arch).unsqueeze(0)) == [arch]
    assert "nag-ring-space" in nag.spaces.SPACES.source("ring3")


def test_broken_plugin_error_names_the_plugin(tmp_path, monkeypatch, spaces):
    make_dist(tmp_path / "site", "nag-broken", {"nag.spaces": {"broken_space": "nag_no_such_module_xyz:Space"}})
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert "broken_space" in list_spaces()  # listing does not import plugins
    with pytest.raises(ImportError, match="broken_space") as info:
        get_space("broken_space")
    msg = str(info.value)
    assert "broken_space" in msg and "nag_no_such_module_xyz:Space" in msg
    assert get_space("nb201").name == "nb201"  # one broken plugin does not break the others


# ----- the example plugin (examples/custom_space) -------------------------------------------
@pytest.fixture
def chain_module(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    import nag_chain_space.space as module

    return module


def example_entry_points() -> dict[str, str]:
    meta = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())
    return meta["project"]["entry-points"]["nag.spaces"]


def test_example_registered_directly(chain_module, spaces):
    spaces.register("chain_cnn", chain_module.ChainCNNSpace)
    assert "chain_cnn" in list_spaces()
    space = get_space("chain_cnn", C=4)
    archs = space.enumerate()
    assert len(archs) == space.size == 625 == len(set(archs))
    x = space.encode_batch(archs)  # [625, 4, 5]
    assert x.shape == (625, 4, 5) and bool((x.sum(-1) == 1).all())
    assert space.decode(x) == archs and space.decode(2 * x - 1) == archs
    for arch in archs[::37]:
        assert space.parse(space.format(arch)) == arch and space.is_valid(arch)
    assert space.canonical(("skip", "conv3x3", "conv5x5", "skip")) == space.canonical(("conv3x3", "skip", "skip", "conv5x5"))
    assert space.canonical(("conv3x3", "skip", "skip", "conv5x5")) != space.canonical(("skip", "skip", "conv3x3", "conv5x5"))
    with pytest.raises(InvalidArchError, match="conv3x3"):
        space.parse("conv3x3-conv7x7-skip-skip")


def test_example_trains_on_digits(chain_module, spaces):
    from nag.data import get_task
    from nag.evaluation.training import TrainBudget, train_eval

    spaces.register("chain_cnn", chain_module.ChainCNNSpace)
    space = get_space("chain_cnn", C=4)
    arch = space.parse("conv3x3-dwconv3x3-maxpool3x3-conv5x5")
    m = train_eval(space, arch, get_task("digits"), TrainBudget(epochs=1, max_steps=3), seed=0)
    assert 0.0 <= m["val_acc"] <= 100.0 and 0.0 <= m["test_acc"] <= 100.0
    assert m["steps"] == 3 and m["params_M"] > 0


def test_example_found_through_its_own_entry_point_lines(tmp_path, chain_module, monkeypatch, spaces):
    make_dist(tmp_path / "site", "nag-chain-space", {"nag.spaces": example_entry_points()})
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert "chain_cnn" in list_spaces()
    assert get_space("chain_cnn").__class__ is chain_module.ChainCNNSpace
    assert "nag-chain-space" in spaces.source("chain_cnn")


def test_plugins_doc_shows_the_example_entry_point_lines():
    doc = (REPO / "docs" / "plugins.md").read_text()
    assert '[project.entry-points."nag.spaces"]' in doc
    for name, value in example_entry_points().items():
        assert f'{name} = "{value}"' in doc


def test_example_plugin_runs_from_the_command_line(tmp_path, chain_module):
    """The documented user story: plugin on the path + a user config folder with space/chain_cnn.yaml."""
    site = make_dist(tmp_path / "site", "nag-chain-space", {"nag.spaces": example_entry_points()})
    env = {
        **os.environ,
        "WANDB_MODE": "disabled",
        "PYTHONPATH": os.pathsep.join([str(site), str(EXAMPLE), str(REPO)]),
    }
    out_dir = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "nag.run",
        f"hydra.searchpath=[file://{EXAMPLE / 'configs'}]",
        "experiment=chain_random_search",
        "budget=2", "train.epochs=1", "train.max_steps=2", "space.C=4",
        f"hydra.run.dir={out_dir}",
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads((out_dir / "results.json").read_text())
    assert results["n_evaluated"] == 2
    best = results["best_arch"]
    assert len(best.split("-")) == 4 and set(best.split("-")) <= set(chain_module.OPS)



# ----- a registered space works by name alone -------------------------------------------------
def test_a_registered_space_needs_no_yaml(tmp_path, chain_module, monkeypatch, spaces):
    """space=<plugin> without a space/<plugin>.yaml, and space.name=<plugin> without ~space.N: the
    option is the constructor (its schema and defaults)."""
    from nag.run import compose_config

    make_dist(tmp_path / "site", "nag-chain-space", {"nag.spaces": example_entry_points()})
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    for override in ("space=chain_cnn", "space.name=chain_cnn"):
        cfg = compose_config(["experiment=random_search", override, "space.C=4"])
        assert dict(cfg.space) == {"name": "chain_cnn", "C": 4}, override  # no nb201 key (N) lingers
    with pytest.raises(Exception, match=r"config key 'space.C' = 0 is not accepted: expected an int >= 1"):
        compose_config(["experiment=random_search", "space=chain_cnn", "space.C=0"])


# ----- a cross-node rule, no decode_tokens override, and the plugin's own prior -------------------
def _skip_heavy_states(space, n: int, seed: int) -> torch.Tensor:
    """Noise with the 'skip' column lifted: most argmax rows break "at least 2 non-skip layers"."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, space.num_nodes, space.num_ops, generator=gen)
    x[:, :, space.ops.index("skip")] += 1.5
    return x


def test_decode_is_total_and_repairs_with_the_most_likely_valid_tokens():
    from rule_space import RuleChainSpace, rule_holds

    space = RuleChainSpace()
    x = _skip_heavy_states(space, 400, seed=0)
    argmax = [tuple(space.ops[t] for t in row) for row in space.decode_tokens(x).tolist()]
    refused = [i for i, a in enumerate(argmax) if not rule_holds(a)]
    assert len(refused) > 100  # the rule is broken often, so the repair is exercised
    archs = space.decode(x)  # would raise InvalidArchError without the repair
    assert len(archs) == 400 and all(space.is_valid(a) for a in archs)
    assert all(archs[i] == argmax[i] for i in range(400) if i not in refused)  # valid rows stay the argmax
    every = space.enumerate()
    tokens = torch.tensor([space.to_tokens(a) for a in every])  # [15600, 6]
    for i in refused[:20]:  # the repair is the best-scoring valid assignment (exhaustive check)
        scores = to_unit_scale(x[i : i + 1])[0]  # [6, 5], the scale decode reads
        totals = scores.gather(1, tokens.T).sum(0)  # [15600]
        assert totals[every.index(archs[i])] == pytest.approx(float(totals.max()))


@pytest.mark.slow  # trains a tiny prior for the plugin space and samples 5 x 1,000 archs: ~1 min on 2 busy cores
def test_plugin_space_with_a_cross_node_rule_generates_only_valid_archs(tmp_path, monkeypatch, spaces):
    """The issue's user story: a plugin space written from the docs (a rule across nodes, no
    decode_tokens), its own default prior declared through nag.priors, train_prior save_default=true
    writes there, and generate samples 1,000 archs on each of 5 seeds, every one valid."""
    import nag.diffusion.prior as prior_module
    from nag.diffusion.prior import load_prior
    from nag.diffusion.sampling import SamplerSettings, build_sampler
    from nag.experiments import run_experiment
    from nag.run import compose_config

    source = (REPO / "tests" / "rule_space.py").read_text() + '\nPRIOR = __import__("pathlib").Path(__file__).with_name("rule_chain.pt")\n'
    site = make_dist(tmp_path / "site", "nag-rule-space",
                     {"nag.spaces": {"rule_chain": "nag_rule_space:RuleChainSpace"},
                      "nag.priors": {"rule_chain": "nag_rule_space:PRIOR"}},
                     modules={"nag_rule_space": source})
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(prior_module, "PRIORS", Registry("default prior", group="nag.priors"))
    quiet = ["wandb.mode=disabled", "torch_threads=1"]

    train = compose_config(["experiment=train_prior", "space=rule_chain", "save_default=true", "train.max_steps=60",
                            "train.ckpt_every=60", "data.batch_size=64", "net.d_model=16", "net.n_layers=1",
                            "net.n_heads=2", "net.d_ff=32", "n=8", "batch_size=8", *quiet])
    run_experiment(train, out_dir=tmp_path / "train")
    declared = site / "rule_chain.pt"
    assert declared.is_file()  # the plugin's own prior, not nag/assets
    assert not (REPO / "nag" / "assets" / "priors" / "rule_chain.pt").exists()

    from nag.spaces import get_space

    space = get_space("rule_chain")
    refused = 0
    for seed in range(5):
        cfg = compose_config(["experiment=generate", "space=rule_chain", "n=1000", f"seed={seed}", *quiet])
        results = run_experiment(cfg, out_dir=tmp_path / f"gen{seed}")
        archs = [space.parse(line) for line in (tmp_path / f"gen{seed}" / "archs.txt").read_text().splitlines()]
        assert results["validity"] == 1.0 and results["n"] == len(archs) == 1000
        assert all(space.is_valid(a) for a in archs)
        sampler = build_sampler(load_prior(None, space), SamplerSettings.pick(cfg))  # the prior by default: the plugin's
        tokens = space.decode_tokens(sampler.sample_tensor(1000, seed=seed))
        refused += sum(sum(t != space.ops.index("skip") for t in row) < 2 for row in tokens.tolist())
    print(f"rule_chain: {refused} of 5,000 raw samples needed the repair; all 5,000 decoded archs valid")
