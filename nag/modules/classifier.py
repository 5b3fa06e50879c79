"""ClassifierModule: the training logic shared by every architecture's real training run."""
from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ClassifierModule(L.LightningModule):
    """Cross-entropy training of any ``net: x [B, C, H, W] -> logits [B, K]``.

    SGD (momentum, Nesterov, weight decay) with a per-step cosine schedule to zero. Logs
    ``train_loss`` (epoch mean), ``val_acc`` and ``test_acc`` (percent, exact over the split).
    """

    def __init__(
        self,
        net: nn.Module,
        lr: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        nesterov: bool = True,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.net = net
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.nesterov, self.label_smoothing = nesterov, label_smoothing
        self.results: dict[str, float] = {}  # last epoch's metrics, read by train_eval_model
        self.last_val_step = -1
        self._sums: dict[str, Tensor] = {}
        self._counts: dict[str, int] = {}

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    # ----- running sums over an epoch (exact means, whatever the batch sizes) -------------
    def _add(self, key: str, value: Tensor, count: int) -> None:
        self._sums[key] = self._sums.get(key, 0.0) + value.detach().float() * count  # stays on device
        self._counts[key] = self._counts.get(key, 0) + count

    def _mean(self, key: str) -> float:
        total, n = self._sums.pop(key, None), self._counts.pop(key, 0)
        return float(total) / n if total is not None and n else math.nan

    # ----- steps ---------------------------------------------------------------------------
    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        loss = F.cross_entropy(self(x), y, label_smoothing=self.label_smoothing)
        self._add("train_loss", loss, len(y))
        return loss

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train_loss", self._mean("train_loss"))

    def _accuracy_step(self, batch: tuple[Tensor, Tensor], key: str) -> None:
        x, y = batch
        correct = (self(x).argmax(dim=-1) == y).float().mean()
        self._add(key, correct * 100.0, len(y))

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._accuracy_step(batch, "val_acc")

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            self._mean("val_acc")
            return
        self.last_val_step = self.global_step
        self._log_epoch("val_acc", self._mean("val_acc"))

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._accuracy_step(batch, "test_acc")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test_acc", self._mean("test_acc"))

    def _log_epoch(self, key: str, value: float) -> None:
        self.results[key] = value
        self.log(key, value, on_step=False, on_epoch=True)

    # ----- optimisation -----------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        opt = torch.optim.SGD(
            self.parameters(),
            lr=self.lr,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            nesterov=self.nesterov and self.momentum > 0,
        )
        total = max(1, int(self.trainer.estimated_stepping_batches))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, total) / total)))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
