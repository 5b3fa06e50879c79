"""Guidance: analytic priors (exact scores) steered by analytic predictors; refusal of mismatches."""
from __future__ import annotations

import csv
import itertools
import math

import pytest
import torch
from torch import Tensor, nn

from nag.diffusion.guidance import (
    SCHEDULES,
    BaseGuide,
    DiversityGuide,
    Guide,
    GuidedSampler,
    distinct_fraction,
    guided_score_fn,
    parse_constraint,
)
from nag.diffusion.sde import SDE, VESDE, VPSDE, bcast
from nag.diffusion.solvers import DEFAULT_SOLVER, get_solver
from nag.errors import ConfigError, IncompatibleComponentsError, InvalidArchError
from nag.spaces.base import SearchSpace

OPS = ("a", "b", "c")


class ToySpace(SearchSpace):
    """4 nodes on a chain, each one of 3 ops: 81 archs (tuples of op names)."""

    name = "toy"
    ops = OPS
    num_nodes = 4

    @property
    def adjacency(self) -> Tensor:
        return torch.diag(torch.ones(3), 1)

    def to_tokens(self, arch):
        if not (isinstance(arch, tuple) and len(arch) == 4 and all(o in OPS for o in arch)):
            raise InvalidArchError(f"{arch!r} is not a toy arch: a tuple of 4 ops from {OPS}")
        return tuple(OPS.index(o) for o in arch)

    def from_tokens(self, tokens):
        if len(tokens) != 4 or any(not 0 <= t < 3 for t in tokens):
            raise InvalidArchError(f"toy tokens must be 4 ints in 0..2, got {tokens}")
        return tuple(OPS[t] for t in tokens)

    def parse(self, text):
        return self.from_tokens([OPS.index(c) for c in text])

    def format(self, arch):
        return "".join(arch)

    def build(self, arch, task=None):
        return nn.Identity()

    @property
    def size(self):
        return 81

    def enumerate(self):
        return [tuple(p) for p in itertools.product(OPS, repeat=4)]


def mixture_score(sde: SDE, points: Tensor, logw: Tensor):
    """Exact score when p_0 is a weighted mixture of deltas at ``points [K, N, V]``."""

    def score(x, t):
        a, std = sde.marginal_coeffs(t)
        d = bcast(a, x).unsqueeze(1) * points - x.unsqueeze(1)  # [B, K, N, V]
        var = bcast(std, x).unsqueeze(1) ** 2
        r = (logw - (d * d / (2 * var)).flatten(2).sum(-1)).softmax(-1)
        return (r[..., None, None] * d / var).sum(1)

    return score


def factorised_score(sde: SDE, probs: Tensor):
    """Exact score when each node independently holds op k with ``probs [N, V]`` (as 2*onehot-1)."""
    v = probs.shape[1]
    rows = 2 * torch.eye(v) - 1  # [V(k), V]
    logp = probs.log()  # -inf where not allowed

    def score(x, t):
        a, std = sde.marginal_coeffs(t)
        d = bcast(a, x).unsqueeze(2) * rows - x.unsqueeze(2)  # [B, N, K, V]
        var = bcast(std, x).unsqueeze(2) ** 2
        r = (logp - (d * d / (2 * var)).sum(-1)).softmax(-1)  # [B, N, K]
        return (r.unsqueeze(-1) * d / var).sum(2)

    return score


class AnalyticPrior:
    """What GuidedSampler needs from a prior: space, sde, score_fn."""

    def __init__(self, space: SearchSpace, sde: SDE, score_fn):
        self.space, self.sde, self.score_fn = space, sde, score_fn


def uniform_prior(space: SearchSpace, sde: SDE | None = None) -> AnalyticPrior:
    sde = sde or VESDE(0.1, 5.0)
    allowed = space.allowed_ops().float()
    return AnalyticPrior(space, sde, factorised_score(sde, allowed / allowed.sum(1, keepdim=True)))


class AnalyticPredictor:
    """Differentiable analytic predictor with the attributes real predictors carry."""

    def __init__(self, fn, sde_config=None, space_name=None, targets=None, var: float | None = None):
        self.fn, self.sde_config, self.space_name = fn, sde_config, space_name
        if targets is not None:
            self.targets = targets
        if var is not None:
            self.predict = lambda x, t: (fn(x, t), torch.full_like(fn(x, t), var))

    def __call__(self, x, t):
        return self.fn(x, t)


