"""``experiment=pareto_generation``: multi-objective guided generation and its Pareto front, any space.

``guides`` is a list; each entry guides by one output of a saved predictor (POMONAG-style: the
guided score is the prior's plus the sum of every guide's term)::

    guides:
      - {predictor: mbv3_latency_cpu, target: flops_M, direction: max, weight: 0.05}
      - {predictor: mbv3_latency_cpu, target: latency_ms, direction: null, constraint: "<=6.0", weight: 1.0}

``predictor`` is a file written by ``experiment=fit_cost_predictor`` (or any saved
``nag.modules.predictor.Predictor``), or the name of one nag ships (``nag/assets/predictors``).
The other keys are those of ``nag.diffusion.guidance.Guide`` (``goal`` is its ``target`` value
for ``direction: target``).

The run draws ``n`` guided and ``n_unguided`` unguided samples from the prior (``prior.path``,
default: the shipped one) with the same solver and seed, predicts every guide's target for each
(clean, t = 0), and measures the ``measure`` metrics for real (``nag.evaluation.measure.COST_METRICS``: CPU
latency, params, FLOPs; guided and unguided archs interleaved so that machine load hits both
alike; resumable ``costs.jsonl``; latencies on the scale of the guides' cost predictors, see
``nag.evaluation.latency.timing_like``). The front is computed over ``front`` (a list of
``{column, direction}``; null = one axis per guide: its measured metric when measured, else its
prediction, with the guide's direction, or the side its constraint bounds).

Files: ``samples.csv`` (every sample: set, arch, predictions ``pred_<target>``, measured
metrics, ``on_front``), ``pareto_front.csv`` (the non-dominated samples, sorted by the first
axis) and ``pareto.png`` (the first two axes; guided, unguided, the front, constraint bounds).
Results: ``n``, ``n_unguided``, ``uniqueness``, per axis ``<column>_median`` and
``unguided_<column>_median``, per constrained guide ``<column>_frac_satisfied`` (and the
``unguided_`` twin), ``frac_feasible``, ``front_size``, ``front_guided_frac``, for two axes
``hypervolume`` and ``unguided_hypervolume`` (of the samples that meet every constraint, w.r.t.
the worst value of each axis over all samples), and ``guided_sample_s``, ``measure_s``, ``wall_s``.
"""
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from omegaconf import DictConfig
from pydantic import Field

from nag.diffusion.guidance import GuideSpec
from nag.diffusion.prior import load_prior
from nag.diffusion.sampling import SamplerSettings, build_sampler
from nag.errors import ConfigError
from nag.evaluation.latency import Timing, timing_like
from nag.evaluation.measure import check_metrics, interleave, measure_costs
from nag.experiments import build_space, experiment, plain, run_dir
from nag.experiments.config import NonNegativeInt, PositiveInt, SamplingConfig
from nag.io import atomic_write_csv, atomic_write_png
from nag.metrics import generation_metrics, hypervolume_2d, pareto_mask
from nag.modules.cost_predictor import cost_predictor_info, load_cost_predictor
from nag.schema import Settings
from nag.spaces.base import Arch, SearchSpace

OBJECTIVE_DIRECTIONS = ("min", "max")


# ----- config ----------------------------------------------------------------------------------
class PredictorGuide(GuideSpec):
    """One entry of ``guides``: a GuideSpec on column ``target`` of the predictor saved at ``predictor``."""

    predictor: str
    target: str


class Axis(Settings):
    """One objective of the front: a column of samples.csv and whether lower or higher is better."""

    column: str
    direction: Literal["min", "max"]

    def signed(self, values: np.ndarray) -> np.ndarray:
        """Values turned into costs (lower is better)."""
        return values if self.direction == "min" else -values


class ParetoGenerationConfig(SamplingConfig):
    guides: Annotated[list[PredictorGuide], Field(min_length=1)]
    n: PositiveInt
    n_unguided: NonNegativeInt
    measure: list[str]
    timing: Timing
    front: list[Axis] | None


def guide_specs(value: Any) -> list[PredictorGuide]:
    """``guides`` of the config (a non-empty list of mappings) as PredictorGuides."""
    raw = plain(value) or []
    if not raw or not isinstance(raw, list) or not all(isinstance(g, Mapping) for g in raw):
        raise ConfigError(
            f"guides must be a non-empty list of mappings, e.g. [{{predictor: mbv3_latency_cpu, target: latency_ms, "
            f"direction: min}}]; got {raw!r}"
        )
    return [PredictorGuide(**g) for g in raw]


