"""Exact Gaussian-process surrogate for BO over architectures.

A GP on the surrogate encoding of the state (``nag.search.encodings``), with a squared-exponential
kernel ``k(a, b) = amp * exp(-|f(a) - f(b)|^2 / (2 l^2))``. On one-hot features the squared
distance is twice the number of differing nodes, so this is the Hamming-type kernel used by
GP-based NAS. Hyperparameters are chosen each fit by the marginal likelihood (ML-II) over a small
grid of length scales and noise levels; the amplitude has a closed form. With a few dozen
evaluated archs a fit is a handful of Cholesky factorisations of an [n, n] matrix.

It offers the surrogate interface (``nag.search.surrogate``): ``predict_archs`` for ranking and a
differentiable ``predict(x_t, t)`` on noisy states (the encoding's soft op probabilities), so it
can also guide a sampler.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from nag.errors import ConfigError
from nag.search.encodings import build_encoding
from nag.search.surrogate import DEFAULT_SDE, TARGET, StateSurrogate
from nag.spaces.base import Arch, SearchSpace

LENGTH_SCALES = (0.5, 1.0, 2.0, 4.0)  # times the median pairwise distance of the training features
NOISE_LEVELS = (1e-3, 1e-2, 0.05, 0.2)  # times the amplitude


class GPSurrogate(StateSurrogate):
    """A fitted GP: posterior mean and variance in the original units of ``y``."""

    def __init__(self, space: SearchSpace, sde: Any, encoding: Any, train: Tensor, chol: Tensor, alpha: Tensor,
                 length2: float, amp: float, y_mean: float, y_std: float) -> None:
        self.space = space
        self.space_name = space.name
        self.sde = sde
        self.sde_config = sde.config()
        self.encoding = encoding
        self.targets = [TARGET]
        self.train, self.chol, self.alpha = train, chol, alpha  # [n, D], [n, n], [n, 1]
        self.length2, self.amp = length2, amp
        self.y_mean, self.y_std = y_mean, y_std

    def kernel(self, a: Tensor, b: Tensor) -> Tensor:
        """[B, D], [n, D] -> [B, n]."""
        return self.amp * torch.exp(-torch.cdist(a, b).pow(2) / (2 * self.length2))

    def predict(self, x: Tensor, t: float | Tensor) -> tuple[Tensor, Tensor]:
        """(mean [B, 1], var [B, 1]) of the latent function; differentiable w.r.t. ``x`` [B, N, V]."""
        t = torch.as_tensor(t, dtype=torch.float32, device=x.device)
        t = t.expand(x.shape[0]) if t.dim() == 0 else t
        alpha_t, std_t = self.sde.marginal_coeffs(t)
        f = self.encoding(x, alpha_t, std_t).double()
        k = self.kernel(f, self.train)  # [B, n]
        mean = k @ self.alpha  # [B, 1]
        v = torch.cholesky_solve(k.T, self.chol)  # [n, B]
        var = (self.amp - (k.T * v).sum(0)).clamp_min(0.0).unsqueeze(1)
        return (mean * self.y_std + self.y_mean).float(), (var * self.y_std**2).float()


def fit_gp(
    space: SearchSpace,
    archs: Sequence[Arch],
    y: np.ndarray,
    sde_config: Mapping[str, Any] | None = None,
    *,
    encoding: str = "onehot",
    encoding_params: Mapping[str, Any] | None = None,
    length_scales: Sequence[float] = LENGTH_SCALES,
    noise_levels: Sequence[float] = NOISE_LEVELS,
    noise_aware: bool = False,
    seed: int = 0,
) -> GPSurrogate:
    """Fit a GP on ``(archs, y [n])`` with ML-II over ``length_scales`` x ``noise_levels``.

    The GP is fitted on clean states only. It reads a noisy state through its encoding: the
    ``paths`` encoding gives op probabilities p(op | x_t), so for guidance use ``encoding="paths"``
    (``encoding_params={"max_len": 1}``: per-node op probabilities). ``noise_aware`` and ``seed``
    are accepted for the surrogate interface and change nothing: the fit is deterministic.
    """
    from nag.diffusion.sde import build_sde
    from nag.modules.arch_data import to_state

    if len(archs) < 2:
        raise ConfigError(f"a surrogate needs at least 2 evaluated architectures, got {len(archs)}")
    if not length_scales or not noise_levels or min(length_scales) <= 0 or min(noise_levels) <= 0:
        raise ConfigError(
            f"gp needs positive length_scales and noise_levels, got {list(length_scales)}, {list(noise_levels)}"
        )
    sde = build_sde(sde_config or DEFAULT_SDE)
    enc = build_encoding(encoding, space, **dict(encoding_params or {}))
    y = np.asarray(y, dtype=np.float64)
    y_mean, y_std = float(y.mean()), max(float(y.std()), 1e-8)
    z = torch.tensor((y - y_mean) / y_std, dtype=torch.float64).unsqueeze(1)  # [n, 1]
    with torch.no_grad():
        x0 = to_state(space, list(archs))
        zero = torch.zeros(len(archs))
        alpha0, std0 = sde.marginal_coeffs(zero)
        train = enc(x0, alpha0, std0).double()  # [n, D]
        d2 = torch.cdist(train, train).pow(2)
        positive = d2[d2 > 0]
        unit = float(positive.median()) if len(positive) else 1.0
        n = len(z)
        best = None
        for scale in length_scales:
            corr = torch.exp(-d2 / (2 * scale**2 * unit))
            for noise in noise_levels:
                chol, info = torch.linalg.cholesky_ex(corr + noise * torch.eye(n, dtype=torch.float64))
                if int(info):
                    continue
                a = torch.cholesky_solve(z, chol)
                amp = max(float(z[:, 0] @ a[:, 0]) / n, 1e-8)  # closed-form ML amplitude
                lml = -0.5 * n * np.log(amp) - float(torch.log(torch.diagonal(chol)).sum())
                if best is None or lml > best[0]:
                    best = (lml, scale, noise, amp)
        if best is None:
            raise ConfigError("gp: no kernel setting gave a positive-definite matrix; raise noise_levels")
        _, scale, noise, amp = best
        length2 = scale**2 * unit
        k = amp * (torch.exp(-d2 / (2 * length2)) + noise * torch.eye(n, dtype=torch.float64))
        chol = torch.linalg.cholesky(k)
        alpha = torch.cholesky_solve(z, chol)
    return GPSurrogate(space, sde, enc, train, chol, alpha, length2, amp, y_mean, y_std)
