"""Warm-starting BO from related tasks: a source-informed initial design and a transfer surrogate.

With sources (``nag.search.sources.Source``), ``BayesOpt`` changes two things:

1. **Initial design.** The ``n_init`` first queries are not random: they are the archs the
   sources rate best (mean normal score over the sources that hold the arch), skipping any
   evaluated or isomorphic arch. Related tasks' best archs are the best first guesses.
2. **Transfer surrogate.** Every round, in standardized target units ``z = (y - mean) / std``::

       z(x) ~ b + sum_k w_k s_k(x) + r(x)

   ``s_k`` is a surrogate fitted once on source k's rows (their normal scores) and read at
   ``(x_t, t)``; ``b, w`` are a ridge regression of the observed ``z`` on the sources'
   predictions, pulled toward equal positive weights (``w_k = 1/K``) with the strength of
   ``strength`` observations, so a few target points trust the sources and many decide for
   themselves (a source that does not predict the target gets a weight near 0, one that predicts
   it inversely a negative weight); ``r`` is BO's usual surrogate fitted on the residuals, whose
   ensemble spread is the surrogate's variance. The source surrogates are differentiable in
   ``x_t``, so the same transfer surrogate guides diffusion pools (noise-aware, under the
   prior's SDE) and ranks candidates (clean).

Why both, and why not a joint (multi-task) fit: BO refits its surrogate every round on a few
dozen archs, and a joint fit on thousands of source rows would cost seconds per round; the
source surrogates are fitted once per search, the residual per round costs what a cold round
does. The design spends no query on an arch the sources rate poorly.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from nag.errors import ConfigError
from nag.search.sources import Source
from nag.search.surrogate import StateSurrogate, fit_surrogate
from nag.search.targets import rank_gauss
from nag.spaces.base import Arch, SearchSpace

SOURCE_SEED = 0  # source surrogates depend on the data only, so a resumed search refits the same ones


class SourcePrior:
    """Each source's surrogate read at ``(x [B, N, V], t)`` -> ``[B, K]`` (normal-score units)."""

    def __init__(self, models: Sequence[Any]) -> None:
        self.models = list(models)

    def __call__(self, x: Tensor, t: float | Tensor) -> Tensor:
        return torch.cat([m.predict(x, t)[0][:, :1] for m in self.models], dim=1)


class TransferSurrogate(StateSurrogate):
    """``mean = y_mean + y_std * (b + s(x) . w + r(x))``, ``var = y_std^2 * var_r(x)``; see the module doc."""

    def __init__(self, space: SearchSpace, prior: SourcePrior, residual: Any, coef: np.ndarray, intercept: float,
                 y_mean: float, y_std: float) -> None:
        self.space = space
        self.prior = prior
        self.residual = residual
        self.coef = torch.as_tensor(coef, dtype=torch.float32)  # [K]
        self.intercept, self.y_mean, self.y_std = float(intercept), float(y_mean), float(y_std)
        self.sde_config = getattr(residual, "sde_config", None)
        self.space_name = getattr(residual, "space_name", space.name)
        self.targets = getattr(residual, "targets", ["objective"])

    def predict(self, x: Tensor, t: float | Tensor) -> tuple[Tensor, Tensor]:
        """(mean [B, 1], var [B, 1]) in target units; differentiable w.r.t. ``x``."""
        r_mean, r_var = self.residual.predict(x, t)
        z = self.intercept + self.prior(x, t) @ self.coef.to(x) + r_mean[:, 0]
        return (self.y_mean + self.y_std * z).unsqueeze(1), (self.y_std**2) * r_var[:, :1]


def source_weights(p: np.ndarray, z: np.ndarray, strength: float) -> tuple[np.ndarray, float]:
    """Ridge fit ``z ~ b + p w`` toward ``w = 1/K``: p [n, K] source predictions, z [n] -> (w [K], b)."""
    n, k = p.shape
    prior_w = np.full(k, 1.0 / k)
    p_mean, z_mean = p.mean(0), float(z.mean())
    pc, zc = p - p_mean, z - z_mean
    w = np.linalg.solve(pc.T @ pc + (strength + 1e-9) * np.eye(k), pc.T @ zc + strength * prior_w)
    return w, z_mean - float(p_mean @ w)


