"""MobileNetV3 once-for-all (OFA) search space, built through timm's MobileNetV3 builder.

Graph view: 5 stages x 4 layer slots = 20 nodes on a fixed chain; node ``4 * stage + slot``.
Each present slot holds one of 9 ops, a (kernel, expand) pair named like ``"k3_e4"``; a skipped
slot is EMPTY (an all-zero one-hot row). A stage has depth 2, 3 or 4: slots 1-2 are always
present and slot 4 is used only if slot 3 is.

An arch is a tuple of 5 stages, each a tuple of its (kernel, expand) pairs, e.g.
``((3, 4), (5, 6))`` for a depth-2 stage. Its string form is ``k3e4-k5e6|k7e3-k3e3-k5e4|...``.
"""
from __future__ import annotations

import json
import os
import re
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
import torch.nn.functional as F
from timm.models._efficientnet_blocks import SqueezeExcite
from timm.models._efficientnet_builder import decode_arch_def, round_channels
from timm.models.mobilenetv3 import MobileNetV3
from pydantic import Field
from torch import Tensor, nn

from nag.errors import ConfigError, InvalidArchError
from nag.schema import checked
from nag.spaces.base import EMPTY, SearchSpace, as_rng, coerce_arch

KERNELS: tuple[int, ...] = (3, 5, 7)
EXPANDS: tuple[int, ...] = (3, 4, 6)
NUM_STAGES = 5
SLOTS = 4
DEPTHS: tuple[int, ...] = (2, 3, 4)
OP_PAIRS: tuple[tuple[int, int], ...] = tuple((k, e) for k in KERNELS for e in EXPANDS)  # token -> (k, e)
_TOKEN_OF = {pair: i for i, pair in enumerate(OP_PAIRS)}
_LAYER_RE = re.compile(r"k(\d+)e(\d+)")

Layer = tuple[int, int]
MBv3Arch = tuple[tuple[Layer, ...], ...]


@dataclass(frozen=True)
class StageSpec:
    """Fixed (non-searched) settings of one OFA stage."""

    channels: int
    stride: int  # of the stage's first layer
    act: str  # timm block-string activation code: "re" (ReLU) or "hs" (hard-swish)
    se: bool


OFA_STAGES: tuple[StageSpec, ...] = (
    StageSpec(24, 2, "re", False),
    StageSpec(40, 2, "re", True),
    StageSpec(80, 2, "hs", False),
    StageSpec(112, 1, "hs", True),
    StageSpec(160, 2, "hs", True),
)
STEM_CHANNELS = 16
FINAL_EXPAND_CHANNELS = 960
HEAD_CHANNELS = 1280
# OFA's squeeze-excite: reduce to make_divisible(expanded / 4, 8) with ReLU, hard-sigmoid gate
_OFA_SE = partial(SqueezeExcite, gate_layer="hard_sigmoid", force_act_layer=nn.ReLU, rd_round_fn=round_channels)

_ACCEPTED = (
    f"5 stages separated by '|', each 2-4 layers separated by '-', a layer written 'k<kernel>e<expand>' "
    f"with kernel in {KERNELS} and expand in {EXPANDS} (e.g. 'k3e4-k5e6|k7e3-k3e3-k5e4|k3e3-k3e3|"
    f"k5e4-k5e4-k5e4-k5e4|k7e6-k7e6')"
)


class ResizeInput(nn.Module):
    """Upsamples images smaller than ``min_resolution`` (bilinear) before ``net``. x: [B, C, H, W]."""

    def __init__(self, net: nn.Module, min_resolution: int) -> None:
        super().__init__()
        self.net = net
        self.min_resolution = min_resolution

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        m = self.min_resolution
        if h < m or w < m:
            x = F.interpolate(x, size=(max(h, m), max(w, m)), mode="bilinear", align_corners=False)
        return self.net(x)


