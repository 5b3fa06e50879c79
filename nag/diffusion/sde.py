"""Continuous-time SDEs for score-based diffusion (VE, VP, sub-VP), in score_sde's formulation.

Shapes: the state ``x`` is ``[B, ...]`` (nag uses ``[B, N, V]`` in [-1, 1]); time ``t`` is
``[B]`` in ``[eps, T]``. Per-sample scalars (diffusion, std, ...) are returned as ``[B]``.

All three SDEs are linear, ``dx = f(t) x dt + g(t) dW``, so their perturbation kernel is
``x_t | x_0 ~ N(alpha(t) x_0, std(t)^2 I)``; subclasses give ``marginal_coeffs(t) -> (alpha, std)``
and the base class derives ``marginal_prob``, the exact one-step transition (``discretize``)
and training-time perturbation (``perturb``) from it.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from nag.errors import ConfigError, IncompatibleComponentsError
from nag.registry import Registry
from nag.schema import PluginConfig

ScoreFn = Callable[[Tensor, Tensor], Tensor]


def bcast(v: Tensor, x: Tensor) -> Tensor:
    """Reshape a per-sample ``v [B]`` so it broadcasts against ``x [B, ...]``."""
    return v.reshape(v.shape[0], *([1] * (x.dim() - 1)))


class SDE(ABC):
    """A forward SDE ``dx = f(x, t) dt + g(t) dW`` on ``t in [0, T]``.

    Args:
        T: final time (the prior lives at ``T``).
        eps: smallest time used in training and sampling (avoids the singular score at 0).
    """

    name: ClassVar[str] = "sde"

    def __init__(self, T: float = 1.0, eps: float = 1e-5) -> None:
        if not 0.0 < eps < T:
            raise ConfigError(f"SDE needs 0 < eps < T, got eps={eps}, T={T}")
        self.T = float(T)
        self.eps = float(eps)

    # ----- what a subclass implements ---------------------------------------------
    @abstractmethod
    def linear_coeffs(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``f(t) [B]`` and ``g(t) [B]`` of the linear SDE ``dx = f(t) x dt + g(t) dW``."""

    @abstractmethod
    def marginal_coeffs(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``alpha(t) [B]`` and ``std(t) [B]`` with ``x_t | x_0 ~ N(alpha x_0, std^2 I)``."""

    @property
    @abstractmethod
    def prior_std(self) -> float:
        """Standard deviation of the (zero-mean, isotropic Gaussian) prior ``p_T``."""

    def _args(self) -> dict[str, Any]:
        """Constructor arguments besides T and eps (for ``config``)."""
        return {}

    # ----- derived ------------------------------------------------------------------
    def sde(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Forward drift ``[B, ...]`` and diffusion ``g(t) [B]``."""
        f, g = self.linear_coeffs(t)
        return bcast(f, x) * x, g

    def marginal_prob(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Mean ``[B, ...]`` and std ``[B]`` of ``p_t(x_t | x_0 = x)``."""
        alpha, std = self.marginal_coeffs(t)
        return bcast(alpha, x) * x, std

    def prior_sampling(
        self,
        shape: tuple[int, ...],
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """A sample of ``p_T``, ``shape = (B, ...)``, on the generator's device (else ``device``)."""
        if generator is not None:
            device = generator.device
        return torch.randn(shape, generator=generator, device=device) * self.prior_std

    def prior_logp(self, z: Tensor) -> Tensor:
        """``log p_T(z)`` per sample, ``[B]``."""
        d = z[0].numel()
        s2 = self.prior_std**2
        return -0.5 * d * math.log(2 * math.pi * s2) - z.flatten(1).pow(2).sum(1) / (2 * s2)

    def discretize(self, x: Tensor, t: Tensor, dt: float | Tensor) -> tuple[Tensor, Tensor]:
        """Exact transition from ``t - dt`` to ``t`` (``dt > 0``): ``x_t = x + f + G z``.

        Returns ``f [B, ...]`` and ``G [B]``. For a linear SDE with ``s = t - dt``:
        ``x_t = (alpha_t/alpha_s) x_s + sqrt(std_t^2 - (alpha_t/alpha_s)^2 std_s^2) z``.
        """
        scale, g = self.transition_coeffs(t, dt)
        return bcast(scale - 1.0, x) * x, g

    def transition_coeffs(self, t: Tensor, dt: float | Tensor) -> tuple[Tensor, Tensor]:
        """``scale [B]`` and ``G [B]`` of the exact transition from ``t - dt`` to ``t``."""
        a_t, s_t = self.marginal_coeffs(t)
        a_s, s_s = self.marginal_coeffs(t - dt)
        scale = a_t / a_s
        return scale, (s_t.pow(2) - scale.pow(2) * s_s.pow(2)).clamp_min(0.0).sqrt()

    def reverse(self, score_fn: ScoreFn, probability_flow: bool = False) -> ReverseSDE:
        """The reverse-time SDE (or probability-flow ODE) driven by ``score_fn``."""
        return ReverseSDE(self, score_fn, probability_flow)

    def config(self) -> dict[str, Any]:
        """JSON-able description; ``build_sde(sde.config())`` rebuilds an equal SDE."""
        return {"name": self.name, **self._args(), "T": self.T, "eps": self.eps}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.config().items() if k != "name")
        return f"{type(self).__name__}({args})"


class ReverseSDE:
    """Reverse-time SDE ``dx = [f - g^2 s] dt + g dW_bar`` (or the ODE with ``g^2 s / 2``, no noise).

    ``sde`` and ``discretize`` return drift terms in the forward-time convention, as score_sde:
    a step of size ``dt > 0`` towards smaller times is ``x - drift * dt``.
    """

    def __init__(self, sde: SDE, score_fn: ScoreFn, probability_flow: bool = False) -> None:
        self.forward_sde = sde
        self.score_fn = score_fn
        self.probability_flow = probability_flow
        self.T, self.eps = sde.T, sde.eps
        self._k = 0.5 if probability_flow else 1.0

    def sde(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Drift ``[B, ...]`` and diffusion ``[B]`` (zero for the probability-flow ODE)."""
        drift, g = self.forward_sde.sde(x, t)
        score = self.score_fn(x, t)
        drift = drift - bcast(g.pow(2) * self._k, x) * score
        return drift, torch.zeros_like(g) if self.probability_flow else g

    def discretize(self, x: Tensor, t: Tensor, dt: float | Tensor) -> tuple[Tensor, Tensor]:
        """Reverse-diffusion discretisation: ``x_{t-dt} = x - rev_f + rev_G z``."""
        f, G = self.forward_sde.discretize(x, t, dt)
        rev_f = f - bcast(G.pow(2) * self._k, x) * self.score_fn(x, t)
        return rev_f, torch.zeros_like(G) if self.probability_flow else G


SDES: Registry[SDE] = Registry("sde", group="nag.sdes")


@SDES.register("ve")
class VESDE(SDE):
    """Variance exploding: ``sigma(t) = sigma_min (sigma_max / sigma_min)^t``, no drift.

    As in score_sde, the marginal std at ``t`` is ``sigma(t)`` (so ``sigma_min`` at ``t = 0``).
    """

    name = "ve"

    def __init__(self, sigma_min: float = 0.1, sigma_max: float = 5.0, T: float = 1.0, eps: float = 1e-5) -> None:
        super().__init__(T, eps)
        if not 0.0 < sigma_min < sigma_max:
            raise ConfigError(f"VESDE needs 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)
        self._log_ratio = math.log(self.sigma_max / self.sigma_min)

    def sigma(self, t: Tensor) -> Tensor:
        return self.sigma_min * torch.exp(t * self._log_ratio)

    def linear_coeffs(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return torch.zeros_like(t), self.sigma(t) * math.sqrt(2 * self._log_ratio)

    def marginal_coeffs(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return torch.ones_like(t), self.sigma(t)

    @property
    def prior_std(self) -> float:
        return self.sigma_max

    def _args(self) -> dict[str, Any]:
        return {"sigma_min": self.sigma_min, "sigma_max": self.sigma_max}


class _BetaSDE(SDE):
    """Shared linear schedule ``beta(t) = beta_min + t (beta_max - beta_min)``."""

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, T: float = 1.0, eps: float = 1e-5) -> None:
        super().__init__(T, eps)
        if not 0.0 <= beta_min < beta_max:
            raise ConfigError(f"{type(self).__name__} needs 0 <= beta_min < beta_max, got {beta_min}, {beta_max}")
        self.beta_min = float(beta_min)
        self.beta_max = float(beta_max)

    def beta(self, t: Tensor) -> Tensor:
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def log_alpha(self, t: Tensor) -> Tensor:
        """``log alpha(t) = -1/2 int_0^t beta``."""
        return -0.25 * t.pow(2) * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    @property
    def prior_std(self) -> float:
        return 1.0

    def _args(self) -> dict[str, Any]:
        return {"beta_min": self.beta_min, "beta_max": self.beta_max}


@SDES.register("vp")
class VPSDE(_BetaSDE):
    """Variance preserving: ``dx = -beta x / 2 dt + sqrt(beta) dW``; std ``sqrt(1 - alpha^2)``."""

    name = "vp"

    def linear_coeffs(self, t: Tensor) -> tuple[Tensor, Tensor]:
        beta = self.beta(t)
        return -0.5 * beta, beta.sqrt()

    def marginal_coeffs(self, t: Tensor) -> tuple[Tensor, Tensor]:
        la = self.log_alpha(t)
        return la.exp(), (-torch.expm1(2 * la)).clamp_min(0.0).sqrt()


@SDES.register("subvp")
class subVPSDE(_BetaSDE):
    """Sub-VP: VP's drift, diffusion ``sqrt(beta (1 - alpha^4))``; std ``1 - alpha^2``."""

    name = "subvp"

    def linear_coeffs(self, t: Tensor) -> tuple[Tensor, Tensor]:
        beta = self.beta(t)
        discount = -torch.expm1(4 * self.log_alpha(t))
        return -0.5 * beta, (beta * discount).sqrt()

    def marginal_coeffs(self, t: Tensor) -> tuple[Tensor, Tensor]:
        la = self.log_alpha(t)
        return la.exp(), -torch.expm1(2 * la)


class SDEConfig(PluginConfig):
    """The ``sde:`` config block: ``{name, **settings}`` of a registered SDE."""

    kind: ClassVar[str] = "SDE"

    @classmethod
    def factory(cls, name: str) -> Any:
        return SDES.get(name)


def build_sde(config: Mapping[str, Any] | SDE) -> SDE:
    """SDE from its config, e.g. ``{"name": "ve", "sigma_min": 0.1, "sigma_max": 5.0}``."""
    if isinstance(config, SDE):
        return config
    cfg = dict(config)
    if "name" not in cfg:
        raise ConfigError(f"an SDE config needs a 'name' (one of {SDES.names()}); got keys {sorted(cfg)}")
    return SDES.build(str(cfg.pop("name")), **cfg)


def _normalised(cfg: Mapping[str, Any] | SDE) -> dict[str, Any]:
    return build_sde(cfg).config()


def assert_same_sde(
    cfg_a: Mapping[str, Any] | SDE | None,
    cfg_b: Mapping[str, Any] | SDE | None,
    what_a: str = "prior",
    what_b: str = "predictor",
) -> None:
    """Refuse two components trained under different SDEs (defaults are filled in first).

    Raises IncompatibleComponentsError naming both configs and every differing field.
    """
    for cfg, what in ((cfg_a, what_a), (cfg_b, what_b)):
        if cfg is None:
            raise IncompatibleComponentsError(
                f"the {what} records no SDE config, so it cannot be checked against the "
                f"{what_b if what == what_a else what_a}; save it with its sde.config()"
            )
    a, b = _normalised(cfg_a), _normalised(cfg_b)  # type: ignore[arg-type]
    diffs = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        same = (
            math.isclose(va, vb, rel_tol=1e-9, abs_tol=1e-12)
            if isinstance(va, (int, float)) and isinstance(vb, (int, float))
            else va == vb
        )
        if not same:
            diffs.append(f"{key} ({what_a}: {va!r}, {what_b}: {vb!r})")
    if diffs:
        raise IncompatibleComponentsError(
            f"the {what_a} and the {what_b} were trained under different SDEs; they differ in "
            f"{'; '.join(diffs)}. {what_a} SDE: {a}. {what_b} SDE: {b}. Train the {what_b} with the "
            f"{what_a}'s SDE config (a noise-aware predictor is only valid for the noise it saw)."
        )


def perturb(
    sde: SDE, x0: Tensor, t: Tensor, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Sample ``x_t ~ p_t(. | x0)``: returns ``x_t [B, ...]``, ``noise [B, ...]``, ``std [B]``.

    The one perturbation used by score-model and predictor training alike.
    """
    noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
    mean, std = sde.marginal_prob(x0, t)
    return mean + bcast(std, x0) * noise, noise, std


def sample_time(
    sde: SDE, batch: int, generator: torch.Generator | None = None, device: torch.device | str | None = None
) -> Tensor:
    """Training times ``t ~ U(eps, T)``, ``[B]``."""
    u = torch.rand(batch, generator=generator, device=device)
    return sde.eps + (sde.T - sde.eps) * u


__all__ = [
    "SDE",
    "SDES",
    "SDEConfig",
    "ReverseSDE",
    "ScoreFn",
    "VESDE",
    "VPSDE",
    "subVPSDE",
    "assert_same_sde",
    "bcast",
    "build_sde",
    "perturb",
    "sample_time",
]