class WarmStart:
    """Sources and how a BO search uses them (initial design, transfer surrogates).

    Args:
        sources: the related tasks' results.
        space: the search space (the sources' archs belong to it).
        surrogate, surrogate_params: how each source's surrogate is fitted (BO's own by default).
        strength: how many target observations the prior "equal positive source weights" is worth.
        view: how a surrogate reads an arch (BO's ``surrogate_view``: identity or normal forms).
    """

    def __init__(
        self,
        sources: Sequence[Source],
        space: SearchSpace,
        surrogate: str = "fast",
        surrogate_params: dict[str, Any] | None = None,
        strength: float = 1.0,
        view: Callable[[list[Arch]], list[Arch]] = lambda archs: archs,
    ) -> None:
        if not sources:
            raise ConfigError("a warm start needs at least one source")
        if strength < 0:
            raise ConfigError(f"the warm start's strength must be >= 0, got {strength}")
        self.sources = list(sources)
        self.space = space
        self.surrogate = surrogate
        self.surrogate_params = dict(surrogate_params or {})
        self.strength = float(strength)
        self.view = view
        self._priors: dict[tuple[bool, str], SourcePrior] = {}
        self._design: list[Arch] | None = None

    @property
    def n_rows(self) -> int:
        return sum(len(s) for s in self.sources)

    def design(self) -> list[Arch]:
        """Every source arch, best first: mean normal score over the sources that hold it."""
        if self._design is None:
            total: dict[Arch, float] = {}
            count: dict[Arch, int] = {}
            for s in self.sources:
                for arch, z in zip(s.archs, rank_gauss(s.values)):
                    total[arch] = total.get(arch, 0.0) + float(z)
                    count[arch] = count.get(arch, 0) + 1
            archs = list(total)
            score = np.array([total[a] / count[a] for a in archs])
            self._design = [archs[i] for i in np.argsort(-score, kind="stable")]
        return self._design

    def next_design(self, ctx: Any) -> Arch | None:
        """The best-rated source arch that is neither evaluated nor isomorphic to an evaluated one."""
        for arch in self.design():
            if ctx.fresh([arch], by_canonical=True):
                return arch
        return None

    def prior(self, sde_config: dict[str, Any], noise_aware: bool) -> SourcePrior:
        """The sources' surrogates under ``sde_config`` (fitted on first use, then kept)."""
        key = (noise_aware, repr(sorted(sde_config.items())))
        if key not in self._priors:
            params = {**self.surrogate_params, "noise_aware": noise_aware} if noise_aware else dict(self.surrogate_params)
            models = [fit_surrogate(self.surrogate, self.space, self.view(list(s.archs)), rank_gauss(s.values),
                                    sde_config, seed=SOURCE_SEED + i, **params) for i, s in enumerate(self.sources)]
            self._priors[key] = SourcePrior(models)
        return self._priors[key]

    def fit(self, fit_residual: Callable[[np.ndarray], Any], archs: list[Arch], y: np.ndarray,
            sde_config: dict[str, Any], noise_aware: bool = False) -> TransferSurrogate:
        """The transfer surrogate on the evaluated ``archs`` (as the surrogate reads them) and their targets ``y`` [n].

        ``fit_residual(r [n])`` fits BO's surrogate on the residuals in standardized units.
        """
        from nag.modules.arch_data import to_state

        prior = self.prior(sde_config, noise_aware)
        y = np.asarray(y, dtype=float)
        y_mean, y_std = float(y.mean()), float(y.std()) or 1.0
        z = (y - y_mean) / y_std
        with torch.no_grad():
            p = prior(to_state(self.space, archs), 0.0).double().numpy()
        coef, intercept = source_weights(p, z, self.strength)
        residual = fit_residual(z - intercept - p @ coef)
        return TransferSurrogate(self.space, prior, residual, coef, intercept, y_mean, y_std)


__all__ = ["SourcePrior", "TransferSurrogate", "WarmStart", "source_weights"]
