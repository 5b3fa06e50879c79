"""Prior = a space + an SDE + a trained score network (EMA weights), with safe checkpoints.

A prior checkpoint is a plain dict loaded with ``torch.load(weights_only=True)`` (no pickled
code). It records the space's ``describe()`` and graph, the SDE config, the network config,
the training split (seed and ratio, enough to rebuild it) and the EMA weights only.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from nag.diffusion.sde import SDE, build_sde
from nag.errors import CheckpointMismatchError, ConfigError, MissingDataError
from nag.registry import Registry
from nag.schema import Settings
from nag.spaces.base import Arch, SearchSpace

FORMAT = "nag.prior"
VERSION = 1
ASSETS = Path(__file__).resolve().parents[1] / "assets" / "priors"

# A plugin declares the default prior of its space under the entry-point group "nag.priors":
#     [project.entry-points."nag.priors"]
#     my_space = "my_pkg:PRIOR_PATH"     # a path (str / Path), or a function returning one
# nag's own spaces use nag/assets/priors/<space>.pt.
PRIORS: Registry[Any] = Registry("default prior", group="nag.priors")


class PriorConfig(Settings):
    """The ``prior:`` config block (group ``prior/``): ``path`` of a prior written by train_prior,
    or null for the space's default prior (``default_prior_path``)."""

    settings_name: ClassVar[str] = "prior"

    path: str | None = None


class Prior:
    """Score-based prior over a space's architectures.

    Args:
        space: the search space whose graph the network was trained on.
        sde: the SDE (or its config) the network was trained under.
        net: the score network (EMA weights); it is put in eval mode.
        net_config: the config that rebuilds ``net`` (``build_score_net``), saved with it.
        split: ``ArchDataModule.split_info()`` of the training data (for novelty), or None.
    """

    def __init__(
        self,
        space: SearchSpace,
        sde: SDE | Mapping[str, Any],
        net: nn.Module,
        net_config: Mapping[str, Any] | None = None,
        split: Mapping[str, Any] | None = None,
    ) -> None:
        self.space = space
        self.sde = build_sde(sde)
        self.net = net.eval().requires_grad_(False)
        self.net_config = dict(net_config or {})
        self.split = dict(split) if split else None

    @property
    def shape(self) -> tuple[int, int]:
        """(N, V) of one architecture's state."""
        return (self.space.num_nodes, self.space.num_ops)

    @property
    def device(self) -> torch.device:
        """Where the network lives (GuidedSampler samples there)."""
        return next(self.net.parameters()).device

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.net.parameters())

    @torch.no_grad()
    def score_fn(self, x: Tensor, t: Tensor) -> Tensor:
        """Score of the diffused distribution. x: [B, N, V], t: [B] -> [B, N, V]."""
        from nag.modules.score import score_from_net

        return score_from_net(self.net, self.sde, x, t)

    def sampler(self, solver: Any = None, guides: Sequence[Any] = (), batch_size: int = 256) -> Any:
        """A GuidedSampler over this prior (no guides = plain prior sampling; solver None =
        ``nag.diffusion.solvers.DEFAULT_SOLVER``)."""
        from nag.diffusion.guidance import GuidedSampler

        return GuidedSampler(self, guides=tuple(guides), solver=solver, batch_size=batch_size)

    def sample(
        self, n: int, solver: Any = None, seed: int = 0, batch_size: int = 256, guides: Sequence[Any] = ()
    ) -> list[Arch]:
        """n decoded architectures (always valid: the space decodes by masked argmax)."""
        return self.sampler(solver, guides, batch_size).sample(n, seed=seed)

    def sample_tensor(
        self, n: int, solver: Any = None, seed: int = 0, batch_size: int = 256, guides: Sequence[Any] = ()
    ) -> Tensor:
        """n raw samples [n, N, V] in the [-1, 1] scale (before decoding)."""
        return self.sampler(solver, guides, batch_size).sample_tensor(n, seed=seed)

    def train_archs(self) -> list[Arch] | None:
        """The training architectures, rebuilt from the recorded split (None if unrecorded)."""
        if not self.split:
            return None
        from nag.modules.arch_data import ArchDataModule

        return ArchDataModule.from_split_info(self.space, self.split).train_archs

    def __repr__(self) -> str:
        return f"Prior(space={self.space.name!r}, sde={self.sde!r}, params={self.n_params})"


# ----- checkpoints ----------------------------------------------------------------------------
def _differences(recorded: Mapping[str, Any], given: Mapping[str, Any]) -> list[str]:
    out = []
    for key in sorted(set(recorded) | set(given)):
        a, b = recorded.get(key), given.get(key)
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            same = math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
        else:
            same = a == b
        if not same:
            out.append(f"{key} (checkpoint: {a!r}, given: {b!r})")
    return out


def _graph(space: SearchSpace) -> dict[str, list]:
    return {"adjacency": space.adjacency.float().tolist(), "positions": space.positions.long().tolist()}


