"""Predictor guidance: wrap a prior's score with ``sum_i w_i(t) grad_x log p_i(y_i | x_t)``.

A guide turns a predictor ``(x [B, N, V], t [B]) -> mean [B] or [B, K]`` into an objective
``[B]`` whose gradient is added to the score; solvers only ever see the wrapped ``score_fn``.
``GuidedSampler`` composes any prior with any guides and any solver, after checking that every
predictor was trained under the prior's SDE and on the prior's space.

Units: by default (``scale="standardized"``) a ``Guide`` divides the prediction by its *unit*,
the spread of the values the guide prefers (the std of the better half: the upper half for
"max", the lower half for "min"). ``GuidedSampler`` measures it on the predictor's own
predictions for ``CALIBRATION_ARCHS`` archs drawn uniformly from the space, at every noise level
(``CALIBRATION_TIMES``, the archs perturbed by the prior's SDE), so one weight means the same for
accuracies in %, latencies in ms or params in M, at every step (docs/guidance.md). The better
half, not the whole spread: accuracy columns have a tail of broken archs (NB201: ~10%) that
would otherwise set the unit. Per noise level: a noise-aware predictor's outputs shrink toward
their mean as noise grows, and by how much depends on the metric (NB201 at t = 0.7: accuracies
keep ~0.9 of their clean spread, latencies ~0.5); one clean unit would leave such a metric
under-guided early in sampling. ``scale="absolute"`` keeps the weight on the raw output.
"""
from __future__ import annotations

import math
import re
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, ClassVar, Literal

import torch
from pydantic import AliasChoices, ConfigDict, Field, field_validator, model_validator
from torch import Tensor
from torch.nn import functional as F

from nag.diffusion.sde import SDE, ScoreFn, assert_same_sde, bcast, build_sde
from nag.diffusion.solvers import Solver, get_solver
from nag.errors import ConfigError, IncompatibleComponentsError
from nag.schema import Settings, checked

Schedule = Callable[[Tensor], Tensor]

# ----- weight schedules: factor in [0, 1] of u = t / T (1 = pure noise) -------------------------
SCHEDULES: dict[str, Callable[[Tensor], Tensor]] = {
    "constant": lambda u: torch.ones_like(u),
    "linear": lambda u: 1.0 - u,  # off at T, full at t = 0: predictors are least informative at T
    "cosine": lambda u: torch.cos(0.5 * math.pi * u),
    "early": lambda u: u,  # full at T, off at t = 0: steer the coarse structure, let the prior settle details
}

# ----- objectives of a predicted mean ``m [B]``: log-probability up to a constant --------------
DIRECTIONS: dict[str, Callable[[Tensor, float | None], Tensor]] = {
    "max": lambda m, target: m,
    "min": lambda m, target: -m,
    "target": lambda m, target: -0.5 * (m - target).pow(2),
}
# how far a mean is past a bound c (> 0: violated)
CONSTRAINT_EXCESS: dict[str, Callable[[Tensor, float], Tensor]] = {
    "<=": lambda m, c: m - c,
    ">=": lambda m, c: c - m,
}

SCALES = ("standardized", "absolute")
# The default guidance weight, in units of the guide's spread (scale="standardized"). Chosen on
# NB201 columns the must-show columns are not (docs/guidance.md, "The default weight").
DEFAULT_WEIGHT = 2.5
CALIBRATION_ARCHS = 512  # uniform archs on which GuidedSampler measures a standardized guide's unit
CALIBRATION_SEED = 0
CALIBRATION_TIMES = 11  # noise levels t = 0, T/10, ..., T at which it is measured (linear in between)
# Collapse guard (the experiments' default, GuidedSampler's min_uniqueness): when fewer than
# MIN_UNIQUENESS of a draw's archs are distinct, the objective guides' weights are multiplied by
# RELAX_FACTOR and the draw is repeated (same seed), at most MAX_RELAXATIONS times, then one
# bisection step refines the factor (GuidedSampler.sample_tensor). Chosen on the
# tuning columns and seeds of the default weight (docs/guidance.md, "The collapse guard").
MIN_UNIQUENESS = 0.65
RELAX_FACTOR = 0.9
MAX_RELAXATIONS = 5
ScheduleName = Literal[tuple(SCHEDULES)]  # type: ignore[misc]
Direction = Literal[tuple(DIRECTIONS)]  # type: ignore[misc]
Scale = Literal[SCALES]  # type: ignore[valid-type]

_CONSTRAINT = re.compile(r"^\s*(<=|>=)\s*([-+0-9.eE]+)\s*$")