def prediction_columns(specs: Sequence[PredictorGuide]) -> list[str]:
    """``pred_<target>`` per guide; ``pred_<target>_<i>`` where two guides' predictors share a target name."""
    owners: dict[str, set[str]] = {}
    for s in specs:
        owners.setdefault(s.target, set()).add(s.predictor)
    return [f"pred_{s.target}" if len(owners[s.target]) == 1 else f"pred_{s.target}_{i}" for i, s in enumerate(specs)]


def front_axes(raw: Any, specs: Sequence[PredictorGuide], pred_cols: Sequence[str], measured: Sequence[str]) -> list[Axis]:
    """``front`` of the config, or one axis per guide (measured column when measured, else predicted)."""
    raw = plain(raw)
    if raw is None:
        axes: dict[str, Axis] = {}
        for spec, col in zip(specs, pred_cols):
            if spec.sense is not None:
                column = spec.target if spec.target in measured else col
                axes.setdefault(column, Axis(column=column, direction=spec.sense))
        return list(axes.values())
    out = [a if isinstance(a, Axis) else Axis(**a) for a in raw]
    known = set(pred_cols) | set(measured)
    for a in out:
        if a.column not in known:
            raise ConfigError(f"front axis {a.column!r}: the column must be one of {sorted(known)}")
    return out


# ----- outputs -----------------------------------------------------------------------------------
def plot_front(
    path: Path, rows: Sequence[Mapping[str, Any]], axes: Sequence[Axis], bounds: Mapping[str, float], title: str
) -> None:
    """Scatter of the first two axes: unguided (grey), guided (blue), the front (red); atomic PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ax_x, ax_y = axes[0], axes[1]
    fig = Figure(figsize=(6.4, 4.8), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name, color, size in (("unguided", "0.6", 10), ("guided", "tab:blue", 14)):
        pts = [(r[ax_x.column], r[ax_y.column]) for r in rows if r["set"] == name]
        if pts:
            x, y = zip(*pts)
            ax.scatter(x, y, s=size, c=color, alpha=0.7, linewidths=0, label=f"{name} ({len(pts)})")
    front = sorted((r[ax_x.column], r[ax_y.column]) for r in rows if r["on_front"])
    if front:
        fx, fy = zip(*front)
        ax.plot(fx, fy, "o-", c="tab:red", ms=4, lw=1.2, drawstyle="steps-post" if ax_x.direction == "min" else "steps-pre",
                label=f"Pareto front ({len(front)})")
    for column, value in bounds.items():
        if column == ax_x.column:
            ax.axvline(value, ls="--", c="k", lw=0.8, label=f"{column} bound {value:g}")
        elif column == ax_y.column:
            ax.axhline(value, ls="--", c="k", lw=0.8, label=f"{column} bound {value:g}")
    ax.set_xlabel(f"{ax_x.column} ({ax_x.direction})")
    ax.set_ylabel(f"{ax_y.column} ({ax_y.direction})")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    atomic_write_png(path, fig)


# ----- the experiment ------------------------------------------------------------------------------
def predict_columns(
    archs: Sequence[Arch], specs: Sequence[PredictorGuide], pred_cols: Sequence[str], predictors: Mapping[str, Any]
) -> dict[str, np.ndarray]:
    """Clean (t = 0) prediction of every guide's target for ``archs``: ``{pred column: [n]}``."""
    out = {}
    for spec, col in zip(specs, pred_cols):
        mean, _ = predictors[spec.predictor].predict_archs(list(archs), targets=[spec.target])
        out[col] = mean[:, 0].numpy().astype(np.float64)
    return out


