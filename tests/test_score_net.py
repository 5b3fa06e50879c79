"""DAG transformer, embeddings and the ScoreModule's score matching."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nag.diffusion.sde import VESDE, VPSDE, bcast
from nag.errors import ConfigError
from nag.modules.nets import build_score_net
from nag.modules.nets.embeddings import TimeEmbedding, sinusoidal_embedding
from nag.modules.nets.transformer import DAGTransformer, attention_mask, transitive_closure
from nag.modules.score import ScoreModule, dsm_loss, score_from_net

EDGES = [(0, 1), (0, 2), (0, 3), (1, 4), (1, 5), (2, 6), (3, 7), (4, 6), (5, 7), (6, 7)]  # NB201 graph


def nb201_adjacency() -> torch.Tensor:
    a = torch.zeros(8, 8)
    for i, j in EDGES:
        a[i, j] = 1
    return a


def tiny_net(mask: str = "adjacency", n_layers: int = 2, adjacency=None, positions=None) -> DAGTransformer:
    torch.manual_seed(0)
    a = nb201_adjacency() if adjacency is None else adjacency
    return DAGTransformer(8, 7, a, positions, d_model=16, n_layers=n_layers, n_heads=2, d_ff=32, mask=mask)


def test_sinusoidal_embedding_shape_and_range():
    e = sinusoidal_embedding(torch.arange(5), 8)
    assert e.shape == (5, 8) and e.abs().max() <= 1.0
    assert torch.allclose(e[0], torch.tensor([0.0] * 4 + [1.0] * 4))  # sin(0), cos(0)
    with pytest.raises(ValueError, match="needs an even dim, got 7"):
        sinusoidal_embedding(torch.arange(3), 7)
    assert TimeEmbedding(16)(torch.rand(3)).shape == (3, 16)


@settings(max_examples=15, deadline=None)
@given(batch=st.integers(1, 9), layers=st.integers(1, 3), concat=st.booleans())
def test_output_shape(batch, layers, concat):
    net = DAGTransformer(8, 7, nb201_adjacency(), d_model=16, n_layers=layers, n_heads=4, d_ff=32, concat_layers=concat)
    out = net(torch.randn(batch, 8, 7), torch.rand(batch))
    assert out.shape == (batch, 8, 7) and torch.isfinite(out).all()


def test_masks():
    a = nb201_adjacency()
    adj = attention_mask(a, "adjacency")
    assert torch.equal(adj, adj.T) and adj.diagonal().all()
    assert adj[0, 1] and adj[1, 0] and not adj[0, 7]
    closure = transitive_closure(a)
    assert closure[0, 7] and closure[1, 7] and not closure[7, 0] and not closure[2, 4]
    assert attention_mask(a, "closure")[7, 0] and not attention_mask(a, "closure")[2, 4]
    assert attention_mask(a, "none").all()
    with pytest.raises(ConfigError, match="accepted"):
        attention_mask(a, "closer")


def test_mask_is_a_saved_buffer():
    net = tiny_net("closure")
    assert "attn_mask" in net.state_dict()
    assert torch.equal(net.attn_mask, attention_mask(nb201_adjacency(), "closure"))


def test_one_layer_sees_only_its_neighbours():
    """With one block, d out[i] / d x[j] is nonzero exactly where the mask allows i to see j."""
    net = tiny_net("adjacency", n_layers=1)
    x = torch.randn(1, 8, 7, requires_grad=True)
    out = net(x, torch.tensor([0.3]))
    for i in range(8):
        (g,) = torch.autograd.grad(out[0, i].sum(), x, retain_graph=True)
        seen = g[0].abs().sum(-1) > 0
        assert torch.equal(seen, net.attn_mask[i]), i


def test_permutation_equivariance():
    """Relabelling the nodes (graph, positions and features alike) relabels the output."""
    a, pos = nb201_adjacency(), torch.arange(8)
    perm = torch.tensor([3, 0, 7, 5, 1, 6, 2, 4])
    net = tiny_net(adjacency=a, positions=pos)
    net_p = DAGTransformer(8, 7, a[perm][:, perm], pos[perm], d_model=16, n_layers=2, n_heads=2, d_ff=32)
    net_p.load_state_dict(net.state_dict() | {"attn_mask": net_p.attn_mask})
    x, t = torch.randn(4, 8, 7), torch.rand(4)
    assert torch.allclose(net(x, t)[:, perm], net_p(x[:, perm], t), atol=1e-5)


def test_build_score_net_checks_options():
    net = build_score_net({"name": "dag_transformer", "d_model": 16, "n_heads": 2}, 8, 7, nb201_adjacency(), torch.arange(8))
    assert isinstance(net, DAGTransformer)
    with pytest.raises(ConfigError, match="no setting .d_modle.; it accepts: d_model.*Did you mean .d_model."):
        build_score_net({"d_modle": 16}, 8, 7, nb201_adjacency(), torch.arange(8))
    with pytest.raises(ConfigError, match=r"d_model \(10\) must be divisible by n_heads \(4\)"):
        build_score_net({"d_model": 10, "n_heads": 4}, 8, 7, nb201_adjacency(), torch.arange(8))


class OracleNet(torch.nn.Module):
    """The exact noise predictor for a one-point dataset x0 (undoes the input preconditioning)."""

    def __init__(self, sde, x0):
        super().__init__()
        self.sde, self.x0 = sde, x0

    def forward(self, x_in, t):
        alpha, std = self.sde.marginal_coeffs(t)
        x = x_in * bcast(torch.sqrt(alpha**2 + std**2), x_in)
        return -(x - bcast(alpha, x) * self.x0) / bcast(std, x)


@pytest.mark.parametrize("sde", [VESDE(0.1, 5.0), VPSDE()])
def test_parametrisation_is_consistent(sde):
    """The loss' optimum is the true score: zero loss and s = -(x - alpha x0) / std^2."""
    x0 = 2 * torch.nn.functional.one_hot(torch.randint(0, 7, (8,)), 7).float() - 1
    oracle = OracleNet(sde, x0)
    assert dsm_loss(oracle, sde, x0.expand(16, 8, 7), torch.Generator().manual_seed(0)) < 1e-8
    x, t = torch.randn(5, 8, 7), torch.rand(5) * 0.9 + 0.05
    alpha, std = sde.marginal_coeffs(t)
    expected = -(x - bcast(alpha, x) * x0) / bcast(std**2, x)
    assert torch.allclose(score_from_net(oracle, sde, x, t), expected, rtol=1e-4, atol=1e-4)