def soft_count_c(x, t):
    """Expected number of nodes holding op 'c' (original units, 0..4)."""
    return ((x + 1) / 2)[:, :, 2].sum(1)


def posterior_count_c(sde: SDE):
    """Noise-aware count of 'c' under the uniform toy prior: sum_i P(node i = c | x_t) (exact)."""
    rows = 2 * torch.eye(3) - 1

    def fn(x, t):
        a, std = sde.marginal_coeffs(t)
        d = bcast(a, x).unsqueeze(2) * rows - x.unsqueeze(2)  # [B, N, K, V]
        var = bcast(std, x).unsqueeze(2) ** 2
        return (-(d * d / (2 * var)).sum(-1)).softmax(-1)[:, :, 2].sum(1)

    return fn


PC = dict(name="pc", steps=60)
WEIGHT_COLLAPSING = 1.0  # toward 'c' on all 4 nodes: 64 draws hold ~13 distinct archs
SPACE = ToySpace()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tokens_of(archs):
    return torch.tensor([SPACE.to_tokens(a) for a in archs])


def sample(guides=(), n=400, seed=0, prior=None, solver=PC, **kw):
    return GuidedSampler(prior or uniform_prior(SPACE), guides, solver=solver, batch_size=n, **kw).sample(n, seed)


def test_unguided_uniform_prior_is_uniform():
    tok = tokens_of(sample())
    freq = torch.stack([(tok == k).float().mean() for k in range(3)])
    torch.testing.assert_close(freq, torch.full((3,), 1 / 3), atol=0.04, rtol=0)


def test_max_and_min_shift_samples():
    node1_c = AnalyticPredictor(lambda x, t: x[:, 1, 2])
    base = (tokens_of(sample())[:, 1] == 2).float().mean().item()
    up = (tokens_of(sample([Guide(node1_c, weight=5.0, direction="max")]))[:, 1] == 2).float().mean().item()
    down = (tokens_of(sample([Guide(node1_c, weight=5.0, direction="min")]))[:, 1] == 2).float().mean().item()
    assert 0.25 < base < 0.42
    assert up > 0.9 and down < 0.05
    # other nodes are untouched
    other = (tokens_of(sample([Guide(node1_c, weight=5.0)]))[:, 0] == 2).float().mean().item()
    assert 0.25 < other < 0.42


def test_target_direction_concentrates_on_target():
    # A noise-aware predictor (as DiffusionNAG's): the clean soft count of a noisy x_t is
    # uninformative where the choices are made, and its quadratic makes the guidance stiff.
    count = AnalyticPredictor(posterior_count_c(VESDE(0.1, 5.0)))
    m = (tokens_of(sample([Guide(count, weight=10.0, direction="target", target=2.0)])) == 2).sum(1)
    base = (tokens_of(sample()) == 2).sum(1)
    assert (m == 2).float().mean() > 0.8 > (base == 2).float().mean() + 0.3


def test_multi_output_predictor_by_index_and_name():
    two = AnalyticPredictor(lambda x, t: torch.stack([x[:, 0, 0], x[:, 3, 1]], 1), targets=["first_a", "last_b"])
    g = Guide(two, weight=5.0, target_index="last_b")
    assert g.index == 1
    tok = tokens_of(sample([g]))
    assert (tok[:, 3] == 1).float().mean() > 0.9 and (tok[:, 0] == 0).float().mean() < 0.45
    with pytest.raises(ConfigError, match="first_a"):
        Guide(two, target_index="acc")


@pytest.mark.parametrize("var", [None, 0.05])
def test_constraint_is_satisfied(var):
    count = AnalyticPredictor(posterior_count_c(VESDE(0.1, 5.0)), var=var)
    base = (tokens_of(sample()) == 2).sum(1)
    assert (base <= 1).float().mean() < 0.7
    guided = (tokens_of(sample([Guide(count, weight=2.0, direction=None, constraint="<=1")])) == 2).sum(1)
    assert (guided <= 1).float().mean() > 0.97
    # a constraint together with an objective: maximise 'c' but keep at most 2 of them
    both = (tokens_of(sample([Guide(count, weight=2.0, direction="max", constraint=("<=", 2.0))])) == 2).sum(1)
    assert (both <= 2).float().mean() > 0.95 and (both == 2).float().mean() > 0.5 > (base == 2).float().mean()


