"""ScoreModule: trains a score network on architectures by denoising score matching.

Parametrisation (one place, used by training here and by sampling in ``nag.diffusion.prior``):
the network sees the input scaled to unit variance, ``c_in(t) x_t`` with
``c_in = 1 / sqrt(alpha(t)^2 + std(t)^2)`` (the data entries are +-1), and predicts ``-z``, the
negated standardised noise. The score is that output divided by ``std(t)``, so the loss
``||s std + z||^2`` is the plain noise-prediction loss ``||net + z||^2``, averaged over entries.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Annotated, Any

import lightning as L
import torch
from pydantic import Field
from torch import Tensor, nn

from nag.diffusion.sde import SDE, bcast, build_sde, perturb, sample_time
from nag.modules.nets import build_score_net
from nag.schema import factory_config


def net_output(net: nn.Module, sde: SDE, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """Run ``net`` on the preconditioned state. x: [B, N, V], t: [B] -> (out [B, N, V], std [B])."""
    alpha, std = sde.marginal_coeffs(t)
    c_in = torch.rsqrt(alpha.pow(2) + std.pow(2))
    return net(bcast(c_in, x) * x, t), std


def score_from_net(net: nn.Module, sde: SDE, x: Tensor, t: Tensor) -> Tensor:
    """The score ``grad_x log p_t(x)`` under this module's parametrisation. [B, N, V]."""
    out, std = net_output(net, sde, x, t)
    return out / bcast(std, x)


def dsm_loss(net: nn.Module, sde: SDE, x0: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Denoising score matching, ``mean ||s(x_t, t) std(t) + z||^2`` with ``t ~ U(eps, T)``."""
    t = sample_time(sde, x0.shape[0], generator=generator, device=x0.device)
    x_t, noise, _ = perturb(sde, x0, t, generator=generator)
    out, _ = net_output(net, sde, x_t, t)
    return (out + noise).pow(2).mean()


class ScoreModule(L.LightningModule):
    """Training logic for a score network over a space's graph, with EMA weights for sampling.

    Args:
        space_describe: ``space.describe()``, recorded so checkpoints can refuse another space.
        adjacency: [N, N] fixed DAG; positions: [N] position ids.
        sde_config: ``sde.config()`` (e.g. ``{"name": "ve", "sigma_min": 0.1, "sigma_max": 5.0}``).
        net_config: ``{"name": "dag_transformer", **kwargs}`` for ``build_score_net``.
        lr, warmup_steps: Adam learning rate, reached linearly over ``warmup_steps``.
        ema_decay: decay of the EMA weights (warmed up as ``min(decay, (1+k)/(10+k))``).
        grad_clip: max global gradient norm (0 disables).
    """

    def __init__(
        self,
        space_describe: Mapping[str, Any],
        adjacency: Any,
        positions: Any,
        sde_config: Mapping[str, Any],
        net_config: Mapping[str, Any],
        lr: Annotated[float, Field(gt=0)] = 2e-4,
        warmup_steps: Annotated[int, Field(ge=0)] = 200,
        ema_decay: Annotated[float, Field(ge=0, lt=1)] = 0.999,
        grad_clip: Annotated[float, Field(ge=0)] = 1.0,
    ) -> None:
        super().__init__()
        adjacency = torch.as_tensor(adjacency, dtype=torch.float32)
        positions = torch.as_tensor(positions, dtype=torch.long)
        self.save_hyperparameters(
            {
                "space_describe": dict(space_describe),
                "adjacency": adjacency.tolist(),
                "positions": positions.tolist(),
                "sde_config": dict(sde_config),
                "net_config": dict(net_config),
                "lr": lr,
                "warmup_steps": warmup_steps,
                "ema_decay": ema_decay,
                "grad_clip": grad_clip,
            }
        )
        self.sde = build_sde(sde_config)
        n, v = int(space_describe["num_nodes"]), len(space_describe["ops"])
        self.net = build_score_net(net_config, n, v, adjacency, positions)
        self.ema = copy.deepcopy(self.net).requires_grad_(False).eval()

    @classmethod
    def for_space(cls, space: Any, sde_config: Mapping[str, Any], net_config: Mapping[str, Any], **kw: Any) -> ScoreModule:
        """A ScoreModule over ``space``'s graph."""
        return cls(space.describe(), space.adjacency, space.positions, sde_config, net_config, **kw)

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.net.parameters())

    # ----- training ---------------------------------------------------------------------
    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        x0 = batch[0] if isinstance(batch, (tuple, list)) else batch
        loss = dsm_loss(self.net, self.sde, x0)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=x0.shape[0])
        return loss

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        # Here and not in on_train_batch_end: ModelCheckpoint saves before the module's
        # on_train_batch_end, so a checkpoint would miss this step's EMA update and a resumed run
        # would never make it. The step is not counted yet: this is step global_step + 1.
        self.update_ema(self.global_step + 1)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The noise of the loss comes from the global generators: a resumed run goes on with the
        # draws an uninterrupted run would make, not with the seed's first draws again.
        checkpoint["rng_state"] = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("rng_state")
        if state is not None:
            torch.set_rng_state(state["torch"])
            if state.get("cuda") is not None and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(state["cuda"])

    @torch.no_grad()
    def update_ema(self, step: int | None = None) -> None:
        """Move the EMA weights towards the net's, with decay ``min(ema_decay, (1 + k) / (10 + k))``
        at step ``k`` (default: ``global_step``)."""
        k = self.global_step if step is None else step
        decay = min(self.hparams.ema_decay, (1 + k) / (10 + k))
        ema_p, p = list(self.ema.parameters()), list(self.net.parameters())
        torch._foreach_lerp_(ema_p, p, 1.0 - decay)
        for eb, b in zip(self.ema.buffers(), self.net.buffers()):
            eb.copy_(b)

    def configure_optimizers(self) -> Any:
        opt = torch.optim.Adam(self.net.parameters(), lr=self.hparams.lr)
        warm = max(1, int(self.hparams.warmup_steps))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, (k + 1) / warm))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def configure_gradient_clipping(self, optimizer: Any, gradient_clip_val: Any = None, gradient_clip_algorithm: Any = None) -> None:
        if self.hparams.grad_clip:
            self.clip_gradients(optimizer, gradient_clip_val=self.hparams.grad_clip, gradient_clip_algorithm="norm")

    def train(self, mode: bool = True) -> ScoreModule:
        super().train(mode)
        self.ema.eval()  # the EMA copy never trains (no dropout)
        return self


PositiveInt = Annotated[int, Field(ge=1)]

# The ``train:`` config block of train_prior: ScoreModule's optimiser settings plus the run's length
# and cadence (its own keys, stated in experiments/experiment/train_prior.yaml).
ScoreTrainConfig = factory_config(
    ScoreModule, kind="score-model training", skip=5,
    max_steps=(PositiveInt, ...), ckpt_every=(PositiveInt, ...), log_every=(PositiveInt, ...),
    progress_every=(PositiveInt, ...),
)
