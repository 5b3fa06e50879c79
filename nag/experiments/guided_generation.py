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

The helpers below (table loading, labeled split, predictor fit, guide building, scoring) are
what ``benchmarks/guidance.py`` and ``benchmarks/guided_vs_filter.py`` use too.
"""
from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from nag.tables.table import BenchmarkTable
from nag.diffusion.guidance import DEFAULT_WEIGHT, BaseGuide, DiversityGuide, Guide, GuidedSampler, parse_constraint
from nag.errors import ConfigError, MissingDataError
from nag.experiments import build_space, call_with_config, experiment, plain, positive_int, run_dir
from nag.io import atomic_write_text
from nag.metrics import generation_metrics
from nag.search.sources import Source, load_sources, n_source_rows
from nag.spaces.base import Arch, SearchSpace

TOP_FRACS = {"top5": 0.05, "top1": 0.01}
SPEARMAN_TIMES = (0.1, 0.5)
GUIDANCE_KEYS = ("weight", "direction", "schedule", "scale", "max_norm_ratio", "diversity")
EXTRA_GUIDE_KEYS = ("metric", "weight", "direction", "target", "schedule", "constraint", "sharpness", "scale")


# ----- inputs --------------------------------------------------------------------------------
def load_table(benchmark: Mapping[str, Any] | None, space: SearchSpace) -> BenchmarkTable:
    """The table at ``benchmark.path``; MissingDataError when the path is unset or absent."""
    path = (benchmark or {}).get("path")
    if not path:
        raise MissingDataError(
            "this experiment scores samples on a benchmark table, but benchmark.path is not set; "
            "pass benchmark.path=/data/nb201/nb201.csv (format: docs/benchmark_tables.md)"
        )
    return BenchmarkTable.from_csv(Path(str(path)).expanduser(), space)


def check_metric(table: BenchmarkTable, metric: str, what: str) -> str:
    """``metric`` if the table has it; otherwise a ConfigError listing the table's metrics."""
    if metric not in table.metrics:
        raise ConfigError(f"{what}={metric!r} is not a column of {table.source}; its metrics are {table.metrics}")
    return metric