def parse_constraint(constraint: str | Sequence[Any] | None) -> tuple[str, float] | None:
    """``"<=1.0"`` or ``("<=", 1.0)`` -> ``("<=", 1.0)``; ``None`` stays ``None``."""
    if constraint is None:
        return None
    if isinstance(constraint, str):
        m = _CONSTRAINT.match(constraint)
        if not m:
            raise ConfigError(f"cannot read constraint {constraint!r}; write e.g. '<=5.0' or '>=70'")
        op, value = m.group(1), m.group(2)
    else:
        try:
            op, value = constraint
        except (TypeError, ValueError):
            raise ConfigError(f"a constraint is '<=c', '>=c' or a pair (op, c); got {constraint!r}") from None
    if op not in CONSTRAINT_EXCESS:
        raise ConfigError(f"constraint operator {op!r} is not supported; use one of {sorted(CONSTRAINT_EXCESS)}")
    try:
        return op, float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"constraint bound {value!r} is not a number") from None


def preferred_spread(values: Any, side: str | float = "upper") -> float:
    """The std of the half of ``values`` [n] a guide prefers: the unit of a standardized guide.

    ``side``: "upper" (direction max), "lower" (min), or a number (direction target: the half
    nearest to it). Falls back to the whole std, then to 1, when the half has no spread.
    """
    import numpy as np

    v = np.asarray(values, dtype=float).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 1.0
    half = max(2, (len(v) + 1) // 2)
    if side == "upper":
        best = np.sort(v)[::-1][:half]
    elif side == "lower":
        best = np.sort(v)[:half]
    else:
        best = v[np.argsort(np.abs(v - float(side)), kind="stable")[:half]]
    return float(np.std(best)) or float(np.std(v)) or 1.0


class BaseGuide(ABC):
    """Weight ``w(t) = weight * schedule(t / T)`` times the gradient of ``objective``."""

    def __init__(self, weight: float = 1.0, schedule: ScheduleName | Schedule = "constant") -> None:
        self.weight = float(weight)
        if callable(schedule):
            self._schedule, self.schedule_name = schedule, getattr(schedule, "__name__", "callable")
        else:
            self._schedule, self.schedule_name = SCHEDULES[schedule], schedule
        self._user_schedule = callable(schedule)

    def weight_at(self, t: Tensor, T: float = 1.0) -> Tensor:
        """Per-sample weight ``[B]`` at times ``t [B]``. A callable schedule gets ``t`` itself."""
        w = self._schedule(t) if self._user_schedule else self._schedule(t / T)
        return self.weight * torch.as_tensor(w, dtype=t.dtype, device=t.device).expand_as(t)

    needs_score: bool = False  # objective(x, t, score=..., sde=...) wants the prior's score

    @abstractmethod
    def objective(self, x: Tensor, t: Tensor) -> Tensor:
        """Differentiable ``[B]`` whose ``grad_x`` is this guide's direction (log-probability up to a constant)."""

    def gradient(self, x: Tensor, t: Tensor, score: Tensor, sde: SDE | None = None) -> Tensor | None:
        """``grad_x`` of the summed objective, ``[B, N, V]`` (None if it does not depend on x).

        Taken by autograd on a detached copy of ``x``; a subclass may give it in closed form.
        """
        with torch.enable_grad():
            xg = x.detach().clone().requires_grad_(True)
            obj = self.objective(xg, t, score=score, sde=sde) if self.needs_score else self.objective(xg, t)  # type: ignore[call-arg]
            if not obj.requires_grad:
                raise IncompatibleComponentsError(
                    f"{self!r}: its objective does not depend differentiably on x (is the predictor run "
                    "under torch.no_grad() or on detached inputs?). Guidance needs grad_x of the prediction."
                )
            (grad,) = torch.autograd.grad(obj.sum(), xg, allow_unused=True)
        return grad


class Guide(BaseGuide):
    """Guidance by one output of a predictor.

    Args:
        predictor: ``(x [B, N, V], t [B]) -> mean [B] or [B, K]``, differentiable in ``x``.
            Optional attributes: ``sde_config``, ``space_name`` (checked by GuidedSampler),
            ``targets`` (names of the K columns), ``predict(x, t) -> (mean, var)``.
        weight: guidance scale, in units of the guide's spread with ``scale="standardized"``
            (default ``DEFAULT_WEIGHT``); on the raw output with ``scale="absolute"`` (the paper
            uses 1e4 for NB201, with no rescaling).
        direction: "max" (+mean), "min" (-mean), "target" (``-(mean - target)^2 / 2``), or
            None for a constraint-only guide.
        target: the value sought by direction "target".
        target_index: the column (int, or a name in ``predictor.targets``) of a [B, K] output.
        schedule: "constant", "linear" (``1 - t/T``), "cosine" (``cos(pi t / 2T)``), or callable(t) -> w.
        constraint: ``("<=", c)``, ``(">=", c)`` or ``"<=c"``: adds ``-softplus(k (mean - c))`` (for
            "<="), or, when the predictor has ``predict`` (a variance), ``log P(y <= c)`` under
            ``N(mean, var)``.
        sharpness: ``k`` of the softplus penalty, per unit (standardized) or per unit of the
            predictor's output (absolute).
        scale: "standardized" (the output is divided by ``unit``) or "absolute" (raw output).
        unit: the spread that one unit of the objective stands for, at every noise level; None =
            measured by ``calibrate`` (``GuidedSampler`` does it: the std of the preferred half
            of the predictor's predictions on random archs, ``preferred_spread``, per noise level).
    """

    @checked
    def __init__(
        self,
        predictor: Callable[..., Any],
        weight: float = DEFAULT_WEIGHT,
        direction: Direction | None = "max",
        target: float | None = None,
        target_index: int | str = 0,
        schedule: ScheduleName | Schedule = "constant",
        constraint: str | Sequence[Any] | None = None,
        sharpness: Annotated[float, Field(gt=0)] = 10.0,
        scale: Scale = "standardized",
        unit: Annotated[float, Field(gt=0)] | None = None,
    ) -> None:
        super().__init__(weight, schedule)
        if unit is not None and scale != "standardized":
            raise ConfigError(f"unit={unit!r} goes with scale='standardized' only; got scale={scale!r}")
        if direction == "target" and target is None:
            raise ConfigError("direction='target' needs a target value, e.g. Guide(p, direction='target', target=70.0)")
        self.constraint = parse_constraint(constraint)
        if direction is None and self.constraint is None:
            raise ConfigError("a guide needs a direction ('max', 'min', 'target') or a constraint")
        self.predictor = predictor
        self.direction = direction
        self.target = None if target is None else float(target)
        self.index = self._resolve_index(predictor, target_index)
        self.sharpness = float(sharpness)
        self.scale = scale
        self._unit = 1.0 if scale == "absolute" else (None if unit is None else float(unit))
        self._unit_curve: tuple[Tensor, Tensor] | None = None  # (times [G], units [G]) from calibrate(sde=...)

    @property
    def unit(self) -> float | None:
        """What one unit of the objective stands for in the predictor's output, on clean archs (None: not yet calibrated)."""
        return self._unit

    def unit_at(self, t: Tensor) -> Tensor | float:
        """The unit at noise levels ``t [B]`` (one number when it does not depend on t)."""
        if self._unit_curve is None:
            return self._unit  # type: ignore[return-value]
        t = torch.as_tensor(t)
        times, units = (c.to(t) for c in self._unit_curve)
        pos = (t.clamp(times[0], times[-1]) - times[0]) / (times[1] - times[0])
        i = pos.floor().long().clamp(max=len(times) - 2)
        frac = pos - i
        return units[i] * (1 - frac) + units[i + 1] * frac

    @property
    def side(self) -> str | float:
        """Which values this guide prefers (``preferred_spread``'s ``side``)."""
        if self.direction == "max":
            return "upper"
        if self.direction == "min":
            return "lower"
        if self.direction == "target":
            return float(self.target)  # type: ignore[arg-type]
        return "lower" if self.constraint[0] == "<=" else "upper"  # type: ignore[index]

    @torch.no_grad()
    def calibrate(self, x: Tensor, sde: SDE | None = None) -> float:
        """Set the unit from predictions on clean states ``x [R, N, V]`` (random archs); returns the clean unit.

        With ``sde``, also at ``CALIBRATION_TIMES`` noise levels (``x`` perturbed by it, seeded), so
        the objective is standardized at every step of sampling.
        """
        def spread(states: Tensor, t: float) -> float:
            mean = self._column(self.predictor(states, torch.full((states.shape[0],), t, dtype=x.dtype, device=x.device)))
            return preferred_spread(mean.detach().double().cpu().numpy(), self.side)

        self._unit = spread(x, 0.0)
        self._unit_curve = None
        if sde is not None:
            from nag.diffusion.sde import perturb

            gen = torch.Generator(device=x.device).manual_seed(CALIBRATION_SEED)
            times = torch.linspace(0.0, float(sde.T), CALIBRATION_TIMES, dtype=torch.float64)
            units = [self._unit] + [spread(perturb(sde, x, torch.full((x.shape[0],), float(t), dtype=x.dtype,
                                                                       device=x.device), gen)[0], float(t))
                                    for t in times[1:]]
            self._unit_curve = (times, torch.tensor(units, dtype=torch.float64))
        return self._unit

    @property
    def needs_calibration(self) -> bool:
        return self._unit is None

    @staticmethod
    def _resolve_index(predictor: Any, target_index: int | str) -> int:
        if isinstance(target_index, str):
            targets = list(getattr(predictor, "targets", None) or [])
            if target_index not in targets:
                raise ConfigError(f"the predictor has no target {target_index!r}; its targets are {targets or 'unnamed'}")
            return targets.index(target_index)
        return int(target_index)

    def _column(self, y: Tensor) -> Tensor:
        if y.dim() == 1:
            return y
        if not -y.shape[1] <= self.index < y.shape[1]:
            raise ConfigError(f"target_index {self.index} is out of range for a predictor with {y.shape[1]} outputs")
        return y[:, self.index]

    def objective(self, x: Tensor, t: Tensor) -> Tensor:
        var = None
        if self.constraint is not None and hasattr(self.predictor, "predict"):
            mean, var = self.predictor.predict(x, t)  # type: ignore[attr-defined]
            mean, var = self._column(mean), self._column(var)
            if not bool((var > 0).all()):  # e.g. a one-member ensemble: no variance, so the softplus penalty
                var = None
        else:
            mean = self._column(self.predictor(x, t))
        unit = self._unit
        if unit is None:
            raise ConfigError(
                f"{self!r} has scale='standardized' but no unit yet: sample through GuidedSampler (it "
                "calibrates the guide on random archs), call guide.calibrate(x), pass unit=..., or use scale='absolute'"
            )
        if self.direction is None:
            obj = torch.zeros_like(mean)
        elif self.scale == "absolute":
            obj = DIRECTIONS[self.direction](mean, self.target)
        else:
            unit = self.unit_at(t)
            obj = DIRECTIONS[self.direction](mean / unit, None if self.target is None else self.target / unit)
        if self.constraint is not None:
            obj = obj + self._constraint_logp(mean, var, self.unit_at(t))
        return obj

    def _constraint_logp(self, mean: Tensor, var: Tensor | None, unit: Tensor | float = 1.0) -> Tensor:
        op, c = self.constraint  # type: ignore[misc]
        excess = CONSTRAINT_EXCESS[op](mean, c)
        if var is None:  # the penalty's sharpness is per unit; with a variance the log-probability has no unit
            return -F.softplus(self.sharpness * (excess if isinstance(unit, float) and unit == 1.0 else excess / unit))
        return torch.special.log_ndtr(-excess / var.clamp_min(1e-12).sqrt())

    def __repr__(self) -> str:
        return (
            f"Guide(weight={self.weight}, direction={self.direction!r}, target={self.target}, "
            f"index={self.index}, schedule={self.schedule_name!r}, constraint={self.constraint}, "
            f"scale={self.scale!r}, unit={self._unit})"
        )


class GuideSpec(Settings):
    """One predictor guide as a config writes it (``guidance:``, ``extra_guides:``, ``guides:``).

    ``build(predictor)`` makes the ``Guide``. ``predictor`` names a saved predictor (a file, or the
    name of one nag ships) where an experiment loads its guides' predictors; where the experiment
    fits or loads the predictor itself it stays unset. ``target`` is the predictor's output column
    (``metric`` is accepted as another name for it); ``goal`` is the value that direction
    ``target`` seeks. The other keys are ``Guide``'s.
    """

    model_config = ConfigDict(populate_by_name=True)
    settings_name: ClassVar[str] = "guide"

    predictor: str | None = None
    target: str | int | None = Field(default=None, validation_alias=AliasChoices("target", "metric"))
    weight: float = DEFAULT_WEIGHT
    direction: Direction | None = "max"
    goal: float | None = None
    schedule: ScheduleName = "constant"
    constraint: str | tuple[Literal["<=", ">="], float] | None = None
    sharpness: Annotated[float, Field(gt=0)] = 10.0
    scale: Scale = "standardized"
    unit: Annotated[float, Field(gt=0)] | None = None

    @field_validator("constraint")
    @classmethod
    def _readable(cls, constraint: Any) -> Any:
        parse_constraint(constraint)  # a ConfigError (a ValueError) names the accepted forms
        return constraint

    @model_validator(mode="after")
    def _complete(self) -> GuideSpec:
        if self.direction == "target" and self.goal is None:
            raise ValueError("direction 'target' needs goal: the value to steer towards, e.g. goal: 70.0")
        if self.direction is None and self.constraint is None:
            raise ValueError("a guide needs a direction (max, min, target) or a constraint")
        if self.unit is not None and self.scale != "standardized":
            raise ValueError(f"unit goes with scale: standardized only; got scale: {self.scale}")
        return self

    @property
    def bound(self) -> tuple[str, float] | None:
        """The constraint as ``(op, c)``."""
        return parse_constraint(self.constraint)

    @property
    def sense(self) -> str | None:
        """The direction of this guide's objective: its own, or the side its constraint bounds."""
        if self.direction in ("min", "max"):
            return self.direction
        if self.bound is not None:
            return "min" if self.bound[0] == "<=" else "max"
        return None

    def satisfied(self, values: Any) -> Any:
        """Which ``values`` ``[n]`` meet the constraint (all, when there is none). [n] bool."""
        import numpy as np

        values = np.asarray(values)
        if self.bound is None:
            return np.ones(len(values), dtype=bool)
        op, c = self.bound
        return values <= c if op == "<=" else values >= c

    def build(self, predictor: Callable[..., Any], target: str | int | None = None) -> Guide:
        """The Guide of this spec on ``predictor``'s column ``target`` (default: this spec's, else 0)."""
        column = target if target is not None else self.target
        return Guide(
            predictor, weight=self.weight, direction=self.direction, target=self.goal,
            target_index=column if column is not None else 0, schedule=self.schedule,
            constraint=self.bound, sharpness=self.sharpness, scale=self.scale, unit=self.unit,
        )


class DiversityGuide(BaseGuide):
    """Particle guidance (Corso et al. 2023): repel the samples of one batch from each other.

    Objective of sample i: ``-1/2 sum_{j != i} k(y_i, y_j) - sum_m k(y_i, r_m)`` with an RBF kernel
    ``k = exp(-||y_i - y_j||^2 / h^2)``; summed over the batch this is the joint potential, so each
    sample is pushed away from its batch mates (and from the remembered samples ``r_m``).

    Args:
        weight, schedule: as for ``Guide``.
        bandwidth: ``h``; None sets ``h^2 = mean(d^2) / log(B)`` over the batch's pairs at each
            evaluation (SVGD's heuristic with the mean for the median: O(B^2) instead of a sort).
        on: "denoised" compares the Tweedie estimates ``y = (x + std^2 s) / alpha`` (the score held
            fixed, so ``grad_x = grad_y / alpha``): samples heading to the same architecture are
            close in y long before they are close in x. "state" compares ``y = x_t`` itself
            (Corso et al.'s plain form; on a 30-arch toy it barely beats iid sampling).
        memory: how many earlier samples of the same ``GuidedSampler.sample`` call to keep as fixed
            repellers (clean states, [-1, 1]); this removes duplicates across batches, which
            in-batch repulsion cannot.

    Cost: a ``[B, B + memory]`` Gram matrix per score evaluation, O(B (B + memory) N V).
    """

    @checked
    def __init__(
        self,
        weight: float = 1.0,
        bandwidth: Annotated[float, Field(gt=0)] | None = None,
        schedule: ScheduleName | Schedule = "constant",
        on: Literal["denoised", "state"] = "denoised",
        memory: Annotated[int, Field(ge=0)] = 0,
    ) -> None:
        super().__init__(weight, schedule)
        self.bandwidth, self.on, self.memory = bandwidth, on, int(memory)
        self.needs_score = on == "denoised"  # (gradient() is in closed form; objective() for reference)
        self._bank: Tensor | None = None

    def reset(self) -> None:
        """Forget remembered samples (GuidedSampler calls this at the start of each sample call)."""
        self._bank = None

    def remember(self, x0: Tensor) -> None:
        """Keep the last ``memory`` clean samples ``x0 [B, N, V]`` as repellers."""
        if self.memory == 0:
            return
        flat = x0.detach().flatten(1)
        bank = flat if self._bank is None else torch.cat([self._bank, flat.to(self._bank)])
        self._bank = bank[-self.memory :]

    def _points(self, x: Tensor, t: Tensor, score: Tensor | None, sde: SDE | None) -> tuple[Tensor, Tensor]:
        """Compared points ``y [B, D]`` and ``dy/dx`` per sample ``[B]`` (1, or ``1 / alpha``)."""
        if self.on == "state":
            return x.flatten(1), torch.ones(x.shape[0], dtype=x.dtype, device=x.device)
        if score is None or sde is None:
            raise ConfigError(
                "DiversityGuide(on='denoised') needs the score and the SDE; use it through "
                "GuidedSampler or guided_score_fn(..., sde=sde)"
            )
        alpha, std = sde.marginal_coeffs(t)
        y = (x + bcast(std.pow(2), x) * score.detach()) / bcast(alpha, x)
        return y.flatten(1), 1.0 / alpha

    def _bandwidth2(self, d2: Tensor) -> Tensor:
        b = d2.shape[0]
        if self.bandwidth is not None:
            return torch.tensor(self.bandwidth**2, dtype=d2.dtype, device=d2.device)
        if b < 2:
            return torch.ones((), dtype=d2.dtype, device=d2.device)
        # mean off-diagonal distance (the diagonal is 0): O(B^2), unlike a median
        return (d2.detach().sum() / (b * (b - 1) * math.log(b))).clamp_min(1e-12)

    def objective(self, x: Tensor, t: Tensor, score: Tensor | None = None, sde: SDE | None = None) -> Tensor:
        y, _ = self._points(x, t, score, sde)
        d2 = _sq_dists(y, y)
        h2 = self._bandwidth2(d2)
        k = _rbf(d2, h2)
        obj = -0.5 * (k.sum(1) - k.diagonal())
        if self._bank is not None:
            obj = obj - _rbf(_sq_dists(y, self._bank.to(y)), h2).sum(1)
        return obj

    def gradient(self, x: Tensor, t: Tensor, score: Tensor, sde: SDE | None = None) -> Tensor:
        """Closed form of ``grad_x`` of the summed objective (no autograd graph):
        ``(2 / h^2) [sum_j k_ij (y_i - y_j) + sum_m k_im (y_i - r_m)] * dy/dx``."""
        y, dydx = self._points(x.detach(), t, score, sde)
        d2 = _sq_dists(y, y)
        h2 = self._bandwidth2(d2)
        k = _rbf(d2, h2)
        k.diagonal().zero_()
        g = k.sum(1, keepdim=True) * y - k @ y
        if self._bank is not None:
            bank = self._bank.to(y)
            kb = _rbf(_sq_dists(y, bank), h2)
            g += kb.sum(1, keepdim=True) * y - kb @ bank
        g *= (2.0 / h2) * dydx.unsqueeze(1)
        return g.view_as(x)

    def __repr__(self) -> str:
        return (
            f"DiversityGuide(weight={self.weight}, bandwidth={self.bandwidth}, on={self.on!r}, "
            f"memory={self.memory}, schedule={self.schedule_name!r})"
        )


def _sq_dists(a: Tensor, b: Tensor) -> Tensor:
    """``[A, B]`` squared distances; the matmul form keeps the gradient finite at zero distance.

    Rounding can make an entry slightly negative; the kernel does not mind, so no clamp (whose
    backward costs a full ``where`` pass).
    """
    ones_a, ones_b = a.new_ones(a.shape[0], 1), b.new_ones(b.shape[0], 1)
    left = torch.cat([a, a.pow(2).sum(1, keepdim=True), ones_a], 1)  # [a, |a|^2, 1]
    right = torch.cat([-2.0 * b, ones_b, b.pow(2).sum(1, keepdim=True)], 1)  # [-2b, 1, |b|^2]
    return left @ right.T  # one matmul, no [A, B] broadcast pass


def _rbf(d2: Tensor, h2: Tensor) -> Tensor:
    """``exp(-d2 / h2)``, exactly 0 beyond ``exp(-30)``: far pairs would otherwise make denormal
    floats, which are ~100x slower on CPUs, in the forward and backward passes."""
    arg = d2 / h2
    return torch.exp(-arg.clamp(max=30.0)) * (arg < 30.0)


def _finite_(g: Tensor) -> Tensor:
    """Zero (in place) the guidance of every sample with a non-finite entry: its direction is unknown."""
    bad = ~torch.isfinite(g).flatten(1).all(1)
    if bool(bad.any()):
        g[bad] = 0.0
    return g


@checked
def guided_score_fn(
    score_fn: ScoreFn,
    guides: Sequence[BaseGuide],
    *,
    max_norm_ratio: Annotated[float, Field(gt=0)] | None = None,
    sde: SDE | None = None,
) -> ScoreFn:
    """``s(x, t) + sum_i w_i(t) grad_x objective_i(x, t)``, kept finite.

    Each guide gives ``grad_x`` through ``BaseGuide.gradient``: autograd on a detached copy of
    ``x`` under ``torch.enable_grad()`` (the solver runs under no_grad), or a closed form (the
    DiversityGuide). A sample whose guidance has a non-finite entry gets none
    from that guide; with ``max_norm_ratio`` the guidance of each sample is rescaled so that
    ``||guidance|| <= max_norm_ratio * ||score||``. ``sde`` gives ``T`` for the schedules
    (default 1) and the Tweedie estimate to guides that need the score.
    """
    guides = tuple(guides)
    if not guides:
        return score_fn
    T = sde.T if sde is not None else 1.0

    def fn(x: Tensor, t: Tensor) -> Tensor:
        score = score_fn(x, t)
        total = torch.zeros_like(score)
        for guide in guides:
            w = guide.weight_at(t, T)
            if not bool((w != 0).any()):
                continue
            grad = guide.gradient(x, t, score, sde)
            if grad is not None:
                total.add_(_finite_(bcast(w, grad) * grad))
        if max_norm_ratio is not None:
            g_norm = torch.linalg.vector_norm(total.double().flatten(1), dim=1)
            s_norm = torch.linalg.vector_norm(torch.nan_to_num(score).double().flatten(1), dim=1)
            scale = (max_norm_ratio * s_norm / g_norm.clamp_min(1e-300)).clamp(max=1.0)
            total.mul_(bcast(scale.to(total.dtype), total))
        return score + total

    return fn


def _check_compatible(prior: Any, guides: Sequence[BaseGuide]) -> None:
    prior_sde = build_sde(prior.sde).config()
    space_name = prior.space.name
    for i, guide in enumerate(guides):
        predictor = getattr(guide, "predictor", None)
        if predictor is None:
            continue
        what = f"predictor of guide {i} ({type(predictor).__name__})"
        sde_config = getattr(predictor, "sde_config", None)
        if sde_config is not None:
            assert_same_sde(prior_sde, sde_config, "prior", what)
        pred_space = getattr(predictor, "space_name", None)
        if pred_space is not None and pred_space != space_name:
            raise IncompatibleComponentsError(
                f"the {what} was trained on space {pred_space!r} but the prior is for space {space_name!r}; "
                f"use a predictor trained on {space_name!r} architectures"
            )


def calibrate_guides(
    guides: Sequence[BaseGuide], space: Any, device: torch.device | str = "cpu", sde: SDE | None = None
) -> None:
    """Give every standardized ``Guide`` without a unit one, measured on ``CALIBRATION_ARCHS``
    archs drawn uniformly from ``space`` (a fixed seed, so sampling stays reproducible), and with
    ``sde`` at every noise level."""
    todo = [g for g in guides if isinstance(g, Guide) and g.needs_calibration]
    if not todo:
        return
    import numpy as np

    archs = space.sample(CALIBRATION_ARCHS, np.random.default_rng(CALIBRATION_SEED))
    x = (2.0 * space.encode_batch(archs) - 1.0).to(device)
    for guide in todo:
        guide.calibrate(x, sde)


def distinct_fraction(archs: Sequence[Any]) -> float:
    """Distinct archs / archs (1.0 for none): the ``uniqueness`` of decoded samples."""
    return len(set(archs)) / len(archs) if len(archs) else 1.0


class GuidedSampler:
    """Sample architectures from a prior, optionally steered by guides.

    Args:
        prior: has ``space`` (SearchSpace), ``sde`` (SDE or its config), ``score_fn(x, t)``;
            optionally ``device``.
        guides: Guide / DiversityGuide instances.
        solver: a Solver, a name ("pc", "ode"), a config mapping, or None
            (``nag.diffusion.solvers.DEFAULT_SOLVER``).
        batch_size: samples per solver call.
        max_norm_ratio: optional per-sample cap on ``||guidance|| / ||score||``.
        progress: tqdm bar over each batch's steps.
        min_uniqueness: the collapse guard. When fewer than this fraction of a draw's decoded
            archs are distinct (times ``space.size / n`` when the space has fewer archs than n), the weights of the objective guides (those with a direction) are
            multiplied by ``RELAX_FACTOR`` and the draw is repeated with the same seed, up to
            ``MAX_RELAXATIONS`` times; one bisection step between the first factor that is weak
            enough and the last that was not refines it. ``weight_factor`` holds the factor used. None (here)
            turns it off; the experiments' sampler settings default to ``MIN_UNIQUENESS``.

    Raises IncompatibleComponentsError when a guide's predictor records another SDE or space.
    """

    @checked
    def __init__(
        self,
        prior: Any,
        guides: Sequence[BaseGuide] = (),
        solver: Solver | str | Mapping[str, Any] | None = None,
        batch_size: Annotated[int, Field(ge=1)] = 256,
        max_norm_ratio: Annotated[float, Field(gt=0)] | None = None,
        progress: bool = False,
        min_uniqueness: Annotated[float, Field(gt=0, le=1)] | None = None,
    ) -> None:
        self.prior = prior
        self.guides = tuple(guides)
        self.min_uniqueness = min_uniqueness
        self.weight_factor = 1.0  # the objective guides' weight factor of the last draw (collapse guard)
        self.solver = get_solver(solver)
        self.batch_size = int(batch_size)
        self.max_norm_ratio = max_norm_ratio
        self.progress = progress
        self.sde = build_sde(prior.sde)
        _check_compatible(prior, self.guides)
        calibrate_guides(self.guides, prior.space, torch.device(getattr(prior, "device", "cpu")), self.sde)

    def score_fn(self) -> ScoreFn:
        """The prior's score plus every guide's term."""
        return guided_score_fn(self.prior.score_fn, self.guides, max_norm_ratio=self.max_norm_ratio, sde=self.sde)

    @property
    def shape(self) -> tuple[int, int]:
        space = self.prior.space
        return (space.num_nodes, space.num_ops)

    def sample_tensor(self, n: int, seed: int = 0, batch_size: int | None = None) -> Tensor:
        """``n`` raw samples ``[n, N, V]`` in the [-1, 1] scale (before decoding), on the CPU;
        redrawn with weaker objective guides while the collapse guard finds too few distinct archs."""
        self.weight_factor = 1.0
        x = self._draw(n, seed, batch_size)
        objectives = [g for g in self.guides if isinstance(g, Guide) and g.direction is not None and g.weight]
        if self.min_uniqueness is None or not objectives or n < 2:
            return x
        size = self.prior.space.size  # n draws from a space of fewer archs cannot all be distinct
        floor = self.min_uniqueness * (1.0 if size is None else min(1.0, size / n))
        if distinct_fraction(self.prior.space.decode(x)) >= floor:
            return x
        weights = [g.weight for g in objectives]

        def draw_at(factor: float) -> tuple[Tensor, bool]:
            for g, w in zip(objectives, weights):
                g.weight = w * factor
            drawn = self._draw(n, seed, batch_size)
            return drawn, distinct_fraction(self.prior.space.decode(drawn)) >= floor

        try:
            too_strong = 1.0
            for k in range(1, MAX_RELAXATIONS + 1):
                factor = RELAX_FACTOR**k
                x, enough = draw_at(factor)
                if enough:  # one bisection step back toward the last factor that was too strong
                    middle = math.sqrt(too_strong * factor)
                    x_middle, enough = draw_at(middle)
                    if enough:
                        x, factor = x_middle, middle
                    break
                too_strong = factor
            else:
                warnings.warn(
                    f"collapse guard: fewer than {floor:.2f} of {n} guided samples are distinct even at "
                    f"{factor:.2f}x the guidance weight; lower guidance.weight, or set min_uniqueness lower "
                    f"(null turns the guard off)", stacklevel=2)
            self.weight_factor = factor
        finally:
            for g, w in zip(objectives, weights):
                g.weight = w
        return x

    def _draw(self, n: int, seed: int, batch_size: int | None) -> Tensor:
        bs = int(batch_size or self.batch_size)
        device = torch.device(getattr(self.prior, "device", "cpu"))
        gen = torch.Generator(device=device).manual_seed(int(seed))
        score = self.score_fn()
        remembering = [g for g in self.guides if isinstance(g, DiversityGuide)]
        for g in remembering:
            g.reset()
        out = []
        for start in range(0, n, bs):
            b = min(bs, n - start)
            x = self.solver.sample(score, self.sde, (b, *self.shape), gen, progress=self.progress, device=device)
            out.append(x.cpu())
            if any(g.memory for g in remembering):
                clean = 2.0 * self.prior.space.encode_batch(self.prior.space.decode(x)) - 1.0
                for g in remembering:
                    g.remember(clean.to(x))
        return torch.cat(out) if out else torch.zeros(0, *self.shape)

    def sample(self, n: int, seed: int = 0, batch_size: int | None = None) -> list[Any]:
        """``n`` architectures decoded by ``prior.space.decode`` (masked argmax: always valid)."""
        x = self.sample_tensor(n, seed, batch_size)
        return self.prior.space.decode(x) if n else []

    def __repr__(self) -> str:
        return f"GuidedSampler(space={self.prior.space.name!r}, solver={self.solver!r}, guides={list(self.guides)})"


__all__ = [
    "CONSTRAINT_EXCESS",
    "DIRECTIONS",
    "SCALES",
    "SCHEDULES",
    "BaseGuide",
    "CALIBRATION_ARCHS",
    "CALIBRATION_TIMES",
    "DEFAULT_WEIGHT",
    "DiversityGuide",
    "Guide",
    "MIN_UNIQUENESS",
    "distinct_fraction",
    "GuideSpec",
    "GuidedSampler",
    "calibrate_guides",
    "guided_score_fn",
    "parse_constraint",
    "preferred_spread",
]