class MBv3Space(SearchSpace):
    """The once-for-all MobileNetV3 space (OFA / HELP / DiffusionNAG), (9^2 + 9^3 + 9^4)^5 archs.

    Args:
        width_mult: channel multiplier applied to every layer (stem, stages, 960 and 1280 heads),
            rounded to multiples of 8 as in OFA.
        resolution: input side used by ``build(arch, None)``, ``cost`` and ``latency``.
        num_classes: classes of ``build(arch, None)`` (ImageNet: 1000).
        min_resolution: built models upsample smaller inputs to this side first (e.g. 8x8 digits),
            so that 5 stride-2 reductions still leave a feature map.
        latency_cache: optional JSON file that persists ``latency`` measurements across runs.
    """

    name = "mbv3"
    ops = tuple(f"k{k}_e{e}" for k, e in OP_PAIRS)
    num_nodes = NUM_STAGES * SLOTS

    @checked
    def __init__(
        self,
        width_mult: Annotated[float, Field(gt=0)] = 1.0,
        resolution: Annotated[int, Field(ge=1)] = 224,
        num_classes: Annotated[int, Field(ge=1)] = 1000,
        min_resolution: Annotated[int, Field(ge=1)] = 32,
        latency_cache: str | os.PathLike | None = None,
    ) -> None:
        self.width_mult = float(width_mult)
        self.resolution = resolution
        self.num_classes = num_classes
        self.min_resolution = min_resolution
        self.latency_cache = Path(latency_cache) if latency_cache is not None else None
        self._latency: dict[str, float] | None = None  # loaded lazily from latency_cache
        self._cost: dict[MBv3Arch, dict[str, float]] = {}

    # ----- graph -------------------------------------------------------------------------
    @property
    def adjacency(self) -> Tensor:
        """Chain 0 -> 1 -> ... -> 19. [20, 20]."""
        return torch.diag(torch.ones(self.num_nodes - 1), diagonal=1)

    @property
    def positions(self) -> Tensor:
        """Node id ``4 * stage + slot`` (stage 0..4, slot 0..3): stage = id // 4, slot = id % 4. [20]."""
        stage, slot = torch.meshgrid(torch.arange(NUM_STAGES), torch.arange(SLOTS), indexing="ij")
        return (SLOTS * stage + slot).flatten()

    def optional_nodes(self) -> Tensor:
        """Slots 3 and 4 of every stage. [20] bool."""
        return (torch.arange(self.num_nodes) % SLOTS >= 2)

    @property
    def size(self) -> int:
        v = len(OP_PAIRS)
        return sum(v**d for d in DEPTHS) ** NUM_STAGES

    # ----- tokens ------------------------------------------------------------------------
    def to_tokens(self, arch: MBv3Arch) -> tuple[int, ...]:
        if isinstance(arch, str):
            raise InvalidArchError(f"mbv3 arch values are tuples; parse the string {arch!r} with space.parse")
        try:
            stages = list(arch)
            if len(stages) != NUM_STAGES:
                raise ValueError
            tokens: list[int] = []
            for stage in stages:
                layers = [tuple(layer) for layer in stage]
                if len(layers) not in DEPTHS:
                    raise ValueError
                tokens += [_TOKEN_OF[layer] for layer in layers] + [EMPTY] * (SLOTS - len(layers))
        except (TypeError, ValueError, KeyError) as exc:
            raise InvalidArchError(
                f"{arch!r} is not an mbv3 arch: expected a tuple of 5 stages, each a tuple of 2-4 "
                f"(kernel, expand) pairs with kernel in {KERNELS} and expand in {EXPANDS}"
            ) from exc
        return tuple(tokens)

    def from_tokens(self, tokens: Sequence[int]) -> MBv3Arch:
        tokens = list(tokens)
        if len(tokens) != self.num_nodes:
            raise InvalidArchError(f"mbv3 expects {self.num_nodes} tokens (5 stages x 4 slots), got {len(tokens)}")
        stages = []
        for s in range(NUM_STAGES):
            slot = tokens[SLOTS * s : SLOTS * (s + 1)]
            for t in slot:
                if not (isinstance(t, (int, np.integer)) and EMPTY <= t < len(OP_PAIRS)):
                    raise InvalidArchError(
                        f"mbv3 token {t!r} in stage {s + 1}: accepted 0..{len(OP_PAIRS) - 1} or EMPTY (-1)"
                    )
            if EMPTY in slot[:2]:
                raise InvalidArchError(f"mbv3 stage {s + 1}: slots 1 and 2 must be present, got tokens {slot}")
            if slot[2] == EMPTY and slot[3] != EMPTY:
                raise InvalidArchError(f"mbv3 stage {s + 1}: slot 4 is used only if slot 3 is, got tokens {slot}")
            stages.append(tuple(OP_PAIRS[t] for t in slot if t != EMPTY))
        return tuple(stages)

    def decode_tokens(self, x: Tensor) -> Tensor:
        """x [B, 20, 9] in [0, 1] or [-1, 1] -> tokens [B, 20], every row a valid arch.

        Slots 1-2 take the argmax over the 9 ops. Slot 3/4 is present when its largest entry
        exceeds 0.5 on the [0, 1] scale (the base rule); slot 4 is forced EMPTY when slot 3 is.
        """
        tokens = super().decode_tokens(x).view(-1, NUM_STAGES, SLOTS).clone()
        tokens[..., 3] = tokens[..., 3].masked_fill(tokens[..., 2] == EMPTY, EMPTY)
        return tokens.view(-1, self.num_nodes)

    # ----- strings and external formats ----------------------------------------------------
    def parse(self, text: str) -> MBv3Arch:
        if not isinstance(text, str):
            raise InvalidArchError(f"mbv3.parse expects a string: {_ACCEPTED}; got {type(text).__name__}")
        stages = text.strip().split("|")
        if len(stages) != NUM_STAGES:
            raise InvalidArchError(f"{text!r} has {len(stages)} stage(s); accepted: {_ACCEPTED}")
        arch = []
        for s, stage in enumerate(stages, start=1):
            layers = stage.split("-")
            if len(layers) not in DEPTHS:
                raise InvalidArchError(
                    f"stage {s} of {text!r} has {len(layers)} layer(s); a stage has 2, 3 or 4. Accepted: {_ACCEPTED}"
                )
            pairs = []
            for layer in layers:
                m = _LAYER_RE.fullmatch(layer)
                if m is None or (int(m[1]), int(m[2])) not in _TOKEN_OF:
                    raise InvalidArchError(f"layer {layer!r} in stage {s} of {text!r} is not accepted: {_ACCEPTED}")
                pairs.append((int(m[1]), int(m[2])))
            arch.append(tuple(pairs))
        return tuple(arch)

    def format(self, arch: MBv3Arch) -> str:
        self.to_tokens(arch)  # validates
        return "|".join("-".join(f"k{k}e{e}" for k, e in stage) for stage in arch)

    def from_ofa(
        self,
        depths: Sequence[int] | str,
        kernel_sizes: Sequence[int] | str,
        expand_ratios: Sequence[int] | str,
    ) -> MBv3Arch:
        """Arch from the OFA / HELP format: 5 depths, 20 slot kernels, 20 slot expands.

        Each may also be a '-'-joined string (as in the HELP csv). Slots beyond a stage's depth
        are ignored.
        """
        d = _int_list(depths, "depths")
        k = _int_list(kernel_sizes, "kernel_sizes")
        e = _int_list(expand_ratios, "expand_ratios")
        if len(d) != NUM_STAGES or len(k) != self.num_nodes or len(e) != self.num_nodes:
            raise InvalidArchError(
                f"OFA format needs 5 depths and 20 kernel sizes / expand ratios, got {len(d)}, {len(k)}, {len(e)}"
            )
        if any(x not in DEPTHS for x in d):
            raise InvalidArchError(f"OFA depths {d}: each stage depth must be in {DEPTHS}")
        arch = tuple(
            tuple((k[SLOTS * s + j], e[SLOTS * s + j]) for j in range(d[s])) for s in range(NUM_STAGES)
        )
        self.to_tokens(arch)  # validates the used slots' kernels and expands
        return arch

    def to_ofa(self, arch: MBv3Arch) -> tuple[list[int], list[int], list[int]]:
        """(depths [5], kernel_sizes [20], expand_ratios [20]); unused slots are filled with 3."""
        tokens = self.to_tokens(arch)
        pairs = [OP_PAIRS[t] if t != EMPTY else (3, 3) for t in tokens]
        return [len(stage) for stage in arch], [p[0] for p in pairs], [p[1] for p in pairs]

    # ----- sampling ------------------------------------------------------------------------
    def sample(self, n: int, generator: np.random.Generator | int | None = None) -> list[MBv3Arch]:
        """n archs, OFA style: each stage depth uniform in {2, 3, 4}, each used slot's op uniform."""
        rng = as_rng(generator)
        depths = rng.integers(DEPTHS[0], DEPTHS[-1] + 1, size=(n, NUM_STAGES)).tolist()
        ops = rng.integers(0, len(OP_PAIRS), size=(n, NUM_STAGES, SLOTS)).tolist()
        return [
            tuple(tuple(OP_PAIRS[t] for t in ops[i][s][: depths[i][s]]) for s in range(NUM_STAGES))
            for i in range(n)
        ]

    # ----- networks ------------------------------------------------------------------------
    def arch_def(self, arch: MBv3Arch) -> list[list[str]]:
        """timm block strings of the whole trunk (first DS block, 5 searched stages, 960 conv)."""
        self.to_tokens(arch)
        trunk = [[f"ds_r1_k3_s1_e1_c{STEM_CHANNELS}_nre"]]
        for stage, spec in zip(arch, OFA_STAGES):
            tail = ("_se0.25" if spec.se else "") + ("_nre" if spec.act == "re" else "")
            strides = [spec.stride] + [1] * (len(stage) - 1)
            trunk.append([f"ir_r1_k{k}_s{s}_e{e}_c{spec.channels}{tail}" for (k, e), s in zip(stage, strides)])
        trunk.append([f"cn_r1_k1_s1_c{FINAL_EXPAND_CHANNELS}"])
        return trunk

    def build(self, arch: MBv3Arch | str, task: Any = None) -> nn.Module:
        """timm ``MobileNetV3`` for ``arch``; wrapped in ``ResizeInput`` for images below min_resolution.

        Channels and classes come from ``task.input_shape`` / ``task.num_classes`` (ImageNet
        defaults of this space when task is None). Mirrors OFA: stem 3x3 s2 16 hard-swish, DS k3
        16 ReLU, the 5 stages, 1x1 conv to 960, global pool, 1x1 conv to 1280 (no bias), classifier.
        """
        arch = coerce_arch(self, arch)
        c, h, w = self._input_shape(task)
        num_classes = self.num_classes if task is None else int(task.num_classes)
        round_chs = partial(round_channels, multiplier=self.width_mult)
        net = MobileNetV3(
            block_args=decode_arch_def(self.arch_def(arch)),
            num_classes=num_classes,
            in_chans=c,
            stem_size=STEM_CHANNELS,
            num_features=round_chs(HEAD_CHANNELS),
            head_bias=False,
            act_layer=nn.Hardswish,
            se_layer=_OFA_SE,
            se_from_exp=True,
            round_chs_fn=round_chs,
        )
        if min(h, w) < self.min_resolution:
            return ResizeInput(net, self.min_resolution)
        return net

    def _input_shape(self, task: Any) -> tuple[int, int, int]:
        if task is None:
            return self.default_input_shape()
        shape = tuple(getattr(task, "input_shape", ()))
        if len(shape) != 3:
            raise ConfigError(f"mbv3.build needs task.input_shape = (C, H, W), got {shape!r} from {task!r}")
        return tuple(int(v) for v in shape)  # type: ignore[return-value]

    def default_input_shape(self) -> tuple[int, int, int]:
        return (3, self.resolution, self.resolution)

    # ----- costs ---------------------------------------------------------------------------
    def cost(self, arch: MBv3Arch | str) -> dict[str, float]:
        """Params and FLOPs of ``build(arch, None)`` at (3, resolution, resolution); cached."""
        arch = coerce_arch(self, arch)
        if arch not in self._cost:
            self._cost[arch] = super().cost(arch)
        return dict(self._cost[arch])

    def latency(self, arch: MBv3Arch | str, batch_size: int = 1, runs: int = 10, warmup: int = 3) -> float:
        """CPU latency (ms) of ``build(arch, None)`` in eval mode: median of ``runs`` after ``warmup``.

        Cached by (arch, batch size, resolution, width, torch threads) in memory and, when the
        space has a ``latency_cache`` path, in that JSON file.
        """
        arch = coerce_arch(self, arch)
        if batch_size < 1 or runs < 1 or warmup < 0:
            raise ConfigError(
                f"latency needs batch_size >= 1, runs >= 1, warmup >= 0; got {batch_size}, {runs}, {warmup}"
            )
        key = f"{self.format(arch)}@b{batch_size}@r{self.resolution}@w{self.width_mult:g}@t{torch.get_num_threads()}"
        cache = self._latency_table()
        if key in cache:
            return cache[key]
        model = self.build(arch, None).eval()
        x = torch.randn(batch_size, *self.default_input_shape())
        times = []
        with torch.inference_mode():
            for _ in range(warmup):
                model(x)
            for _ in range(runs):
                start = time.perf_counter()
                model(x)
                times.append(time.perf_counter() - start)
        cache[key] = ms = 1e3 * statistics.median(times)
        if self.latency_cache is not None:
            self._save_latency(key, ms)
        return ms

    def _latency_table(self) -> dict[str, float]:
        if self._latency is None:
            self._latency = _read_json(self.latency_cache) if self.latency_cache is not None else {}
        return self._latency

    def _save_latency(self, key: str, ms: float) -> None:
        assert self.latency_cache is not None
        table = _read_json(self.latency_cache)  # merge what other processes wrote meanwhile
        table[key] = ms
        self.latency_cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.latency_cache.with_name(f".{self.latency_cache.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(table, indent=1, sort_keys=True))
        os.replace(tmp, self.latency_cache)


def _int_list(value: Sequence[int] | str, name: str) -> list[int]:
    try:
        items = value.split("-") if isinstance(value, str) else list(value)
        return [int(v) for v in items]
    except (TypeError, ValueError) as exc:
        raise InvalidArchError(
            f"OFA {name} must be ints or a '-'-joined string like '2-3-4-2-3', got {value!r}"
        ) from exc


def _read_json(path: Path | None) -> dict[str, float]:
    if path is None or not path.is_file():
        return {}
    try:
        return {str(k): float(v) for k, v in json.loads(path.read_text()).items()}
    except (ValueError, AttributeError) as exc:
        raise ConfigError(
            f"latency cache {path} is not a JSON object of key -> ms; delete it or pass another path"
        ) from exc