def test_schedules():
    g = Guide(AnalyticPredictor(soft_count_c), weight=4.0, schedule="linear")
    t = torch.tensor([0.0, 0.5, 1.0])
    torch.testing.assert_close(g.weight_at(t), torch.tensor([4.0, 2.0, 0.0]))
    g = Guide(AnalyticPredictor(soft_count_c), weight=2.0, schedule="cosine")
    torch.testing.assert_close(g.weight_at(t), 2.0 * torch.cos(0.5 * math.pi * t))
    g = Guide(AnalyticPredictor(soft_count_c), weight=3.0, schedule=lambda t: (t < 0.5).float())
    torch.testing.assert_close(g.weight_at(t), torch.tensor([3.0, 0.0, 0.0]))
    assert set(SCHEDULES) >= {"constant", "linear", "cosine"}
    with pytest.raises(ConfigError, match="constant"):
        Guide(AnalyticPredictor(soft_count_c), schedule="exp")


def test_zero_schedule_equals_unguided_and_schedule_changes_result():
    off = Guide(AnalyticPredictor(lambda x, t: x[:, 1, 2]), weight=5.0, schedule=lambda t: 0 * t)
    torch.testing.assert_close(
        GuidedSampler(uniform_prior(SPACE), [off], solver=PC).sample_tensor(50, seed=3),
        GuidedSampler(uniform_prior(SPACE), [], solver=PC).sample_tensor(50, seed=3),
    )
    late = Guide(AnalyticPredictor(lambda x, t: x[:, 1, 2]), weight=5.0, schedule="linear")
    frac = (tokens_of(sample([late]))[:, 1] == 2).float().mean()
    assert frac > 0.6


def test_mismatched_sde_or_space_is_refused():
    prior = uniform_prior(SPACE, VESDE(0.1, 5.0))
    ok = AnalyticPredictor(soft_count_c, sde_config={"name": "ve", "sigma_min": 0.1, "sigma_max": 5.0}, space_name="toy")
    GuidedSampler(prior, [Guide(ok)])
    bad_sde = AnalyticPredictor(soft_count_c, sde_config={"name": "ve", "sigma_min": 0.1, "sigma_max": 20.0})
    with pytest.raises(IncompatibleComponentsError, match="sigma_max") as info:
        GuidedSampler(prior, [Guide(bad_sde)])
    assert "prior" in str(info.value) and "predictor" in str(info.value) and "20.0" in str(info.value)
    with pytest.raises(IncompatibleComponentsError, match="name"):
        GuidedSampler(prior, [Guide(AnalyticPredictor(soft_count_c, sde_config=VPSDE().config()))])
    bad_space = AnalyticPredictor(soft_count_c, space_name="nb201")
    with pytest.raises(IncompatibleComponentsError, match="nb201"):
        GuidedSampler(prior, [Guide(ok), Guide(bad_space)])


