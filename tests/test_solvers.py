"""Solvers on analytic toys whose true score is known in closed form."""
from __future__ import annotations

import pytest
import torch

from nag.diffusion.sde import VESDE, VPSDE, bcast, subVPSDE
from nag.diffusion.solvers import PC_CORRECTORS, PC_PREDICTORS, SOLVERS, ODESolver, get_solver
from nag.errors import ConfigError, UnknownNameError

N, V = 4, 3
# Batches stay under torch's 32768-element intra-op grain, so that no op spreads over threads:
# on a shared 2-core machine a two-thread op on tiny tensors is several times slower.
BATCH = 2500

pytestmark = pytest.mark.usefixtures("one_torch_thread")



def gaussian_score(sde, mu: torch.Tensor, s0: float):
    """Exact score of p_t when p_0 = N(mu, s0^2 I): marginal N(alpha mu, alpha^2 s0^2 + std^2)."""

    def score(x, t):
        a, std = sde.marginal_coeffs(t)
        a, std = bcast(a, x), bcast(std, x)
        return (a * mu - x) / (a * a * s0 * s0 + std * std)

    return score


def mixture_score(sde, points: torch.Tensor, weights: torch.Tensor):
    """Exact score of p_t when p_0 is a mixture of deltas at ``points [K, N, V]`` (weights [K])."""
    logw = weights.log()

    def score(x, t):
        a, std = sde.marginal_coeffs(t)
        means = bcast(a, x).unsqueeze(1) * points  # [B, K, N, V]
        var = bcast(std, x).unsqueeze(1) ** 2
        d = means - x.unsqueeze(1)
        logits = logw - (d * d / (2 * var)).flatten(2).sum(-1)  # [B, K]
        r = logits.softmax(-1)
        return (r[..., None, None] * d / var).sum(1)

    return score


def expected_moments(sde, mu: torch.Tensor, s0: float, denoise: bool):
    """Mean and std of what an exact solver returns at eps (with or without a Tweedie step)."""
    a, std = (v.item() for v in sde.marginal_coeffs(torch.tensor([sde.eps])))
    var_eps = a * a * s0 * s0 + std * std
    if not denoise:
        return a * mu, var_eps**0.5
    # E[x0 | x_eps] = mu + a s0^2 (x - a mu) / var_eps  -> std a s0^2 / sqrt(var_eps)
    return mu, a * s0 * s0 / var_eps**0.5


SOLVER_CASES = [
    ("pc", dict(steps=300)),
    ("pc", dict(steps=300, predictor="reverse_diffusion")),
    ("pc", dict(steps=300, predictor="reverse_diffusion", corrector="none")),
    ("pc", dict(steps=300, denoise=True)),
    ("ode", dict(steps=25)),
    ("ode", dict(steps=25, schedule="uniform", denoise=False)),
    ("ode", dict(steps=60, method="euler", denoise=False)),
]


@pytest.mark.parametrize("sde", [VESDE(0.1, 5.0), VPSDE(), subVPSDE()], ids=repr)
@pytest.mark.parametrize("name,kw", SOLVER_CASES[:5], ids=lambda v: str(v))
def test_gaussian_target_moments(sde, name, kw):
    gen = torch.Generator().manual_seed(0)
    # The ODE carries the prior's mismatch (p_T is N(0, sigma_max^2), not N(mu, .)) to the end;
    # a zero-mean target keeps the VE test about the solver, not about sigma_max.
    mu = torch.zeros(N, V) if (name == "ode" and isinstance(sde, VESDE)) else torch.linspace(-0.8, 0.8, N * V).view(N, V)
    s0 = 0.3
    solver = get_solver(name, **kw)
    x = solver.sample(gaussian_score(sde, mu, s0), sde, (BATCH, N, V), generator=gen)
    assert x.shape == (BATCH, N, V) and torch.isfinite(x).all()
    m, s = expected_moments(sde, mu, s0, solver.config()["denoise"])
    torch.testing.assert_close(x.mean(0), torch.as_tensor(m).expand(N, V), atol=0.035, rtol=0)
    assert abs(x.std(0).mean().item() / s - 1) < 0.06