def split_labeled(table: BenchmarkTable, n_labeled: int, n_heldout: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of ``n_labeled`` labeled archs and of up to ``n_heldout`` other archs (seeded)."""
    if n_labeled >= len(table):
        raise ConfigError(f"n_labeled={n_labeled} must be smaller than the table's {len(table)} archs")
    order = np.random.default_rng(seed).permutation(len(table))
    return order[:n_labeled], order[n_labeled : n_labeled + n_heldout]


@dataclass(frozen=True)
class ExtraGuide:
    """One more objective: guide by predictor column ``metric`` (see ``Guide``)."""

    metric: str
    weight: float = DEFAULT_WEIGHT
    direction: str | None = "min"
    target: float | None = None
    schedule: str = "constant"
    constraint: tuple[str, float] | None = None
    sharpness: float = 10.0
    scale: str = "standardized"

    @classmethod
    def from_config(cls, raw: Mapping[str, Any], i: int) -> ExtraGuide:
        unknown = sorted(set(raw) - set(EXTRA_GUIDE_KEYS))
        if unknown or "metric" not in raw:
            raise ConfigError(
                f"extra_guides[{i}] has unknown keys {unknown} or no 'metric'; accepted keys: {list(EXTRA_GUIDE_KEYS)}, "
                f"e.g. {{metric: params_M_cifar10, direction: min, weight: 1.0, constraint: '<=0.5'}}"
            )
        kw = dict(raw)
        kw["constraint"] = parse_constraint(kw.get("constraint"))
        return cls(**kw)

    def satisfied(self, values: np.ndarray) -> np.ndarray:
        """Which ``values`` meet the constraint (all, when there is none). [n] bool."""
        if self.constraint is None:
            return np.ones(len(values), dtype=bool)
        op, c = self.constraint
        return values <= c if op == "<=" else values >= c


def extra_guides_from(cfg_value: Any) -> list[ExtraGuide]:
    """``extra_guides`` of the config (a list of mappings) as ExtraGuide values."""
    raw = plain(cfg_value) or []
    if not isinstance(raw, list) or not all(isinstance(g, Mapping) for g in raw):
        raise ConfigError(f"extra_guides must be a list of mappings, e.g. [{{metric: params_M_cifar10}}]; got {raw!r}")
    return [ExtraGuide.from_config(g, i) for i, g in enumerate(raw)]


# ----- predictor -----------------------------------------------------------------------------
def fit_guidance_predictor(
    space: SearchSpace,
    table: BenchmarkTable,
    rows: np.ndarray,
    targets: Sequence[str],
    sde_config: Mapping[str, Any],
    options: Mapping[str, Any] | None = None,
    seed: int = 0,
    sources: Sequence[Source] = (),
) -> Any:
    """A noise-aware predictor of ``targets`` fit on table ``rows`` under ``sde_config``.

    ``options`` are further ``fit_predictor`` keyword arguments (steps, ensemble, net_config, ...).
    With ``sources`` it also predicts ``source_target(s)`` for each, learned on that source's own
    rows (missing values are masked), so the shared network carries what the sources know.
    """
    from nag.modules.predictor import fit_predictor

    import inspect

    archs = [table.archs[i] for i in rows]
    y = {k: table.values(k)[rows] for k in targets}
    if sources:
        archs, y = with_sources(archs, y, sources)
        targets = [*targets, *(source_target(src) for src in sources)]
    params = {k: v for k, v in dict(options or {}).items() if v is not None}
    accepted = set(inspect.signature(fit_predictor).parameters) - _FIT_FIXED
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise ConfigError(f"predictor options {unknown} are not fit_predictor options; accepted: {sorted(accepted)}")
    return fit_predictor(space, archs, y, sde_config, targets=list(targets), seed=seed, **params)


_FIT_FIXED = {"space", "archs", "y", "sde_config", "targets", "seed"}  # set by the experiment itself


def source_target(source: Source) -> str:
    """The predictor's column for ``source`` (prefixed, so it never clashes with a table metric)."""
    return f"source:{source.name}"


def with_sources(
    archs: Sequence[Arch], y: Mapping[str, np.ndarray], sources: Sequence[Source]
) -> tuple[list[Arch], dict[str, np.ndarray]]:
    """The union of ``archs`` and the sources' archs, each column NaN where its value is unknown."""
    out_archs = list(archs)
    position = {a: i for i, a in enumerate(out_archs)}
    for src in sources:
        for a in src.archs:
            if a not in position:
                position[a] = len(out_archs)
                out_archs.append(a)
    n = len(out_archs)
    out = {k: np.concatenate([np.asarray(v, dtype=float), np.full(n - len(archs), np.nan)]) for k, v in y.items()}
    for src in sources:
        col = np.full(n, np.nan)
        col[[position[a] for a in src.archs]] = src.values
        out[source_target(src)] = col
    return out_archs, out


def predictor_spearman(
    predictor: Any,
    space: SearchSpace,
    table: BenchmarkTable,
    rows: np.ndarray,
    target: str,
    t: float = 0.0,
    seed: int = 0,
) -> float:
    """Spearman rank correlation of the predicted ``target`` with the table on ``rows``.

    At ``t > 0`` each arch's state is perturbed once by the predictor's SDE (seeded).
    """
    from scipy.stats import spearmanr

    from nag.diffusion.sde import build_sde, perturb
    from nag.modules.arch_data import to_state

    x = to_state(space, [table.archs[i] for i in rows])
    if t > 0:
        tt = torch.full((x.shape[0],), float(t))
        x = perturb(build_sde(predictor.sde_config), x, tt, generator=torch.Generator().manual_seed(seed))[0]
    with torch.no_grad():
        pred = predictor(x, float(t))[:, predictor.target_index(target)].numpy()
    return float(spearmanr(pred, table.values(target)[rows]).statistic)


# ----- guides and sampling ---------------------------------------------------------------------
def build_guides(
    predictor: Any,
    metric: str,
    guidance: Mapping[str, Any],
    extra: Sequence[ExtraGuide] = (),
) -> list[BaseGuide]:
    """The primary Guide on ``metric``, one Guide per extra objective, and a DiversityGuide if asked.

    ``guidance`` keys: weight, direction, schedule, scale (standardized | absolute; see
    ``nag.diffusion.guidance.Guide``), and ``diversity``: DiversityGuide keyword arguments (weight 0
    or no weight = no DiversityGuide).
    """
    g = dict(guidance)
    unknown = sorted(set(g) - set(GUIDANCE_KEYS))
    if unknown:
        raise ConfigError(f"unknown guidance option(s) {unknown}; accepted: {list(GUIDANCE_KEYS)}")
    guides: list[BaseGuide] = [
        Guide(
            predictor,
            weight=float(g.get("weight", DEFAULT_WEIGHT)),
            direction=g.get("direction", "max"),
            target_index=metric,
            schedule=g.get("schedule", "constant"),
            scale=g.get("scale", "standardized"),
        )
    ]
    for e in extra:
        guides.append(
            Guide(
                predictor,
                weight=e.weight,
                direction=e.direction,
                target=e.target,
                target_index=e.metric,
                schedule=e.schedule,
                constraint=e.constraint,
                sharpness=e.sharpness,
                scale=e.scale,
            )
        )
    diversity = dict(g.get("diversity") or {})
    if float(diversity.get("weight") or 0.0) > 0:
        guides.append(call_with_config("DiversityGuide", "diversity", DiversityGuide, diversity))
    return guides


def load_prior_for(space: SearchSpace, path: str | None) -> Any:
    """The prior at ``path``, or the one nag ships for ``space`` when ``path`` is None."""
    from nag.diffusion.prior import default_prior_path, load_prior

    return load_prior(Path(path).expanduser() if path else default_prior_path(space.name), space=space)


def timed_sample(sampler: GuidedSampler, n: int, seed: int) -> tuple[list[Arch], float]:
    """``n`` decoded archs and the seconds it took."""
    start = time.perf_counter()
    archs = sampler.sample(n, seed=seed)
    return archs, time.perf_counter() - start


# ----- scoring ---------------------------------------------------------------------------------
def sample_scores(
    archs: Sequence[Arch],
    table: BenchmarkTable,
    metric: str,
    higher_is_better: bool = True,
    top_fracs: Mapping[str, float] = TOP_FRACS,
) -> dict[str, float]:
    """True-value summary of samples: ``frac_<top>``, ``mean_true``, ``max_true``, ``uniqueness``."""
    values = np.array([table.query(a, metric) for a in archs], dtype=np.float64)
    out: dict[str, float] = {}
    for name, frac in top_fracs.items():
        thr = table.quantile_threshold(metric, frac, higher_is_better)
        hit = values >= thr if higher_is_better else values <= thr
        out[f"frac_{name}"] = float(hit.mean()) if len(values) else 0.0
    out["mean_true"] = float(values.mean()) if len(values) else math.nan
    out["max_true"] = float(values.max() if higher_is_better else values.min()) if len(values) else math.nan
    out["uniqueness"] = generation_metrics(list(archs), table.space)["uniqueness"]
    return out


def constraint_scores(
    archs: Sequence[Arch], table: BenchmarkTable, metric: str, extra: Sequence[ExtraGuide]
) -> dict[str, float]:
    """Per extra objective ``<m>_frac_satisfied`` and ``<m>_mean_true``; with constraints also
    ``frac_feasible``, ``mean_true_feasible`` and ``frac_top5_feasible`` (see the module doc)."""
    out: dict[str, float] = {}
    feasible = np.ones(len(archs), dtype=bool)
    table_feasible = np.ones(len(table), dtype=bool)
    for e in extra:
        values = np.array([table.query(a, e.metric) for a in archs], dtype=np.float64)
        ok = e.satisfied(values)
        out[f"{e.metric}_frac_satisfied"] = float(ok.mean()) if len(archs) else 0.0
        out[f"{e.metric}_mean_true"] = float(values.mean()) if len(archs) else math.nan
        feasible &= ok
        table_feasible &= e.satisfied(table.values(e.metric))
    if any(e.constraint is not None for e in extra):
        primary = np.array([table.query(a, metric) for a in archs], dtype=np.float64)
        out["frac_feasible"] = float(feasible.mean()) if len(archs) else 0.0
        out["mean_true_feasible"] = float(primary[feasible].mean()) if feasible.any() else math.nan
        feasible_values = np.sort(table.values(metric)[table_feasible])
        if len(feasible_values):
            thr = feasible_values[-max(1, math.ceil(0.05 * len(feasible_values) - 1e-9))]
            out["frac_top5_feasible"] = float((feasible & (primary >= thr)).mean()) if len(archs) else 0.0
            out["table_best_feasible"] = float(feasible_values[-1])
    return out


def write_samples(path: Path, archs: Sequence[Arch], table: BenchmarkTable, metrics: Sequence[str]) -> None:
    """A TSV of the samples in order: arch string, then each metric's true value."""
    lines = ["\t".join(["arch", *metrics])]
    for a in archs:
        lines.append("\t".join([table.space.format(a), *(f"{table.query(a, m):.4f}" for m in metrics)]))
    atomic_write_text(path, "\n".join(lines) + "\n")


# ----- the experiment --------------------------------------------------------------------------
@experiment("guided_generation")
def guided_generation(cfg: DictConfig) -> dict:
    """Guided vs unguided generation scored on a benchmark table; see the module docstring."""
    start = time.perf_counter()
    space = build_space(cfg)
    benchmark = plain(cfg.get("benchmark")) or {}
    table = load_table(benchmark, space)
    metric = check_metric(table, str(benchmark.get("metric") or ""), "benchmark.metric")
    extra = extra_guides_from(cfg.get("extra_guides"))
    for i, e in enumerate(extra):
        check_metric(table, e.metric, f"extra_guides[{i}].metric")
    targets = [metric, *(e.metric for e in extra if e.metric != metric)]
    seed = int(cfg.seed)
    n = positive_int(cfg, "n")
    labeled, heldout = split_labeled(table, positive_int(cfg, "n_labeled"), positive_int(cfg, "n_heldout"), seed)
    sources = load_sources(plain(cfg.get("source")), space, table, metric, seed)

    prior = load_prior_for(space, (plain(cfg.get("prior")) or {}).get("path"))
    t0 = time.perf_counter()
    predictor = fit_guidance_predictor(space, table, labeled, targets, prior.sde.config(), plain(cfg.get("predictor")),
                                       seed, sources)
    fit_s = time.perf_counter() - t0

    results: dict[str, Any] = {"n": n, "n_labeled": len(labeled), "n_source": n_source_rows(sources),
                               "predictor_fit_s": fit_s}
    results["predictor_spearman"] = predictor_spearman(predictor, space, table, heldout, metric, 0.0, seed)
    for t in SPEARMAN_TIMES:
        results[f"predictor_spearman_t{t}"] = predictor_spearman(predictor, space, table, heldout, metric, t, seed)
    for e in extra:
        results[f"{e.metric}_predictor_spearman"] = predictor_spearman(predictor, space, table, heldout, e.metric, 0.0, seed)

    guidance = plain(cfg.get("guidance")) or {}
    solver = plain(cfg.get("solver"))
    batch_size = positive_int(cfg, "batch_size")
    guides = build_guides(predictor, metric, guidance, extra)
    guided_sampler = GuidedSampler(
        prior,
        guides,
        solver=solver,
        batch_size=batch_size,
        max_norm_ratio=guidance.get("max_norm_ratio"),
        progress=True,
    )
    plain_sampler = GuidedSampler(prior, (), solver=solver, batch_size=batch_size, progress=True)
    results["guidance_unit"] = guides[0].unit  # calibrated by GuidedSampler (1.0 with scale=absolute)
    higher = guidance.get("direction", "max") != "min"
    guided, guided_s = timed_sample(guided_sampler, n, seed)
    unguided, unguided_s = timed_sample(plain_sampler, n, seed)

    for prefix, archs in (("", guided), ("unguided_", unguided)):
        scores = {**sample_scores(archs, table, metric, higher), **constraint_scores(archs, table, metric, extra)}
        results.update({prefix + k: v for k, v in scores.items()})
    shown = list(dict.fromkeys([metric, *(e.metric for e in extra)]))
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


__all__ = [
    "ExtraGuide",
    "build_guides",
    "constraint_scores",
    "extra_guides_from",
    "fit_guidance_predictor",
    "guided_generation",
    "load_prior_for",
    "load_table",
    "predictor_spearman",
    "sample_scores",
    "source_target",
    "split_labeled",
    "timed_sample",
    "with_sources",
    "write_samples",
]