@experiment("pareto_generation", schema=ParetoGenerationConfig)
def pareto_generation(cfg: DictConfig) -> dict[str, Any]:
    """Guided + unguided samples, predicted and measured objectives, Pareto front; see the module docstring."""
    start = time.perf_counter()
    out_dir = run_dir()
    space: SearchSpace = build_space(cfg)
    specs = guide_specs(cfg.get("guides"))
    measured = check_metrics(plain(cfg.get("measure")) or []) if plain(cfg.get("measure")) else []
    pred_cols = prediction_columns(specs)
    axes = front_axes(cfg.get("front"), specs, pred_cols, measured)
    if not axes:
        raise ConfigError("no front axis: give a guide a direction (min/max) or a constraint, or set front: [{column, direction}]")
    n = cfg.n
    n_unguided = cfg.n_unguided
    seed = int(cfg.seed)

    prior = load_prior(cfg.prior.path, space)
    predictors = {p: load_cost_predictor(p, space) for p in dict.fromkeys(s.predictor for s in specs)}
    guides = [s.build(predictors[s.predictor]) for s in specs]
    settings = SamplerSettings.pick(cfg)
    t0 = time.perf_counter()
    guided_sampler = build_sampler(prior, settings, guides)
    guided = guided_sampler.sample(n, seed=seed)
    guided_s = time.perf_counter() - t0
    unguided = build_sampler(prior, settings).sample(n_unguided, seed=seed) if n_unguided else []

    rows: list[dict[str, Any]] = [{"set": "guided", "arch": a} for a in guided] + [
        {"set": "unguided", "arch": a} for a in unguided
    ]
    for col, values in predict_columns([r["arch"] for r in rows], specs, pred_cols, predictors).items():
        for r, v in zip(rows, values):
            r[col] = float(v)
    t0 = time.perf_counter()
    if measured:
        timing = Timing(**plain(cfg.timing))
        timing = timing_like(timing, [cost_predictor_info(p) for p in predictors])  # the predictors' ms scale
        costs = measure_costs(
            space, interleave(guided, unguided), out_dir / "costs.jsonl", measured, timing,
            context={"space": plain(cfg.space)},
        )
        by_arch = {c["arch"]: c for c in costs}
        for r in rows:
            r.update({m: float(by_arch[space.format(r["arch"])][m]) for m in measured})
    measure_s = time.perf_counter() - t0

    costs_matrix = np.stack([a.signed(np.array([r[a.column] for r in rows])) for a in axes], axis=1)
    on_front = pareto_mask(costs_matrix)
    for r, f in zip(rows, on_front):
        r["on_front"] = bool(f)
        r["arch"] = space.format(r["arch"])

    is_guided = np.array([r["set"] == "guided" for r in rows])
    results: dict[str, Any] = {"n": n, "n_unguided": n_unguided}
    results["uniqueness"] = generation_metrics(guided, space)["uniqueness"]
    results["guidance_weight_factor"] = guided_sampler.weight_factor  # < 1: the collapse guard weakened the guides
    for a in axes:
        values = np.array([r[a.column] for r in rows])
        results[f"{a.column}_median"] = float(np.median(values[is_guided]))
        if n_unguided:
            results[f"unguided_{a.column}_median"] = float(np.median(values[~is_guided]))
    bounds: dict[str, float] = {}
    feasible = np.ones(len(rows), dtype=bool)
    for spec, col in zip(specs, pred_cols):
        if spec.bound is None:
            continue
        op, c = spec.bound
        column = spec.target if spec.target in measured else col
        values = np.array([r[column] for r in rows])
        ok = values <= c if op == "<=" else values >= c
        feasible &= ok
        bounds[column] = c
        results[f"{column}_frac_satisfied"] = float(ok[is_guided].mean())
        if n_unguided:
            results[f"unguided_{column}_frac_satisfied"] = float(ok[~is_guided].mean())
    if bounds:
        results["frac_feasible"] = float(feasible[is_guided].mean())
        if n_unguided:
            results["unguided_frac_feasible"] = float(feasible[~is_guided].mean())
    results["front_size"] = int(on_front.sum())
    results["front_guided_frac"] = float(is_guided[on_front].mean())
    if len(axes) == 2:  # of the feasible samples, w.r.t. the worst value of each axis over all samples
        ref = costs_matrix.max(0)
        results["hypervolume"] = hypervolume_2d(costs_matrix[is_guided & feasible], ref)
        if n_unguided:
            results["unguided_hypervolume"] = hypervolume_2d(costs_matrix[~is_guided & feasible], ref)

    columns = ["set", "arch", *pred_cols, *measured, "on_front"]
    atomic_write_csv(out_dir / "samples.csv", rows, columns)
    first = axes[0]
    front_rows = sorted((r for r in rows if r["on_front"]), key=lambda r: r[first.column] * (1 if first.direction == "min" else -1))
    atomic_write_csv(out_dir / "pareto_front.csv", front_rows, columns)
    if len(axes) >= 2:
        title = f"{space.name}: " + " + ".join(f"{s.target} ({s.direction or ''}{'' if s.bound is None else ' ' + s.bound[0] + format(s.bound[1], 'g')})" for s in specs)
        plot_front(out_dir / "pareto.png", rows, axes, bounds, title)
    results.update(guided_sample_s=guided_s, measure_s=measure_s, wall_s=time.perf_counter() - start)
    return results


__all__ = [
    "Axis",
    "ParetoGenerationConfig",
    "PredictorGuide",
    "front_axes",
    "guide_specs",
    "pareto_generation",
    "plot_front",
    "predict_columns",
    "prediction_columns",
]