@pytest.mark.parametrize(
    "sde,name,kw",
    [
        (VESDE(0.1, 5.0), "pc", dict(steps=200)),
        (VPSDE(), "pc", dict(steps=200)),
        (VPSDE(), "ode", dict(steps=20)),
        # The deterministic ODE keeps the prior's mismatch: with sigma_max = 5 the modes (up to
        # ~5.7 apart here) are not yet mixed at T and the weights come out ~.44/.32/.24. A larger
        # sigma_max fixes that; the PC sampler's noise fixes it even at sigma_max = 5.
        (VESDE(0.1, 20.0), "ode", dict(steps=20)),
    ],
    ids=str,
)
def test_mixture_of_onehots_recovers_modes_and_weights(sde, name, kw):
    """Data: three one-hot-like points (2 * onehot - 1) with weights .5/.3/.2."""
    tokens = torch.tensor([[0, 1, 2, 0], [2, 2, 1, 0], [1, 0, 0, 2]])
    points = 2 * torch.nn.functional.one_hot(tokens, V).float() - 1
    weights = torch.tensor([0.5, 0.3, 0.2])
    n = 900  # [n, K, N, V] score intermediates stay under the intra-op grain
    x = get_solver(name, **kw).sample(mixture_score(sde, points, weights), sde, (n, N, V), torch.Generator().manual_seed(1))
    decoded = x.argmax(-1)  # [B, N]
    match = (decoded.unsqueeze(1) == tokens).all(-1)  # [B, K]
    assert match.any(1).float().mean() > 0.99  # every sample is one of the modes
    freq = match.float().mean(0)
    torch.testing.assert_close(freq, weights, atol=3 * (0.25 / n) ** 0.5, rtol=0)  # 3 binomial std
    # and lands close to the point itself (threshold decoding at 0 would agree)
    nearest = points[match.float().argmax(1)]
    assert ((x > 0) == (nearest > 0)).all(-1).all(-1).float().mean() > 0.99


@pytest.mark.parametrize("name,kw", SOLVER_CASES + [("pc", dict(steps=7, predictor="none", n_corrector=3))], ids=str)
def test_seeded_determinism_shape_and_steps(name, kw):
    sde = VESDE()
    solver = get_solver(name, **kw)
    calls: list[torch.Tensor] = []
    base = gaussian_score(sde, torch.zeros(N, V), 0.5)

    def score(x, t):
        calls.append(t.clone())
        assert t.shape == (x.shape[0],) and x.shape[1:] == (N, V)
        return base(x, t)

    a = solver.sample(score, sde, (5, N, V), torch.Generator().manual_seed(4))
    assert len(calls) == solver.nfe
    times = torch.stack(calls)[:, 0]
    assert times.max().item() == pytest.approx(sde.T)
    assert times.min().item() >= sde.eps - 1e-9
    assert torch.all(times[1:] <= times[:-1])  # time never goes back up
    evaluates_eps = name == "pc" or solver.method == "heun" or solver.denoise
    assert len(torch.unique(times)) == kw["steps"] + (name == "ode" and evaluates_eps)
    b = solver.sample(base, sde, (5, N, V), torch.Generator().manual_seed(4))
    c = solver.sample(base, sde, (5, N, V), torch.Generator().manual_seed(5))
    assert a.shape == (5, N, V)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize(
    "sde,schedule", [(VESDE(0.1, 5.0), "logsnr"), (VPSDE(), "logsnr"), (subVPSDE(), "uniform")], ids=str
)
def test_ode_follows_the_exact_flow_with_its_order(sde, schedule):
    """For Gaussian data the probability-flow ODE is solvable in closed form:
    x_t = a_t mu + (x_T - a_T mu) sqrt(v_t / v_T), v_t = a_t^2 s0^2 + std_t^2.
    Heun's error must fall ~4x per halving of the step, Euler's ~2x."""
    mu, s0, shape = torch.linspace(-1, 1, N * V).view(N, V), 0.4, (64, N, V)
    score = gaussian_score(sde, mu, s0)
    x_T = sde.prior_sampling(shape, torch.Generator().manual_seed(7))
    ends = sde.marginal_coeffs(torch.tensor([sde.T, sde.eps], dtype=torch.float64))
    (a_T, a_e), (std_T, std_e) = (v.tolist() for v in ends)
    v_T, v_e = a_T**2 * s0**2 + std_T**2, a_e**2 * s0**2 + std_e**2
    exact = a_e * mu + (x_T - a_T * mu) * (v_e / v_T) ** 0.5

    def err(method, steps):
        x = get_solver("ode", steps=steps, method=method, schedule=schedule, denoise=False).sample(
            score, sde, shape, torch.Generator().manual_seed(7)
        )
        return (x - exact).abs().max().item()

    heun = [err("heun", n) for n in (16, 32, 64)]
    euler = [err("euler", n) for n in (64, 128)]
    assert heun[-1] < 2e-3
    assert heun[0] / heun[1] > 2.5 and heun[1] / heun[2] > 2.5
    assert 1.6 < euler[0] / euler[1] < 2.6


