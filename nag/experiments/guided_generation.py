"""``experiment=guided_generation``: does predictor guidance steer a prior to good archs?

On a benchmark table (``benchmark.path``, metric ``benchmark.metric``):

1. draw ``n_labeled`` labeled archs (seeded) and fit a noise-aware predictor on them under the
   prior's SDE (one multi-target predictor when ``extra_guides`` name more metrics; with
   ``source`` (``nag.search.sources``: other columns, other tables, a meta-database) a multi-task
   predictor that also learns every source's values on its own rows, so a new metric with few
   labels starts from related ones);
2. load the prior (``prior.path``, default: the one nag ships for the space) and draw ``n``
   guided and ``n`` unguided samples with the same solver and the same seed (paired starts);
3. score both sets by true table values.

Results (``results.json``); "top q%" means the true metric reaches the table's q% quantile:
  - ``frac_top5``, ``frac_top1``, ``mean_true``, ``max_true``, ``uniqueness`` of the guided
    samples, and ``unguided_*`` of the same for the unguided ones;
  - ``predictor_spearman`` (held-out table archs, clean t = 0), ``predictor_spearman_t0.1`` and
    ``predictor_spearman_t0.5`` (states perturbed by the prior's SDE at that t);
  - per extra guide on ``<m>``: ``<m>_frac_satisfied`` (its constraint holds),
    ``<m>_mean_true``, ``<m>_predictor_spearman`` and their ``unguided_`` twins; with any
    constraint also ``frac_feasible`` (all constraints hold), ``mean_true_feasible`` (primary
    metric over those) and ``frac_top5_feasible`` (feasible and in the top 5% of the feasible
    table archs);
  - ``guidance_unit`` (what one unit of the standardized guide is in the metric's units),
    ``n_source`` (source rows the predictor also learned from);
  - ``predictor_fit_s``, ``guided_sample_s``, ``unguided_sample_s``,
    ``guided_archs_per_s`` and ``wall_s`` (the whole run).
Files: ``guided.txt`` / ``unguided.txt`` (tab-separated, a header, then one sample per line:
the arch string and its true metrics, in sample order).

The parts it composes live below the experiments, where ``benchmarks/guidance.py`` and
``benchmarks/guided_vs_filter.py`` use them too: the table (``nag.tables.table.load_benchmark``,
``BenchmarkTable.split``), the predictor (``nag.modules.predictor.fit_on_table``), the guides
(``nag.diffusion.guidance.GuideSpec``), the sampler (``nag.diffusion.sampling.build_sampler``) and
the scores (``nag.metrics.sample_scores``, ``constraint_scores``, ``predictor_spearman``).
"""
from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from pydantic import field_validator

from nag.diffusion.guidance import GuideSpec
from nag.diffusion.prior import load_prior
from nag.diffusion.sampling import SamplerSettings, build_sampler, timed_sample
from nag.experiments import build_space, experiment, plain, run_dir, trainer_settings
from nag.experiments.config import PositiveInt, SamplingConfig
from nag.io import atomic_write_text
from nag.metrics import constraint_scores, predictor_spearman, sample_scores
from nag.modules.predictor import PredictorOptions, fit_predictor
from nag.search.sources import SourceConfig, load_sources, n_source_rows, with_sources
from nag.spaces.base import Arch
from nag.tables.table import BenchmarkTable, load_benchmark

SPEARMAN_TIMES = (0.1, 0.5)


class GuidedGenerationConfig(SamplingConfig):
    n_labeled: PositiveInt
    n_heldout: PositiveInt
    n: PositiveInt
    predictor: PredictorOptions
    guidance: GuideSpec
    extra_guides: list[GuideSpec]
    source: SourceConfig

    @field_validator("extra_guides")
    @classmethod
    def _named(cls, guides: list[GuideSpec]) -> list[GuideSpec]:
        for g in guides:
            if not isinstance(g.target, str):
                raise ValueError("each extra guide names its table column: {metric: <column>, ...}")
        return guides


