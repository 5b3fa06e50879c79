"""BO surrogates: ensemble predictors refitted every round on the evaluated archs.

A surrogate is fitted by ``fit_surrogate(name, space, archs, y, sde_config, **params)`` and
offers what ``nag.modules.predictor.Predictor`` offers: ``predict_archs(archs, t=0.0) ->
(mean [B, 1], var [B, 1])`` (clean ranking for the acquisition), a differentiable
``__call__(x_t [B, N, V], t [B]) -> [B, 1]`` and ``predict(x_t, t) -> (mean, var)`` (guidance),
and ``sde_config``/``targets``/``space_name`` (guidance refuses a prior with another SDE).

* ``"predictor"``: ``fit_predictor`` as is (the project's GNN predictor, Lightning training).
* ``"gp"``: an exact Gaussian process with ML-II hyperparameters (``nag.search.gp``).
* ``"fast"``: ``EnsembleMLP``, M MLPs evaluated as one batched network and trained full batch
  by a plain loop. BO refits on a few dozen archs every round, where a Trainer per round and
  a message-passing net cost seconds; this costs a fraction of one. Noise-aware training
  (``noise_aware=True``) perturbs the states with the prior's SDE, as the predictor does.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from nag.errors import ConfigError
from nag.registry import Registry
from nag.schema import check_settings
from nag.search.encodings import build_encoding
from nag.spaces.base import Arch, SearchSpace

DEFAULT_SDE: dict[str, Any] = {"name": "ve", "sigma_min": 0.1, "sigma_max": 5.0}


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` intra-op threads (None: leave as is), then restore.

    BO's tensors are tiny: extra threads only add synchronisation, which on a busy machine
    makes a surrogate fit several times slower.
    """
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
TARGET = "objective"
TIME_FEATURES = 8


class EnsembleMLP(nn.Module):
    """M independent MLPs as one batched net: features [B, D] -> standardised outputs [M, B].

    Layer weights are [M, d_in, d_out]; a forward pass is one batched matmul per layer.
    """

    def __init__(self, d_in: int, members: int = 5, hidden: int = 64, layers: int = 2) -> None:
        super().__init__()
        dims = [d_in] + [hidden] * layers + [1]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for a, b in zip(dims[:-1], dims[1:]):
            w = torch.empty(members, a, b)
            for m in range(members):  # nn.Linear's default init, per member
                nn.init.kaiming_uniform_(w[m].T, a=math.sqrt(5))
            bound = 1 / math.sqrt(a)
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(torch.empty(members, 1, b).uniform_(-bound, bound)))

    def forward(self, h: Tensor) -> Tensor:
        h = h.unsqueeze(0).expand(self.weights[0].shape[0], -1, -1)  # [M, B, D]
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b, h, w)
            if i < len(self.weights) - 1:
                h = torch.relu(h)
        return h.squeeze(-1)  # [M, B]


