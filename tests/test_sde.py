"""SDEs: closed-form marginals, agreement with a simulated forward SDE, configs, refusal of mismatches."""
from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nag.diffusion.sde import (
    SDES,
    VESDE,
    VPSDE,
    assert_same_sde,
    bcast,
    build_sde,
    perturb,
    sample_time,
    subVPSDE,
)
from nag.errors import ConfigError, IncompatibleComponentsError, UnknownNameError

ALL = [VESDE(), VESDE(sigma_min=0.05, sigma_max=1.0), VPSDE(), subVPSDE(beta_min=0.2, beta_max=10.0)]

pytestmark = pytest.mark.usefixtures("one_torch_thread")



def test_registry_names():
    assert {"ve", "vp", "subvp"} <= set(SDES.names())


@pytest.mark.parametrize("t", [0.0, 1e-5, 0.3, 0.77, 1.0])
def test_closed_form_marginals(t):
    x0 = torch.randn(3, 8, 7)
    tt = torch.full((3,), t)
    ve = VESDE(0.1, 5.0)
    mean, std = ve.marginal_prob(x0, tt)
    torch.testing.assert_close(mean, x0)
    torch.testing.assert_close(std, torch.full((3,), 0.1 * (5.0 / 0.1) ** t))

    int_beta = 0.1 * t + 0.5 * t * t * (20.0 - 0.1)  # int_0^t beta
    for sde, expected_std in (
        (VPSDE(0.1, 20.0), math.sqrt(1 - math.exp(-int_beta))),
        (subVPSDE(0.1, 20.0), 1 - math.exp(-int_beta)),
    ):
        mean, std = sde.marginal_prob(x0, tt)
        torch.testing.assert_close(mean, math.exp(-0.5 * int_beta) * x0)
        torch.testing.assert_close(std, torch.full((3,), expected_std), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("sde", ALL, ids=repr)
def test_forward_simulation_matches_marginals(sde):
    """Euler-Maruyama on dx = f dt + g dW from p_0(.|x0) reproduces marginal_prob's moments."""
    gen = torch.Generator().manual_seed(0)
    n, steps, t_end = 10000, 200, 0.8
    x0 = torch.tensor([1.0, -1.0, 0.3])
    mean0, std0 = sde.marginal_prob(x0.expand(n, 3), torch.zeros(n))
    x = mean0 + bcast(std0, mean0) * torch.randn(n, 3, generator=gen)
    dt = t_end / steps
    for k in range(steps):
        t = torch.full((n,), k * dt)
        drift, g = sde.sde(x, t)
        x = x + drift * dt + bcast(g, x) * math.sqrt(dt) * torch.randn(n, 3, generator=gen)
    mean, std = sde.marginal_prob(x0.expand(n, 3), torch.full((n,), t_end))
    scale = std[0].item()
    torch.testing.assert_close(x.mean(0), mean[0], atol=0.04 * scale + 0.01, rtol=0)
    torch.testing.assert_close(x.std(0), std.expand(3, n).T[0], atol=0, rtol=0.04)


@pytest.mark.parametrize("sde", ALL, ids=repr)
def test_discretize_is_the_exact_transition(sde):
    """Chaining discretize() over a coarse grid from t=0 lands exactly on the marginal at t."""
    gen = torch.Generator().manual_seed(1)
    n = 40000
    x0 = torch.tensor([0.7, -1.0])
    mean0, std0 = sde.marginal_prob(x0.expand(n, 2), torch.zeros(n))
    x = mean0 + bcast(std0, mean0) * torch.randn(n, 2, generator=gen)
    grid = [0.0, 0.05, 0.3, 0.6, 1.0]
    for s, t in zip(grid[:-1], grid[1:]):
        f, G = sde.discretize(x, torch.full((n,), t), t - s)
        x = x + f + bcast(G, x) * torch.randn(n, 2, generator=gen)
    mean, std = sde.marginal_prob(x0.expand(n, 2), torch.ones(n))
    torch.testing.assert_close(x.mean(0), mean[0], atol=0.02 * std[0].item() + 1e-3, rtol=0)
    torch.testing.assert_close(x.std(0), std[:2], atol=0, rtol=0.02)


@pytest.mark.parametrize("sde", ALL, ids=repr)
def test_reverse_sde_and_probability_flow(sde):
    x = torch.randn(4, 8, 7)
    t = torch.rand(4) * 0.9 + 0.05
    score = torch.randn(4, 8, 7)
    drift, g = sde.sde(x, t)
    rev_drift, rev_g = sde.reverse(lambda y, s: score).sde(x, t)
    torch.testing.assert_close(rev_drift, drift - bcast(g**2, x) * score)
    torch.testing.assert_close(rev_g, g)
    ode_drift, ode_g = sde.reverse(lambda y, s: score, probability_flow=True).sde(x, t)
    torch.testing.assert_close(ode_drift, drift - 0.5 * bcast(g**2, x) * score)
    assert torch.all(ode_g == 0)
    rev_f, rev_G = sde.reverse(lambda y, s: score).discretize(x, t, 0.01)
    f, G = sde.discretize(x, t, 0.01)
    torch.testing.assert_close(rev_f, f - bcast(G**2, x) * score)


@pytest.mark.parametrize("sde", ALL, ids=repr)
def test_prior_sampling_and_logp(sde):
    gen = torch.Generator().manual_seed(2)
    z = sde.prior_sampling((5000, 8, 7), generator=gen)
    assert z.shape == (5000, 8, 7)
    assert abs(z.std().item() / sde.prior_std - 1) < 0.02
    assert abs(z.mean().item()) < 0.02 * sde.prior_std
    expected = torch.distributions.Normal(0.0, sde.prior_std).log_prob(z[:3]).flatten(1).sum(1)
    torch.testing.assert_close(sde.prior_logp(z[:3]), expected)
    # seeded
    torch.testing.assert_close(
        sde.prior_sampling((4, 3), torch.Generator().manual_seed(9)),
        sde.prior_sampling((4, 3), torch.Generator().manual_seed(9)),
    )


@pytest.mark.parametrize("sde", ALL, ids=repr)
def test_config_round_trip(sde):
    cfg = sde.config()
    assert cfg["name"] in SDES.names()
    assert json.loads(json.dumps(cfg)) == cfg
    again = build_sde(cfg)
    assert type(again) is type(sde) and again.config() == cfg
    assert_same_sde(cfg, again.config())


@settings(max_examples=30, deadline=None)
@given(
    smin=st.floats(1e-3, 1.0),
    ratio=st.floats(1.01, 100.0),
    eps=st.floats(1e-6, 1e-2),
)
def test_ve_config_round_trip_property(smin, ratio, eps):
    sde = VESDE(sigma_min=smin, sigma_max=smin * ratio, eps=eps)
    assert build_sde(json.loads(json.dumps(sde.config()))).config() == sde.config()


def test_mismatch_refused_with_both_configs_and_fields():
    with pytest.raises(IncompatibleComponentsError, match="sigma_max") as info:
        assert_same_sde({"name": "ve", "sigma_max": 5.0}, {"name": "ve", "sigma_max": 20.0}, "prior", "predictor")
    msg = str(info.value)
    assert "sigma_max" in msg and "5.0" in msg and "20.0" in msg
    assert "prior" in msg and "predictor" in msg
    assert "sigma_min" not in msg.split("differ in")[1].split(".")[0]  # only the differing field is listed

    with pytest.raises(IncompatibleComponentsError, match="name"):
        assert_same_sde({"name": "ve"}, {"name": "vp"})
    with pytest.raises(IncompatibleComponentsError, match="records no SDE config"):
        assert_same_sde({"name": "ve"}, None, "prior", "predictor")


def test_same_sde_after_filling_defaults():
    assert_same_sde({"name": "ve"}, {"name": "ve", "sigma_min": 0.1, "sigma_max": 5, "T": 1, "eps": 1e-5})
    assert_same_sde(VESDE(), {"name": "ve"})


def test_build_sde_errors():
    with pytest.raises(ConfigError, match="name"):
        build_sde({"sigma_max": 5.0})
    with pytest.raises(UnknownNameError, match="ve"):
        build_sde({"name": "edm"})
    with pytest.raises(ConfigError, match="sigma_max"):
        build_sde({"name": "ve", "sigmamax": 5.0})
    with pytest.raises(ConfigError, match="VESDE needs 0 < sigma_min < sigma_max, got 5.0, 1.0"):
        VESDE(sigma_min=5.0, sigma_max=1.0)
    with pytest.raises(ConfigError, match="needs 0 < eps < T, got eps=2.0"):
        VPSDE(eps=2.0)


@pytest.mark.parametrize("sde", ALL, ids=repr)
def test_perturb_moments_and_seed(sde):
    x0 = torch.tensor([[1.0, -1.0]]).expand(30000, 2)
    t = torch.full((30000,), 0.4)
    xt, noise, std = perturb(sde, x0, t, torch.Generator().manual_seed(3))
    mean, std_ref = sde.marginal_prob(x0, t)
    torch.testing.assert_close(std, std_ref)
    torch.testing.assert_close(xt, mean + bcast(std, x0) * noise)
    torch.testing.assert_close(xt.std(0), std[:2], rtol=0.03, atol=0)
    xt2, _, _ = perturb(sde, x0, t, torch.Generator().manual_seed(3))
    torch.testing.assert_close(xt, xt2)


def test_sample_time_range():
    sde = VESDE()
    t = sample_time(sde, 10000, torch.Generator().manual_seed(0))
    assert t.shape == (10000,) and t.min() >= sde.eps and t.max() <= sde.T
    assert abs(t.mean().item() - 0.5) < 0.02