def write_samples(path: Path, archs: Sequence[Arch], table: BenchmarkTable, metrics: Sequence[str]) -> None:
    """A TSV of the samples in order: arch string, then each metric's true value."""
    lines = ["\t".join(["arch", *metrics])]
    for a in archs:
        lines.append("\t".join([table.space.format(a), *(f"{table.query(a, m):.4f}" for m in metrics)]))
    atomic_write_text(path, "\n".join(lines) + "\n")


@experiment("guided_generation", schema=GuidedGenerationConfig)
def guided_generation(cfg: DictConfig) -> dict:
    """Guided vs unguided generation scored on a benchmark table; see the module docstring."""
    start = time.perf_counter()
    space = build_space(cfg)
    table = load_benchmark(plain(cfg.benchmark), space)
    metric = table.check_metric(cfg.benchmark.metric)
    primary = GuideSpec(**plain(cfg.guidance))
    extra = [GuideSpec(**g) for g in plain(cfg.extra_guides)]
    for i, e in enumerate(extra):
        table.check_metric(e.target, f"extra_guides[{i}].metric")
    targets = list(dict.fromkeys([metric, *(e.target for e in extra)]))
    seed, n = cfg.seed, cfg.n
    labeled, heldout = table.split(cfg.n_labeled, cfg.n_heldout, seed)

    prior = load_prior(cfg.prior.path, space)
    t0 = time.perf_counter()
    options = PredictorOptions(**plain(cfg.predictor)).settings()
    sources = load_sources(plain(cfg.source), space, table, metric, seed)
    archs, y = with_sources([table.archs[i] for i in labeled], {k: table.values(k)[labeled] for k in targets}, sources)
    predictor = fit_predictor(space, archs, y, prior.sde.config(), targets=list(y), seed=seed,
                              trainer=trainer_settings(cfg), **options)
    fit_s = time.perf_counter() - t0

    held_archs = [table.archs[i] for i in heldout]
    results: dict[str, Any] = {"n": n, "n_labeled": len(labeled), "n_source": n_source_rows(sources),
                               "predictor_fit_s": fit_s}
    results["predictor_spearman"] = predictor_spearman(predictor, space, held_archs, table.values(metric)[heldout], metric, 0.0, seed)
    for t in SPEARMAN_TIMES:
        results[f"predictor_spearman_t{t}"] = predictor_spearman(
            predictor, space, held_archs, table.values(metric)[heldout], metric, t, seed
        )
    for e in extra:
        results[f"{e.target}_predictor_spearman"] = predictor_spearman(
            predictor, space, held_archs, table.values(e.target)[heldout], e.target, 0.0, seed
        )

    settings = SamplerSettings.pick(cfg)
    guides = [primary.build(predictor, metric), *(e.build(predictor) for e in extra)]
    guided_sampler = build_sampler(prior, settings, guides, progress=True)
    _, guided, guided_s = timed_sample(guided_sampler, n, seed)
    _, unguided, unguided_s = timed_sample(build_sampler(prior, settings, progress=True), n, seed)
    results["guidance_unit"] = guides[0].unit  # calibrated by the sampler (1.0 with scale=absolute)
    results["guidance_weight_factor"] = guided_sampler.weight_factor  # < 1: the collapse guard weakened the guides

    higher = primary.direction != "min"
    for prefix, archs in (("", guided), ("unguided_", unguided)):
        scores = {**sample_scores(archs, table, metric, higher), **constraint_scores(archs, table, metric, extra)}
        results.update({prefix + k: v for k, v in scores.items()})
    shown = list(dict.fromkeys([metric, *(e.target for e in extra)]))
    write_samples(run_dir() / "guided.txt", guided, table, shown)
    write_samples(run_dir() / "unguided.txt", unguided, table, shown)
    results.update(
        guided_sample_s=guided_s,
        unguided_sample_s=unguided_s,
        guided_archs_per_s=n / guided_s if guided_s > 0 else math.nan,
        metric=metric,
        wall_s=time.perf_counter() - start,
    )
    return results


__all__ = ["GuidedGenerationConfig", "guided_generation", "write_samples"]
