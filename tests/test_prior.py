"""Prior checkpoints (safe, refusing mismatches), the architecture data module, and mask consistency."""
from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from nag.diffusion.prior import Prior, default_prior_path, load_prior, read_prior_checkpoint, save_prior
from nag.diffusion.sde import VESDE
from nag.errors import CheckpointMismatchError, ConfigError, InvalidArchError, MissingDataError
from nag.modules.arch_data import ArchDataModule
from nag.modules.nets import build_score_net
from nag.modules.nets import transformer as transformer_mod
from nag.modules.score import ScoreModule
from nag.spaces.base import SearchSpace

NET = {"name": "dag_transformer", "d_model": 16, "n_layers": 2, "n_heads": 2, "d_ff": 32}


class ChainSpace(SearchSpace):
    """A tiny finite space: 4 nodes in a chain, each holding one of ``ops``."""

    num_nodes = 4

    def __init__(self, ops=("a", "b", "c"), name="chain") -> None:
        self.ops = tuple(ops)
        self.name = name

    @property
    def adjacency(self) -> torch.Tensor:
        return torch.diag(torch.ones(3), 1)

    def to_tokens(self, arch):
        try:
            return tuple(self.ops.index(o) for o in arch)
        except (ValueError, TypeError):
            raise InvalidArchError(f"{arch!r} not in {self.name}") from None

    def from_tokens(self, tokens):
        return tuple(self.ops[int(t)] for t in tokens)

    def parse(self, text):
        return tuple(text.split("-"))

    def format(self, arch):
        return "-".join(arch)

    def build(self, arch, task=None):
        return torch.nn.Identity()

    @property
    def size(self):
        return len(self.ops) ** 4

    def enumerate(self):
        return list(itertools.product(self.ops, repeat=4))


class HugeChainSpace(ChainSpace):
    @property
    def size(self):
        return None

    def enumerate(self):
        return SearchSpace.enumerate(self)


class UnlistedChainSpace(ChainSpace):
    """Knows its (huge) size but cannot enumerate, like mbv3."""

    @property
    def size(self):
        return 10**30

    def enumerate(self):
        return SearchSpace.enumerate(self)


def make_prior(space=None, sde=None, seed=0) -> Prior:
    space = space or ChainSpace()
    torch.manual_seed(seed)
    net = build_score_net(NET, space.num_nodes, space.num_ops, space.adjacency, space.positions)
    split = ArchDataModule(space, 0.5, seed=3).split_info()
    return Prior(space, sde or VESDE(0.1, 5.0), net, NET, split)


def test_round_trip_gives_identical_scores(tmp_path):
    prior = make_prior()
    path = save_prior(prior, tmp_path / "p.pt", extra={"note": "x"})
    loaded = load_prior(path, space=ChainSpace())
    x, t = torch.randn(5, 4, 3), torch.rand(5)
    assert torch.equal(prior.score_fn(x, t), loaded.score_fn(x, t))
    assert loaded.sde.config() == prior.sde.config() and loaded.net_config == NET
    assert loaded.split == prior.split
    assert loaded.train_archs() == prior.train_archs() == ArchDataModule(ChainSpace(), 0.5, seed=3).train_archs
    assert read_prior_checkpoint(path)["extra"] == {"note": "x"}
    assert not list(tmp_path.glob("*.tmp"))  # written atomically


def test_score_fn_needs_no_grad_and_keeps_net_frozen():
    prior = make_prior()
    x = torch.randn(2, 4, 3, requires_grad=True)
    s = prior.score_fn(x, torch.rand(2))
    assert not s.requires_grad and not prior.net.training
    assert all(not p.requires_grad for p in prior.net.parameters())


def test_refuses_another_space(tmp_path):
    path = save_prior(make_prior(), tmp_path / "p.pt")
    with pytest.raises(CheckpointMismatchError, match=r"ops \(checkpoint: \['a', 'b', 'c'\]") as err:
        load_prior(path, space=ChainSpace(ops=("a", "b", "d")))
    assert "train_prior" in str(err.value)
    with pytest.raises(CheckpointMismatchError, match="name"):
        load_prior(path, space=ChainSpace(name="other"))


def test_refuses_another_graph(tmp_path):
    class Star(ChainSpace):
        @property
        def adjacency(self):
            a = torch.zeros(4, 4)
            a[0, 1:] = 1
            return a

    path = save_prior(make_prior(), tmp_path / "p.pt")
    with pytest.raises(CheckpointMismatchError, match="adjacency"):
        load_prior(path, space=Star())


def test_refuses_another_sde(tmp_path):
    path = save_prior(make_prior(), tmp_path / "p.pt")
    with pytest.raises(CheckpointMismatchError, match=r"sigma_max \(checkpoint: 5.0, given: 1.0\)"):
        load_prior(path, space=ChainSpace(), sde={"name": "ve", "sigma_min": 0.1, "sigma_max": 1.0})
    with pytest.raises(CheckpointMismatchError, match="name"):
        load_prior(path, space=ChainSpace(), sde={"name": "vp"})
    load_prior(path, space=ChainSpace(), sde={"name": "ve", "sigma_max": 5.0})  # defaults filled in


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_refuses_unsafe_or_foreign_files(tmp_path):
    torch.save({"format": "nag.prior", "payload": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointMismatchError, match="not a readable"):
        load_prior(tmp_path / "evil.pt")
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointMismatchError, match="not a nag prior"):
        load_prior(tmp_path / "foreign.pt")
    with pytest.raises(MissingDataError, match="train_prior"):
        load_prior(tmp_path / "absent.pt")