class _Poison(torch.autograd.Function):
    """Identity forward; NaN / inf gradient backward."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        out = torch.full_like(g, float("nan"))
        out[:, 0] = float("inf")
        out[:, 1] = -float("inf")
        return out


@pytest.mark.parametrize(
    "fn",
    [
        lambda x, t: _Poison.apply(x)[:, 2].sum(-1),  # nan / inf gradients
        lambda x, t: x[:, 0, 0] * float("nan"),  # nan value and gradient
        lambda x, t: 1e30 * x.sum((1, 2)),  # finite gradient; weight * gradient overflows to inf
    ],
)
def test_non_finite_guidance_never_reaches_the_state(fn):
    prior = uniform_prior(SPACE)
    guide = Guide(AnalyticPredictor(fn), weight=1e10, scale="absolute")
    s = guided_score_fn(prior.score_fn, [guide])(torch.randn(8, 4, 3), torch.full((8,), 0.5))
    assert torch.isfinite(s).all()
    for solver in (dict(name="pc", steps=20), dict(name="ode", steps=5)):
        x = GuidedSampler(prior, [guide], solver=solver).sample_tensor(16, seed=0)
        assert torch.isfinite(x).all()


def test_predictor_without_gradient_is_refused_clearly():
    @torch.no_grad()
    def frozen(x, t):
        return 2.0 * x[:, 0, 0]

    fn = guided_score_fn(uniform_prior(SPACE).score_fn, [Guide(AnalyticPredictor(frozen), scale="absolute")])
    with pytest.raises(IncompatibleComponentsError, match="no_grad"):
        fn(torch.randn(2, 4, 3), torch.full((2,), 0.5))


def test_max_norm_ratio_caps_guidance_per_sample():
    prior = uniform_prior(SPACE)
    guide = Guide(AnalyticPredictor(lambda x, t: x[:, 1, 2]), weight=1e6, scale="absolute")
    x, t = torch.randn(32, 4, 3), torch.full((32,), 0.3)
    s = prior.score_fn(x, t)
    g = guided_score_fn(prior.score_fn, [guide], max_norm_ratio=0.5)(x, t) - s
    ratio = g.flatten(1).norm(dim=1) / s.flatten(1).norm(dim=1)
    assert torch.all(ratio <= 0.5 + 1e-4) and torch.all(ratio > 0.49)
    small = Guide(AnalyticPredictor(lambda x, t: x[:, 1, 2]), weight=1e-3, scale="absolute")
    g = guided_score_fn(prior.score_fn, [small], max_norm_ratio=0.5)(x, t) - s
    torch.testing.assert_close(g[:, 1, 2], torch.full((32,), 1e-3))  # under the cap: untouched
    # guidance adds exactly w * grad
    g = guided_score_fn(prior.score_fn, [Guide(AnalyticPredictor(soft_count_c), weight=2.0, scale="absolute")])(x, t) - s
    expected = torch.zeros_like(x)
    expected[:, :, 2] = 1.0  # d/dx of sum((x+1)/2) = 1/2, times 2
    torch.testing.assert_close(g, expected)


def test_diversity_guide_increases_uniqueness():
    """Prior: 30 archs, equally likely. A batch of 30 iid draws holds ~19 distinct archs."""
    archs = SPACE.enumerate()[::2][:30]
    points = 2 * SPACE.encode_batch(archs) - 1
    sde = VESDE(0.1, 5.0)
    prior = AnalyticPrior(SPACE, sde, mixture_score(sde, points, torch.zeros(len(archs))))

    def uniq(guides):
        out = []
        for seed in range(6):
            got = GuidedSampler(prior, guides, solver=dict(name="pc", steps=60), batch_size=30).sample(30, seed)
            assert set(got) <= set(archs)
            out.append(len(set(got)) / 30)
        return sum(out) / len(out)

    iid = uniq([])
    assert 0.55 < iid < 0.75  # birthday bound: 1 - (29/30)^30 = 0.64
    assert uniq([DiversityGuide(weight=3.0, bandwidth=1.0)]) > iid + 0.1


def test_diversity_memory_removes_duplicates_across_batches():
    """Uniform prior over 81 archs; 40 samples in batches of 10: iid gives ~32 distinct."""
    prior = uniform_prior(SPACE)

    def distinct(guides):
        sampler = GuidedSampler(prior, guides, solver=dict(name="pc", steps=40), batch_size=10)
        return sum(len(set(sampler.sample(40, seed))) for seed in range(3)) / 3

    iid = distinct([])
    in_batch = distinct([DiversityGuide(weight=3.0, bandwidth=1.0)])
    remembered = distinct([DiversityGuide(weight=3.0, bandwidth=1.0, memory=40)])
    print(f"distinct of 40: iid {iid:.2f}, in-batch {in_batch:.2f}, with memory {remembered:.2f}")
    assert 28 < iid < 35
    assert remembered > max(iid, in_batch) + 2


def test_diversity_gradient_pushes_pairs_apart():
    x = torch.tensor([[[0.1, 0.0, 0.0]], [[-0.1, 0.0, 0.0]], [[5.0, 5.0, 5.0]]])
    fn = guided_score_fn(lambda x, t: torch.zeros_like(x), [DiversityGuide(weight=1.0, bandwidth=1.0, on="state")])
    g = fn(x, torch.full((3,), 0.5))
    assert g[0, 0, 0] > 0 and g[1, 0, 0] < 0  # the close pair repels
    assert g[2].abs().max() < 1e-6  # the far sample feels nothing
    assert torch.isfinite(guided_score_fn(lambda x, t: x, [DiversityGuide(on="state")])(x, torch.ones(3))).all()
    # on the denoised estimate: with a zero score y = x / alpha, so VE gives the same push
    den = guided_score_fn(lambda x, t: torch.zeros_like(x), [DiversityGuide(bandwidth=1.0)], sde=VESDE())
    torch.testing.assert_close(den(x, torch.full((3,), 0.5)), g)
    with pytest.raises(ConfigError, match="sde"):
        guided_score_fn(lambda x, t: torch.zeros_like(x), [DiversityGuide()])(x, torch.ones(3))
    for bad, match in ((dict(bandwidth=0.0), "setting 'bandwidth' = 0.0 is not accepted: expected a number > 0 or null"),
                       (dict(on="x0"), "setting 'on' = 'x0' is not accepted: expected one of 'denoised', 'state'"),
                       (dict(memory=-1), "setting 'memory' = -1 is not accepted: expected an int >= 0")):
        with pytest.raises(ConfigError, match=match):
            DiversityGuide(**bad)


@pytest.mark.parametrize("on", ["state", "denoised"])
@pytest.mark.parametrize("bandwidth", [None, 1.5])
def test_diversity_closed_form_gradient_matches_autograd(on, bandwidth):
    gen = torch.Generator().manual_seed(0)
    x, score = torch.randn(12, 4, 3, generator=gen), torch.randn(12, 4, 3, generator=gen)
    t = torch.full((12,), 0.4)
    guide = DiversityGuide(bandwidth=bandwidth, on=on, memory=5)
    guide.remember(torch.randn(7, 4, 3, generator=gen).sign())  # keeps the last 5
    assert guide._bank.shape == (5, 12)
    sde = VPSDE()
    closed = guide.gradient(x, t, score, sde)
    auto = BaseGuide.gradient(guide, x, t, score, sde)  # autograd of the objective
    torch.testing.assert_close(closed, auto, rtol=1e-4, atol=1e-6)
    guide.reset()
    assert guide._bank is None


def test_guided_sampler_batches_seeds_and_decodes():
    sampler = GuidedSampler(uniform_prior(SPACE), solver=dict(name="ode", steps=8), batch_size=4)
    a = sampler.sample(10, seed=1)
    assert len(a) == 10 and all(SPACE.is_valid(x) for x in a)
    assert a == sampler.sample(10, seed=1)
    assert a != sampler.sample(10, seed=2)
    assert sampler.sample_tensor(10, seed=1).shape == (10, 4, 3)
    assert sampler.sample(0) == []
    assert sampler.score_fn() is sampler.prior.score_fn  # no guides: the prior's own score
    assert "GuidedSampler" in repr(sampler)
    assert GuidedSampler(uniform_prior(SPACE)).solver.config() == get_solver(DEFAULT_SOLVER).config()  # the one default


def test_guide_config_errors():
    p = AnalyticPredictor(soft_count_c)
    with pytest.raises(ConfigError, match="max"):
        Guide(p, direction="up")
    with pytest.raises(ConfigError, match="target"):
        Guide(p, direction="target")
    with pytest.raises(ConfigError, match="constraint"):
        Guide(p, direction=None)
    assert parse_constraint("<= 1.5") == ("<=", 1.5)
    assert parse_constraint((">=", 70)) == (">=", 70.0)
    assert parse_constraint(None) is None
    for bad, match in (("<1", "cannot read constraint '<1'; write e.g. '<=5.0'"), ("==3", "cannot read constraint '==3'"),
                       (("<", 1.0), r"operator '<' is not supported; use one of \['<=', '>='\]"),
                       ("<=abc", "cannot read constraint '<=abc'"), (5, "a constraint is '<=c', '>=c' or a pair")):
        with pytest.raises(ConfigError, match=match):
            parse_constraint(bad)


def test_nb201_guided_by_a_table_fitted_linear_predictor(nb201_csv):
    """Real data: a linear per-node-op model of NB201 CIFAR-10 accuracy guides a uniform NB201 prior."""
    from nag.spaces import get_space

    space = get_space("nb201")
    with open(nb201_csv) as fh:
        rows = list(csv.DictReader(fh))
    acc = {r["arch"]: float(r["cifar10_test_acc"]) for r in rows}
    fit = rows[::5]  # a fifth of the table is plenty for 31 coefficients
    x = space.encode_batch([space.parse(r["arch"]) for r in fit]).flatten(1)  # [3125, 56]
    y = torch.tensor([float(r["cifar10_test_acc"]) for r in fit], dtype=torch.float64)
    design = torch.cat([x.double(), torch.ones(len(y), 1, dtype=torch.float64)], 1)
    coef = torch.linalg.lstsq(design, y.unsqueeze(1)).solution.squeeze(1)
    w, b = coef[:-1].float().view(space.num_nodes, space.num_ops), float(coef[-1])

    def linear_acc(xt, t):  # [-1, 1] state -> predicted accuracy (%)
        return ((xt + 1) / 2 * w).sum((1, 2)) + b

    prior = uniform_prior(space)
    solver, n = dict(name="pc", steps=40), 128
    plain = GuidedSampler(prior, solver=solver, batch_size=n).sample(n, seed=0)
    guide = Guide(AnalyticPredictor(linear_acc, space_name="nb201"), weight=0.5, scale="absolute")
    guided = GuidedSampler(prior, [guide], solver=solver, batch_size=n).sample(n, seed=0)
    mean_plain = sum(acc[space.format(a)] for a in plain) / n
    mean_guided = sum(acc[space.format(a)] for a in guided) / n
    print(f"uniform NB201 prior: mean CIFAR-10 acc {mean_plain:.2f}; guided: {mean_guided:.2f}")
    assert abs(mean_plain - sum(acc.values()) / len(acc)) < 2.5  # the table's mean is 87.06
    assert mean_guided > 91.0


def test_collapse_guard_weakens_objective_guides_until_enough_archs_are_distinct():
    """A strong guide toward 'c' on every node collapses 64 draws onto a few archs; the guard
    redraws with 0.9^k of the weight until the floor holds, reports the factor, restores the guide."""
    strong = Guide(AnalyticPredictor(soft_count_c), weight=WEIGHT_COLLAPSING, direction="max", scale="absolute")
    bound = Guide(AnalyticPredictor(lambda x, t: x[:, 0, 0]), weight=3.0, direction=None, constraint="<=0.5",
                  scale="absolute")
    off = GuidedSampler(uniform_prior(SPACE), [strong, bound], solver=PC, batch_size=64)
    collapsed = off.sample(64, seed=0)
    assert distinct_fraction(collapsed) < 0.4 and off.weight_factor == 1.0

    guarded = GuidedSampler(uniform_prior(SPACE), [strong, bound], solver=PC, batch_size=64, min_uniqueness=0.3)
    archs = guarded.sample(64, seed=0)
    assert distinct_fraction(archs) >= 0.3
    assert 0.9**5 <= guarded.weight_factor < 1.0
    half_steps = math.log(guarded.weight_factor) / math.log(0.9) * 2  # 0.9^k, or one bisection step back: 0.9^(k - 1/2)
    assert half_steps == pytest.approx(round(half_steps))
    assert strong.weight == WEIGHT_COLLAPSING and bound.weight == 3.0  # restored; the constraint is never weakened
    # the same draw as an unguarded sampler at the reported weight, and still guided
    weaker = Guide(AnalyticPredictor(soft_count_c), weight=WEIGHT_COLLAPSING * guarded.weight_factor, direction="max",
                   scale="absolute")
    assert GuidedSampler(uniform_prior(SPACE), [weaker, bound], solver=PC, batch_size=64).sample(64, seed=0) == archs
    assert (tokens_of(archs) == 2).float().mean() > 0.5
    assert guarded.sample(64, seed=0) == archs  # deterministic, from the configured weight again


def test_collapse_guard_leaves_diverse_or_unguided_draws_alone():
    mild = Guide(AnalyticPredictor(soft_count_c), weight=0.3, direction="max", scale="absolute")
    for guides in ([mild], []):
        guarded = GuidedSampler(uniform_prior(SPACE), guides, solver=PC, batch_size=64, min_uniqueness=0.5)
        assert guarded.sample(64, seed=1) == GuidedSampler(uniform_prior(SPACE), guides, solver=PC, batch_size=64).sample(64, seed=1)
        assert guarded.weight_factor == 1.0
    # 400 draws of an 81-arch space cannot be 50% distinct: the floor scales with size / n
    guarded = GuidedSampler(uniform_prior(SPACE), [mild], solver=PC, batch_size=400, min_uniqueness=0.5)
    guarded.sample(400, seed=0)
    assert guarded.weight_factor == 1.0


def test_collapse_guard_gives_up_with_a_warning():
    strong = Guide(AnalyticPredictor(soft_count_c), weight=3.0, direction="max", scale="absolute")
    guarded = GuidedSampler(uniform_prior(SPACE), [strong], solver=PC, batch_size=64, min_uniqueness=0.95)
    with pytest.warns(UserWarning, match="lower guidance.weight"):
        guarded.sample(64, seed=0)
    assert guarded.weight_factor == pytest.approx(0.9**5)
    assert strong.weight == 3.0


def test_collapse_guard_setting_is_checked():
    with pytest.raises(ConfigError, match="min_uniqueness"):
        GuidedSampler(uniform_prior(SPACE), [], solver=PC, min_uniqueness=1.5)