class StateSurrogate:
    """What every surrogate offers on top of its ``predict(x_t, t) -> (mean [B, 1], var [B, 1])``:
    the guidance call and clean ranking of archs. Subclasses set ``space`` and define ``predict``."""

    space: SearchSpace

    def predict(self, x: Tensor, t: float | Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def __call__(self, x: Tensor, t: float | Tensor) -> Tensor:
        """Predicted mean. x: [B, N, V], t: [B] or scalar -> [B, 1]."""
        return self.predict(x, t)[0]

    @torch.no_grad()
    def predict_archs(self, archs: Sequence[Arch], t: float = 0.0) -> tuple[Tensor, Tensor]:
        """(mean [B, 1], var [B, 1]) of ``archs`` read at noise level ``t``."""
        from nag.modules.arch_data import to_state

        if not archs:
            return torch.zeros(0, 1), torch.zeros(0, 1)
        return self.predict(to_state(self.space, list(archs)), t)


class FastSurrogate(StateSurrogate):
    """A fitted ``EnsembleMLP`` with the Predictor interface (one target, original units)."""

    def __init__(self, space: SearchSpace, net: EnsembleMLP, sde: Any, y_mean: float, y_std: float, encoding: Any) -> None:
        self.space = space
        self.encoding = encoding  # nag.search.encodings: state -> features
        self.space_name = space.name
        self.net = net.eval().requires_grad_(False)
        self.sde = sde
        self.sde_config = sde.config()
        self.targets = [TARGET]
        self.y_mean, self.y_std = y_mean, y_std

    @property
    def ensemble(self) -> int:
        return self.net.weights[0].shape[0]

    def members(self, x: Tensor, t: float | Tensor) -> Tensor:
        """Per-member predictions in original units. x: [B, N, V] in [-1, 1] -> [M, B]."""
        return self.net(features(self.sde, self.encoding, x, t)) * self.y_std + self.y_mean

    def predict(self, x: Tensor, t: float | Tensor) -> tuple[Tensor, Tensor]:
        """(mean [B, 1], var [B, 1]) across members; differentiable w.r.t. ``x``."""
        out = self.members(x, t)
        return out.mean(0).unsqueeze(1), out.var(0, unbiased=False).unsqueeze(1)


def features(sde: Any, encoding: Any, x: Tensor, t: float | Tensor) -> Tensor:
    """Encoded state plus time features. x: [B, N, V] -> [B, encoding.dim + TIME_FEATURES]."""
    from nag.modules.nets.embeddings import sinusoidal_embedding

    t = torch.as_tensor(t, dtype=torch.float32, device=x.device)
    t = t.expand(x.shape[0]) if t.dim() == 0 else t
    alpha, std = sde.marginal_coeffs(t)
    return torch.cat([encoding(x, alpha, std), sinusoidal_embedding(t * 100.0, TIME_FEATURES)], dim=1)


def fit_fast(
    space: SearchSpace,
    archs: Sequence[Arch],
    y: np.ndarray,
    sde_config: Mapping[str, Any] = DEFAULT_SDE,
    *,
    ensemble: int = 5,
    hidden: int = 64,
    layers: int = 2,
    steps: int = 100,
    lr: float = 1e-2,
    weight_decay: float = 1e-4,
    noise_aware: bool = False,
    clean_frac: float = 0.25,
    encoding: str = "onehot",
    encoding_params: Mapping[str, Any] | None = None,
    bootstrap: bool = False,
    seed: int = 0,
) -> FastSurrogate:
    """Fit an ``EnsembleMLP`` on ``(archs, y [n])``: full-batch Adam, MSE on standardised targets.

    ``encoding``: the input features, a name in ``nag.search.encodings.ENCODINGS`` (``onehot``,
    ``paths``) with ``encoding_params``. ``bootstrap``: each member fits its own resample of the
    data (drawn with replacement), so the members disagree more where data are thin.
    """
    from nag.diffusion.sde import build_sde
    from nag.modules.arch_data import to_state
    from nag.modules.predictor import noisy_state

    if len(archs) < 2:
        raise ConfigError(f"a surrogate needs at least 2 evaluated architectures, got {len(archs)}")
    sde = build_sde(sde_config)
    enc = build_encoding(encoding, space, **dict(encoding_params or {}))
    y = np.asarray(y, dtype=np.float64)
    y_mean, y_std = float(y.mean()), max(float(y.std()), 1e-8)
    target = torch.tensor((y - y_mean) / y_std, dtype=torch.float32)
    x0 = to_state(space, list(archs))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = EnsembleMLP(enc.dim + TIME_FEATURES, ensemble, hidden, layers)
        opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
        weights = None  # [M, n]: each member's share of each arch in its resample
        if bootstrap:
            n = len(target)
            counts = torch.stack([torch.bincount(torch.randint(n, (n,)), minlength=n) for _ in range(ensemble)])
            weights = counts.float() / n
        clean = features(sde, enc, x0, 0.0)
        for _ in range(steps):
            if noise_aware:
                x, t = noisy_state(sde, x0, True, clean_frac)
                h = features(sde, enc, x, t)
            else:
                h = clean
            opt.zero_grad(set_to_none=True)
            err = (net(h) - target).pow(2)  # [M, n]
            loss = err.mean() if weights is None else (weights * err).sum(1).mean()
            loss.backward()
            opt.step()
    return FastSurrogate(space, net, sde, y_mean, y_std, enc)


def fit_lightning(
    space: SearchSpace,
    archs: Sequence[Arch],
    y: np.ndarray,
    sde_config: Mapping[str, Any] = DEFAULT_SDE,
    *,
    ensemble: int = 5,
    seed: int = 0,
    trainer: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Any:
    """``fit_predictor`` on ``(archs, y [n])`` (target ``"objective"``); ``trainer``: the Lightning
    settings (``nag.modules.trainer.TrainerSettings``); other kwargs go to fit_predictor."""
    from nag.modules.predictor import fit_predictor

    return fit_predictor(space, list(archs), {TARGET: np.asarray(y, dtype=float)}, sde_config,
                         ensemble=ensemble, seed=seed, trainer=trainer, **kwargs)


def takes_trainer(name: str) -> bool:
    """Whether the surrogate registered as ``name`` trains with Lightning settings (a ``trainer`` setting)."""
    import inspect

    return "trainer" in inspect.signature(SURROGATES.get(name)).parameters


SURROGATES: Registry[Callable[..., Any]] = Registry("surrogate", group="nag.surrogates")
SURROGATES.register("fast", fit_fast)
SURROGATES.register("predictor", fit_lightning)
SURROGATES.register_lazy("gp", "nag.search.gp:fit_gp")


SURROGATE_ARGS = 4  # space, archs, y, sde_config: passed to every surrogate, not settings


def check_surrogate(name: str, params: Mapping[str, Any], role: str = "surrogate") -> None:
    """Fail now, not after the first queries: ``name`` must be a surrogate that takes every key of ``params``."""
    check_settings(f"{role} {name!r}", SURROGATES.get(name), params, skip=SURROGATE_ARGS)


def fit_surrogate(
    name: str,
    space: SearchSpace,
    archs: Sequence[Arch],
    y: np.ndarray,
    sde_config: Mapping[str, Any] = DEFAULT_SDE,
    **params: Any,
) -> Any:
    """Fit the surrogate registered as ``name`` on ``(archs, y [n])``.

    A setting the surrogate does not take is a ConfigError naming the settings it does take.
    """
    return SURROGATES.build(name, space, archs, y, sde_config, **params)  # SURROGATE_ARGS positional



def predict_mean_std(predictor: Any, archs: Sequence[Arch]) -> tuple[np.ndarray, np.ndarray]:
    """Clean (t = 0) ensemble mean and std of the first target. -> ([B], [B])."""
    mean, var = predictor.predict_archs(list(archs), t=0.0)
    return mean[:, 0].double().numpy(), var[:, 0].clamp_min(0).sqrt().double().numpy()
