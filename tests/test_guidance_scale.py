"""Standardized guidance: one weight means the same for any metric's scale and direction."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from test_guidance import SPACE, AnalyticPredictor, sample, soft_count_c, tokens_of, uniform_prior  # tests/ is on sys.path

from nag.diffusion.guidance import (
    CALIBRATION_ARCHS,
    DEFAULT_WEIGHT,
    Guide,
    GuidedSampler,
    calibrate_guides,
    guided_score_fn,
    preferred_spread,
)
from nag.errors import ConfigError


def test_preferred_spread_is_the_std_of_the_preferred_half():
    v = np.array([10.0, 80.0, 90.0, 91.0, 92.0, 93.0])  # a broken arch at 10
    assert preferred_spread(v, "upper") == pytest.approx(np.std([91.0, 92.0, 93.0]))
    assert preferred_spread(v, "lower") == pytest.approx(np.std([10.0, 80.0, 90.0]))
    assert preferred_spread(v, 90.5) == pytest.approx(np.std([90.0, 91.0, 92.0]))  # nearest to the target
    assert preferred_spread(v, "upper") < np.std(v)  # the broken tail does not set the unit
    assert preferred_spread([5.0, 5.0, 5.0]) == 1.0  # no spread at all: unit 1
    assert preferred_spread([1.0, np.nan, 3.0, np.inf]) == pytest.approx(1.0)  # non-finite values are ignored


def calibrated(guide: Guide) -> Guide:
    calibrate_guides([guide], SPACE)
    return guide


@pytest.mark.parametrize("direction", ["max", "min"])
def test_standardized_gradient_does_not_depend_on_the_metrics_units(direction):
    """The same metric in other units (x 1000 + 7: ms -> us, an offset) gets the same guidance."""
    x, t = torch.randn(16, 4, 3), torch.full((16,), 0.4)
    score = uniform_prior(SPACE).score_fn
    base = calibrated(Guide(AnalyticPredictor(soft_count_c), direction=direction))
    scaled = calibrated(Guide(AnalyticPredictor(lambda x, t: 1000.0 * soft_count_c(x, t) + 7.0), direction=direction))
    assert scaled.unit == pytest.approx(1000.0 * base.unit, rel=1e-4)
    g_base = guided_score_fn(score, [base])(x, t)
    g_scaled = guided_score_fn(score, [scaled])(x, t)
    torch.testing.assert_close(g_base, g_scaled, rtol=1e-4, atol=1e-4)
    # in absolute units the same weight is a thousand times stronger on the scaled metric
    g_abs = guided_score_fn(score, [Guide(AnalyticPredictor(lambda x, t: 1000.0 * soft_count_c(x, t)),
                                          direction=direction, scale="absolute")])(x, t)
    assert (g_abs - score(x, t)).abs().max() > 100 * (g_base - score(x, t)).abs().max()


def test_standardized_max_and_min_are_mirror_images():
    """Minimising a metric is maximising its negative, with the same unit and strength."""
    up = calibrated(Guide(AnalyticPredictor(soft_count_c), direction="min"))
    down = calibrated(Guide(AnalyticPredictor(lambda x, t: -soft_count_c(x, t)), direction="max"))
    assert up.unit == pytest.approx(down.unit)
    x, t = torch.randn(8, 4, 3), torch.full((8,), 0.3)
    torch.testing.assert_close(up.gradient(x, t, None), down.gradient(x, t, None))


def test_standardized_constraint_sharpness_is_per_unit():
    x, t = torch.randn(8, 4, 3), torch.full((8,), 0.3)
    a = calibrated(Guide(AnalyticPredictor(soft_count_c), direction=None, constraint="<=1.0"))
    b = calibrated(Guide(AnalyticPredictor(lambda x, t: 50.0 * soft_count_c(x, t)), direction=None, constraint="<=50.0"))
    torch.testing.assert_close(a.gradient(x, t, None), b.gradient(x, t, None), rtol=1e-4, atol=1e-5)


def test_guided_sampler_calibrates_on_random_archs_and_the_weight_steers():
    guide = Guide(AnalyticPredictor(soft_count_c))
    assert guide.unit is None and guide.weight == DEFAULT_WEIGHT
    plain = (tokens_of(sample([])) == 2).float().mean().item()
    steered = (tokens_of(sample([guide])) == 2).float().mean().item()
    archs = SPACE.sample(CALIBRATION_ARCHS, np.random.default_rng(0))
    x = 2.0 * SPACE.encode_batch(archs) - 1.0
    assert guide.unit == pytest.approx(preferred_spread(soft_count_c(x, 0.0).numpy(), "upper"))
    assert steered > plain + 0.2, (plain, steered)


def test_uncalibrated_guide_says_how_to_get_a_unit():
    fn = guided_score_fn(uniform_prior(SPACE).score_fn, [Guide(AnalyticPredictor(soft_count_c))])
    with pytest.raises(ConfigError, match="no unit yet.*GuidedSampler.*scale='absolute'"):
        fn(torch.randn(2, 4, 3), torch.full((2,), 0.5))


def test_a_given_unit_is_kept_and_bad_settings_are_refused():
    guide = Guide(AnalyticPredictor(soft_count_c), unit=2.5)
    GuidedSampler(uniform_prior(SPACE), [guide])
    assert guide.unit == 2.5  # not recalibrated
    assert Guide(AnalyticPredictor(soft_count_c), scale="absolute").unit == 1.0
    with pytest.raises(ConfigError, match="setting 'scale' = 'relative' is not accepted: expected one of 'standardized', 'absolute'"):
        Guide(AnalyticPredictor(soft_count_c), scale="relative")
    with pytest.raises(ConfigError, match="goes with scale='standardized' only"):
        Guide(AnalyticPredictor(soft_count_c), scale="absolute", unit=2.0)
    with pytest.raises(ConfigError, match="setting 'unit' = 0.0 is not accepted: expected a number > 0 or null"):
        Guide(AnalyticPredictor(soft_count_c), unit=0.0)


def test_the_unit_follows_the_predictors_spread_at_each_noise_level():
    """A noise-aware predictor shrinks toward its mean as noise grows; the unit shrinks with it."""
    from test_guidance import posterior_count_c

    from nag.diffusion.sde import VESDE

    sde = VESDE(0.1, 5.0)
    guide = Guide(AnalyticPredictor(posterior_count_c(sde)))
    GuidedSampler(uniform_prior(SPACE, sde), [guide])
    u = guide.unit_at(torch.tensor([0.0, 0.5, 1.0]))
    assert u[0] == pytest.approx(guide.unit, rel=1e-5) and u[0] > u[1] > u[2] > 0
    mid = guide.unit_at(torch.tensor([0.05]))  # linear between the calibrated levels
    assert float(mid) == pytest.approx(0.5 * float(u[0] + guide.unit_at(torch.tensor([0.1]))[0]), rel=1e-5)
    # the same metric in other units: the same guidance at every noise level
    scaled = Guide(AnalyticPredictor(lambda x, t: 60.0 * posterior_count_c(sde)(x, t) - 3.0))
    GuidedSampler(uniform_prior(SPACE, sde), [scaled])
    x, t = torch.randn(8, 4, 3), torch.tensor([0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 1.0])
    torch.testing.assert_close(guide.gradient(x, t, None), scaled.gradient(x, t, None), rtol=1e-4, atol=1e-5)


def test_experiment_defaults_use_the_one_default_weight():
    """guided_generation, transfer_nas and pareto_generation's objective guide all default to DEFAULT_WEIGHT, standardized."""
    from nag.run import compose_config

    gg = compose_config(["experiment=guided_generation"])
    assert gg.guidance.weight == DEFAULT_WEIGHT and gg.guidance.scale == "standardized"
    tn = compose_config(["experiment=transfer_nas"])
    assert tn.guidance.weight == DEFAULT_WEIGHT and tn.guidance.scale == "standardized"
    pg = compose_config(["experiment=pareto_generation"])
    assert pg.guides[0].weight == DEFAULT_WEIGHT and "scale" not in pg.guides[0]  # the GuideSpec default
    assert compose_config(["experiment=transfer_nas_paper"]).guidance.scale == "absolute"  # the paper's 1e4