def test_steps_change_the_number_of_evaluations():
    sde = VPSDE()
    counts = {}
    for steps in (3, 11):
        n = [0]

        def score(x, t):
            n[0] += 1
            return -x

        get_solver("pc", steps=steps, corrector="none").sample(score, sde, (2, N, V))
        counts[steps] = n[0]
    assert counts == {3: 3, 11: 11}


def test_no_autograd_outside_but_score_may_enable_it():
    sde = VESDE()
    w = torch.ones(1, requires_grad=True)

    def score(x, t):
        assert not torch.is_grad_enabled()
        with torch.enable_grad():
            y = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad((w * y).pow(2).sum(), y)
        return -0.5 * g

    x = get_solver("ode", steps=3).sample(score, sde, (4, N, V), torch.Generator().manual_seed(0))
    assert not x.requires_grad and torch.isfinite(x).all()


def test_progress_bar(capsys):
    get_solver("pc", steps=5).sample(lambda x, t: -x, VESDE(), (2, N, V), progress=True)
    assert "pc" in capsys.readouterr().err


def test_registry_config_and_errors():
    assert {"pc", "ode"} <= set(SOLVERS.names())
    assert {"euler_maruyama", "reverse_diffusion", "none"} <= set(PC_PREDICTORS.names())
    assert {"langevin", "none"} <= set(PC_CORRECTORS.names())
    pc = get_solver("pc", steps=10, snr=0.2)
    again = get_solver(pc.config())
    assert again.config() == pc.config()
    assert get_solver("pc").config()["steps"] == 1000  # the paper's default
    with pytest.raises(UnknownNameError, match="ode"):
        get_solver("ddim")
    with pytest.raises(UnknownNameError, match="euler_maruyama"):
        get_solver("pc", predictor="heun")
    with pytest.raises(ConfigError, match=r"'steps' = 0 is not accepted: expected an int >= 1"):
        get_solver("pc", steps=0)
    with pytest.raises(ConfigError, match=r"'steps' = 0 is not accepted: expected an int >= 1"):
        ODESolver(steps=0)  # a direct call is checked against the same annotations
    with pytest.raises(ConfigError, match=r"solver 'ode' has no setting 'step'; it accepts: steps.*Did you mean 'steps'\?"):
        get_solver("ode", step=3)
    assert get_solver().config() == get_solver("ode").config() == ODESolver().config()  # the one default
    assert ODESolver().config()["steps"] == 15
    with pytest.raises(ConfigError, match="heun"):
        get_solver("ode", method="rk45")
    with pytest.raises(ConfigError, match="logsnr"):
        get_solver("ode", schedule="karras")