def save_prior(prior: Prior, path: str | Path, extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``prior`` to ``path`` atomically (EMA weights and the configs that rebuild it)."""
    from nag.io import atomic_torch_save

    ckpt = {
        "format": FORMAT,
        "version": VERSION,
        "space": prior.space.describe(),
        "graph": _graph(prior.space),
        "sde": prior.sde.config(),
        "net": prior.net_config,
        "split": prior.split,
        "state_dict": {k: v.detach().cpu().clone() for k, v in prior.net.state_dict().items()},
        "extra": dict(extra or {}),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(ckpt, path)
    return path


def read_prior_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict at ``path`` (tensors and plain values only; nothing is executed)."""
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(
            f"no prior checkpoint at {path}. Pass prior.path=<file written by train_prior>, or train one: "
            "python -m nag.run experiment=train_prior space=<name>"
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling refused or a torn file
        raise CheckpointMismatchError(f"{path} is not a readable nag prior checkpoint: {exc}") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointMismatchError(
            f"{path} is not a nag prior checkpoint (expected format {FORMAT!r}; Lightning .ckpt files of "
            "ScoreModule are training state, export them with save_prior)"
        )
    if ckpt.get("version", 0) > VERSION:
        raise CheckpointMismatchError(f"{path} has prior format version {ckpt['version']}; this nag reads <= {VERSION}")
    return ckpt


def load_prior(
    path: str | Path | None, space: SearchSpace | None = None, sde: SDE | Mapping[str, Any] | None = None
) -> Prior:
    """Load a prior, refusing one made for another space or SDE (CheckpointMismatchError).

    Every prior nag uses is loaded here (the ``prior.path`` config key goes straight in).

    Args:
        path: a file written by ``save_prior``; None = the space's default prior
            (``default_prior_path``, then ``space`` is required).
        space: the space to use; default: the recorded space, built by name with default options.
        sde: if given, the SDE the caller expects; a different recorded SDE is refused.
    """
    from nag.modules.nets import build_score_net

    path = prior_path(path, space.name if space is not None else None)
    ckpt = read_prior_checkpoint(path)
    recorded_space = ckpt["space"]
    if space is None:
        from nag.spaces import get_space

        space = get_space(recorded_space["name"])
    diffs = _differences(recorded_space, space.describe()) + _differences(ckpt["graph"], _graph(space))
    if diffs:
        raise CheckpointMismatchError(
            f"prior checkpoint {path} was trained for space {recorded_space.get('name')!r} "
            f"({recorded_space}), which differs from the given space {space.name!r} in: {'; '.join(diffs)}. "
            f"Train a prior for this space: python -m nag.run experiment=train_prior space={space.name}"
        )
    if sde is not None:
        diffs = _differences(ckpt["sde"], build_sde(sde).config())
        if diffs:
            raise CheckpointMismatchError(
                f"prior checkpoint {path} was trained under SDE {ckpt['sde']}, which differs from the "
                f"given SDE in: {'; '.join(diffs)}. Use the checkpoint's SDE or retrain the prior."
            )
    net = build_score_net(ckpt["net"], space.num_nodes, space.num_ops, space.adjacency, space.positions)
    try:
        net.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise CheckpointMismatchError(f"weights in {path} do not fit net config {ckpt['net']}: {exc}") from exc
    return Prior(space, ckpt["sde"], net, ckpt["net"], ckpt.get("split"))


def prior_path(path: str | Path | None, space_name: str | None) -> Path:
    """``path`` (``~`` expanded), or the default prior of ``space_name`` when ``path`` is None."""
    if path:
        return Path(path).expanduser()
    if space_name is None:
        raise MissingDataError("load_prior(None) needs the space whose default prior to load: pass space=...")
    return default_prior_path(space_name)


def declared_prior(space_name: str) -> Path | None:
    """The default prior a plugin declares for ``space_name`` (entry-point group ``nag.priors``)."""
    if space_name not in PRIORS:
        return None
    target = PRIORS.get(space_name)
    return Path(target() if callable(target) else target)


def default_prior_path(space_name: str, must_exist: bool = True) -> Path:
    """Path of the default prior of ``space_name``: the one its plugin declares (``nag.priors``),
    else the one nag ships (nag/assets/priors/<name>.pt)."""
    path = declared_prior(space_name) or ASSETS / f"{space_name}.pt"
    if must_exist and not path.is_file():
        shipped = sorted(p.stem for p in ASSETS.glob("*.pt")) if ASSETS.is_dir() else []
        raise MissingDataError(
            f"no default prior for space {space_name!r} at {path} (nag ships: {shipped or 'none'}; a plugin "
            f"declares its own under the entry-point group 'nag.priors'). Train one with: python -m nag.run "
            f"experiment=train_prior space={space_name} save_default=true (or pass prior.path=<a prior.pt "
            f"written by train_prior>)"
        )
    return path


def writable_default_prior_path(space_name: str) -> Path:
    """Where ``train_prior save_default=true`` writes: the path a plugin declares for its space,
    or nag/assets/priors for nag's own spaces. nag never writes a plugin's prior into its own assets."""
    from nag.spaces import builtin_spaces

    declared = declared_prior(space_name)
    if declared is not None:
        return declared
    if space_name in builtin_spaces():
        return ASSETS / f"{space_name}.pt"
    raise ConfigError(
        f"save_default=true: space {space_name!r} declares no default prior, and nag does not write a plugin's "
        f"prior into its own assets. Declare one in the plugin's pyproject: [project.entry-points.\"nag.priors\"] "
        f"{space_name} = \"<package>:PRIOR_PATH\" (a path inside the package), or keep the run's prior.pt and "
        f"pass prior.path=<it>."
    )