def test_weights_that_do_not_fit_are_refused(tmp_path):
    path = save_prior(make_prior(), tmp_path / "p.pt")
    ckpt = torch.load(path, weights_only=True)
    ckpt["net"] = dict(NET, d_model=32)
    torch.save(ckpt, path)
    with pytest.raises(CheckpointMismatchError, match="do not fit"):
        load_prior(path, space=ChainSpace())


def test_default_prior_path_errors_say_how_to_train():
    with pytest.raises(MissingDataError, match=r"experiment=train_prior space=nospace save_default=true"):
        default_prior_path("nospace")
    assert default_prior_path("nospace", must_exist=False).name == "nospace.pt"


def test_mask_identical_in_training_and_sampling(tmp_path, monkeypatch):
    """Every attention call, in a training step and in sampling from the saved prior, uses one mask."""
    space = ChainSpace()
    module = ScoreModule.for_space(space, {"name": "ve"}, dict(NET, mask="closure"))
    seen: list[torch.Tensor] = []
    real = F.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, **kw):
        seen.append(attn_mask.clone())
        return real(q, k, v, attn_mask=attn_mask, **kw)

    monkeypatch.setattr(transformer_mod.F, "scaled_dot_product_attention", spy)
    x0 = 2 * F.one_hot(torch.randint(0, 3, (8, 4)), 3).float() - 1
    module.training_step((x0,), 0)
    n_train = len(seen)
    prior = Prior(space, module.sde, module.ema, NET | {"mask": "closure"})
    load_prior(save_prior(prior, tmp_path / "p.pt"), space=space).score_fn(torch.randn(3, 4, 3), torch.rand(3))
    assert n_train == 2 and len(seen) == 4
    expected = transformer_mod.attention_mask(space.adjacency, "closure")
    assert all(torch.equal(m, expected) for m in seen)


# ----- ArchDataModule ---------------------------------------------------------------------------
def test_split_is_seeded_disjoint_and_complete():
    space = ChainSpace()
    dm = ArchDataModule(space, split_ratio=0.5, seed=7)
    train, held = dm.train_archs, dm.heldout_archs
    assert len(train) == round(0.5 * 81) and len(train) + len(held) == 81
    assert not set(train) & set(held) and set(train) | set(held) == set(space.enumerate())
    assert ArchDataModule(space, 0.5, seed=7).train_archs == train
    assert ArchDataModule(space, 0.5, seed=8).train_archs != train
    again = ArchDataModule.from_split_info(space, dm.split_info())
    assert again.train_archs == train and again.heldout_archs == held
    assert len(ArchDataModule(space, 0.5, seed=7, n_samples=10).train_archs) == 10


def test_loader_yields_states_in_pm1():
    dm = ArchDataModule(ChainSpace(), split_ratio=1.0, batch_size=16, seed=0)
    batches = list(dm.train_dataloader())
    assert len(batches) == 81 // 16
    (x,) = batches[0]
    assert x.shape == (16, 4, 3) and set(x.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal((x > 0).sum(-1), torch.ones(16, 4, dtype=torch.long))


def test_seeded_batches_resume_mid_epoch_and_shard():
    """The batch of step k depends on (seed, k) only: a loader started at step k yields what an
    uninterrupted one yields from step k on (across epochs); DDP shards split each batch."""
    from nag.modules.arch_data import SeededBatches

    states = torch.arange(40.0).view(40, 1, 1)
    whole = SeededBatches(states, 16, seed=3)
    steps = [b for _ in range(3) for (b,) in whole]  # 3 epochs of 2 batches (the short one dropped)
    assert len(whole) == 2 and len(steps) == 6 and not torch.equal(steps[0], steps[2])  # a new order each epoch
    for k in range(6):
        resumed = SeededBatches(states, 16, seed=3, start=k)
        tail = [b for _ in range(3) for (b,) in resumed][: 6 - k]
        assert all(torch.equal(a, b) for a, b in zip(tail, steps[k:], strict=True)), k
    shards = [[b for (b,) in SeededBatches(states, 16, seed=3).shard(r, 2)] for r in (0, 1)]
    for full, r0, r1 in zip(steps[:2], *shards, strict=True):
        assert len(r0) == len(r1) == 8 and sorted(torch.cat([r0, r1]).flatten().tolist()) == sorted(full.flatten().tolist())
    assert not torch.equal(steps[0], SeededBatches(states, 16, seed=4).__iter__().__next__()[0])


def test_huge_space_needs_n_samples():
    with pytest.raises(ConfigError, match="n_samples"):
        ArchDataModule(HugeChainSpace())
    dm = ArchDataModule(HugeChainSpace(), n_samples=20, seed=1)
    assert len(dm.train_archs) == 20 and dm.heldout_archs == []
    assert ArchDataModule.from_split_info(HugeChainSpace(), dm.split_info()).train_archs == dm.train_archs
    with pytest.raises(ConfigError, match=r"setting 'split_ratio' = 0.0 is not accepted: expected a number > 0 and <= 1"):
        ArchDataModule(ChainSpace(), split_ratio=0.0)
    with pytest.raises(ConfigError, match="n_samples"):
        ArchDataModule(UnlistedChainSpace()).train_archs
    assert len(ArchDataModule(UnlistedChainSpace(), n_samples=5).train_archs) == 5