def make_module(**kw) -> ScoreModule:
    torch.manual_seed(0)
    describe = {"name": "toy", "num_nodes": 8, "ops": [f"op{i}" for i in range(7)]}
    net_cfg = {"name": "dag_transformer", "d_model": 16, "n_layers": 2, "n_heads": 2, "d_ff": 32}
    return ScoreModule(describe, nb201_adjacency(), torch.arange(8), {"name": "ve"}, net_cfg, **kw)


def test_score_module_step_updates_ema_and_learns():
    module = make_module(lr=3e-3, warmup_steps=1, ema_decay=0.9)
    opt = module.configure_optimizers()["optimizer"]
    x0 = 2 * torch.nn.functional.one_hot(torch.randint(0, 7, (64, 8)), 7).float() - 1
    gen = torch.Generator().manual_seed(1)
    before = [p.clone() for p in module.ema.parameters()]
    first = dsm_loss(module.net, module.sde, x0, torch.Generator().manual_seed(0)).item()
    for _ in range(60):
        opt.zero_grad()
        dsm_loss(module.net, module.sde, x0, gen).backward()
        opt.step()
        module.update_ema()
    last = dsm_loss(module.net, module.sde, x0, torch.Generator().manual_seed(0)).item()
    assert last < 0.8 * first  # fixed noise draws: a real decrease, not luck of the draw
    assert any(not torch.equal(a, b) for a, b in zip(before, module.ema.parameters()))
    assert all(not p.requires_grad for p in module.ema.parameters())
    assert torch.equal(module.ema.attn_mask, module.net.attn_mask)


def test_score_module_records_its_inputs():
    module = make_module()
    hp = module.hparams
    assert hp.space_describe["name"] == "toy" and hp.sde_config["name"] == "ve"
    assert torch.equal(torch.tensor(hp.adjacency), nb201_adjacency())
    assert module.n_params > 0
