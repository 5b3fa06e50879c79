"""Parameter and FLOP counting for any nn.Module, used by every search space's ``cost``.

FLOPs follow the convention of NAS-Bench-201's counter: the multiply-accumulates (MACs) of
convolutions and Linear layers, plus one add per output element where there is a bias, counted
by forward hooks on one input sample. Normalisation, activations and pooling count zero.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call


def _conv_flops(m: nn.Conv1d | nn.Conv2d | nn.Conv3d, y: Tensor) -> int:
    macs_per_output = math.prod(m.kernel_size) * (m.in_channels // m.groups)
    return y[0].numel() * (macs_per_output + (m.bias is not None))


def _linear_flops(m: nn.Linear, y: Tensor) -> int:
    return y[0].numel() * (m.in_features + (m.bias is not None))


# module type -> FLOPs of one call on one sample (y: the batched output)
FLOP_COUNTERS: dict[type[nn.Module], Callable[[nn.Module, Tensor], int]] = {
    nn.Conv1d: _conv_flops,
    nn.Conv2d: _conv_flops,
    nn.Conv3d: _conv_flops,
    nn.Linear: _linear_flops,
}


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@torch.no_grad()
def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """FLOPs (MACs + bias adds) of one eval-mode forward pass on one sample x: [1, *input_shape].

    The pass runs on the meta device (shapes only: no arithmetic, no copy of the weights); a
    model that cannot run there (e.g. data-dependent ops) runs for real on its own device.
    """
    total = 0
    kinds = tuple(FLOP_COUNTERS)

    def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        nonlocal total
        counter = next(f for k, f in FLOP_COUNTERS.items() if isinstance(module, k))
        total += int(counter(module, output))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kinds)]
    was_training = model.training
    try:
        model.eval()
        try:
            meta = {
                name: torch.empty_like(t, device="meta")
                for name, t in itertools.chain(model.named_parameters(), model.named_buffers())
            }
            functional_call(model, meta, (torch.zeros(1, *input_shape, device="meta"),))
        except (NotImplementedError, RuntimeError, TypeError):
            total = 0
            tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
            device = tensor.device if tensor is not None else torch.device("cpu")
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return total


def count_cost(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, float]:
    """{'params_M': trainable params / 1e6, 'flops_M': FLOPs per sample / 1e6} of ``model``."""
    return {"params_M": count_params(model) / 1e6, "flops_M": count_flops(model, input_shape) / 1e6}
