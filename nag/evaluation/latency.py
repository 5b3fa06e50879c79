"""CPU latency of an architecture, measured against a reference network (``LatencyMeter``).

Latency is measured serially, one network at a time, in the calling process: a second timed
network on the same cores would load the machine that the measurement reads, so it is never
handed to a parallel executor.
"""
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, ClassVar

import numpy as np
import torch
from pydantic import Field

from nag.errors import ConfigError
from nag.schema import Settings
from nag.spaces.base import Arch, SearchSpace


class Timing(Settings):
    """How latency is measured (see ``LatencyMeter``).

    Args:
        batch_size: images per forward pass.
        runs: timed (reference, arch) pairs per arch; the median ratio is kept.
        warmup: untimed passes of both first.
        reference: the reference arch (string form); None = ``space.sample(1, 0)[0]``.
        reference_ms: the reference's latency that sets the ms scale; None = measure it once (see
            ``LatencyMeter``). Give the value of earlier measurements to put new ones on their scale.
    """

    settings_name: ClassVar[str] = "timing"

    batch_size: Annotated[int, Field(ge=1)] = 1
    runs: Annotated[int, Field(ge=1)] = 10
    warmup: Annotated[int, Field(ge=0)] = 3
    reference: str | None = None
    reference_ms: Annotated[float, Field(gt=0)] | None = None


class LatencyMeter:
    """CPU latency (ms) of ``space.build(arch, None)`` in eval mode at ``space.default_input_shape()``.

    On a shared machine a plain median of timed passes tracks the machine's load more than the
    arch (test-retest Spearman 0.78 for 40 archs at load 1.8 on this project's 2-core box, 0.985 paired;
    docs/mbv3.md). So
    every timed pass of the arch follows one of a fixed reference network, and the arch's
    latency is ``median(t_arch / t_ref) * reference_ms``: a slowdown that hits both passes of a
    pair cancels, and the median drops pairs hit by a burst. ``reference_ms`` (``timing.reference_ms``,
    else the reference's median over ``max(30, 3 * runs)`` passes, measured when the meter is made)
    only sets the scale; that one number is load-sensitive, so measurements meant to be compared
    with earlier ones (e.g. a predictor's constraint in ms) reuse the earlier ``reference_ms``.
    """

    def __init__(self, space: SearchSpace, timing: Timing = Timing()) -> None:
        self.space, self.timing = space, timing
        ref = space.parse(timing.reference) if timing.reference is not None else space.sample(1, 0)[0]
        self.reference = space.format(ref)
        self._ref = space.build(ref, None).eval()
        gen = torch.Generator().manual_seed(0)
        self._x = torch.randn(timing.batch_size, *space.default_input_shape(), generator=gen)
        with torch.inference_mode():
            for _ in range(max(timing.warmup, 1)):
                self._ref(self._x)
            self.reference_ms = timing.reference_ms or 1e3 * float(
                np.median([self._time(self._ref) for _ in range(max(30, 3 * timing.runs))])
            )

    def _time(self, model: torch.nn.Module) -> float:
        start = time.perf_counter()
        model(self._x)
        return time.perf_counter() - start

    def ratio(self, arch: Arch) -> float:
        """Median over ``runs`` pairs of ``t_arch / t_ref``."""
        model = self.space.build(arch, None).eval()
        with torch.inference_mode():
            for _ in range(self.timing.warmup):
                self._ref(self._x)
                model(self._x)
            ratios = []
            for _ in range(self.timing.runs):
                t_ref = self._time(self._ref)
                ratios.append(self._time(model) / t_ref)
        return float(np.median(ratios))

    def __call__(self, arch: Arch) -> float:
        """Latency of ``arch`` in ms (the reference's scale)."""
        return self.ratio(arch) * self.reference_ms


def timing_like(timing: Timing, infos: Sequence[Mapping[str, Any]]) -> Timing:
    """``timing`` with the unset ``reference`` / ``reference_ms`` taken from predictors' records, so
    that new latencies are on their training data's scale. Predictors that disagree are a ConfigError."""
    found: dict[str, set] = {"reference": set(), "reference_ms": set()}
    for info in infos:
        ctx = info.get("measure_context") or {}
        if ctx.get("reference") is not None:
            found["reference"].add(ctx["reference"])
        if info.get("reference_ms") is not None:
            found["reference_ms"].add(float(info["reference_ms"]))
    updates = {}
    for key, values in found.items():
        if getattr(timing, key) is None and values:
            if len(values) > 1:
                raise ConfigError(f"the guides' predictors were measured with different {key}s {sorted(values)}; set timing.{key}")
            updates[key] = values.pop()
    return timing.with_(**updates)


__all__ = ["LatencyMeter", "Timing", "timing_like"]
