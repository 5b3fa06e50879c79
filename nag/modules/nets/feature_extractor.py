"""Image features for the dataset encoder: a timm backbone, never downloaded at run time.

Weights come from, in order:

1. ``pretrained_path``, a local checkpoint file (``.safetensors``, ``.pth``/``.pt``/``.bin``):
   a timm / torchvision-style state dict, or an encoder nag trained itself (``save_weights``);
2. a local timm / Hugging Face / torch-hub cache that already holds the backbone's weights;
3. otherwise a randomly initialised backbone with a FIXED seed, with a one-time warning.

``weights_kind`` says which: ``pretrained`` (1 or 2, weights from elsewhere), ``trained`` (1, a
file written by ``save_weights``: an encoder nag trained on its own tasks) or ``random`` (3).
Experiments record it in results.json as ``encoder_weights``.
   Random convolutional features still separate datasets somewhat (they keep colour, texture
   and frequency statistics) but much less well than pretrained ones; a meta-predictor
   trained on random features must be used with the same random features (same seed), which
   the fixed seed guarantees.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Annotated, Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from nag.errors import ConfigError, MissingDataError

RANDOM_INIT_SEED = 0
WEIGHT_KINDS = ("pretrained", "trained", "random")
KIND_KEY = "nag_encoder_weights"  # marks a checkpoint written by save_weights (value: its kind)
_warned_random: set[str] = set()


def _load_state(path: Path) -> tuple[dict[str, Tensor], str]:
    """(state dict, weights kind) of a checkpoint file; unmarked files are "pretrained"."""
    kind = "pretrained"
    if path.suffix == ".safetensors":
        from safetensors import safe_open
        from safetensors.torch import load_file

        state = load_file(str(path))
        with safe_open(str(path), framework="pt") as f:
            kind = (f.metadata() or {}).get(KIND_KEY, kind)
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and isinstance(state.get(KIND_KEY), str):
            kind = state.pop(KIND_KEY)
    for key in ("state_dict", "model", "state_dict_ema"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
            break
    if kind not in WEIGHT_KINDS:
        raise ConfigError(f"weights file {path} says {KIND_KEY}={kind!r}; expected one of {list(WEIGHT_KINDS)}")
    return {k.removeprefix("module."): v for k, v in state.items()}, kind


def cached_weights(model: nn.Module) -> Path | None:
    """A local copy of ``model``'s pretrained weights in the HF-hub or torch-hub cache, if any.

    Looks only at the local disk; never opens a network connection.
    """
    cfg: dict[str, Any] = dict(getattr(model, "pretrained_cfg", None) or {})
    hub_id = cfg.get("hf_hub_id")
    if hub_id:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:  # pragma: no cover - huggingface_hub ships with timm
            try_to_load_from_cache = None
        if try_to_load_from_cache is not None:
            for filename in ("model.safetensors", "pytorch_model.bin"):
                hit = try_to_load_from_cache(hub_id, filename)
                if isinstance(hit, str) and os.path.isfile(hit):
                    return Path(hit)
    url = cfg.get("url")
    if url:
        candidate = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
        if candidate.is_file():
            return candidate
    return None


class ImageFeatureExtractor(nn.Module):
    """Frozen timm backbone: images ``[*, C, H, W]`` -> features ``[*, F]``.

    Grey images (C=1) are repeated to 3 channels; images smaller than ``min_size`` are resized
    (bilinear) up to it. Inputs are used as given (no extra normalisation).

    Args:
        backbone: a timm model name, e.g. "resnet18" (F=512).
        pretrained_path: local weights file; None looks in local caches, then falls back to a
            fixed-seed random initialisation (see the module docstring).
        min_size: smallest spatial size fed to the backbone.
        batch_size: images per forward pass in ``extract``.
    """

    def __init__(
        self,
        backbone: str = "resnet18",
        pretrained_path: str | os.PathLike | None = None,
        min_size: Annotated[int, Field(ge=1)] = 32,
        batch_size: Annotated[int, Field(ge=1)] = 256,
    ) -> None:
        super().__init__()
        import timm

        if not timm.is_model(backbone):
            raise ConfigError(f"unknown timm backbone {backbone!r}; see timm.list_models() for accepted names")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_INIT_SEED)
            self.backbone = timm.create_model(backbone, pretrained=False, num_classes=0)
        self.backbone_name = backbone
        self.min_size = min_size
        self.batch_size = batch_size
        self.out_dim: int = int(self.backbone.num_features)
        if pretrained_path is not None:
            path = Path(pretrained_path)
            if not path.is_file():
                raise MissingDataError(
                    f"backbone weights {path} not found; give a local .safetensors/.pth file or "
                    f"pretrained_path=None for the cache / fixed-seed random fallback"
                )
        else:
            path = cached_weights(self.backbone)
        self.weights_source = "random(seed=%d)" % RANDOM_INIT_SEED
        self.weights_kind = "random"
        if path is not None:
            self.weights_kind = self._load(path)
            self.weights_source = str(path)
        elif backbone not in _warned_random:
            _warned_random.add(backbone)
            warnings.warn(
                f"no local weights for backbone {backbone!r}: using a randomly initialised backbone "
                f"(fixed seed {RANDOM_INIT_SEED}); dataset embeddings will be weaker than with "
                f"pretrained features. Pass pretrained_path=<local file> to use real weights.",
                stacklevel=2,
            )
        self.backbone.eval().requires_grad_(False)
        self._cache: dict[tuple, Tensor] = {}

    def _load(self, path: Path) -> str:
        own = self.backbone.state_dict()
        loaded, kind = _load_state(path)
        state = {k: v for k, v in loaded.items() if k in own}
        missing = [k for k in own if k not in state]
        if missing:
            raise ConfigError(
                f"weights file {path} does not fit backbone {self.backbone_name!r}: "
                f"{len(missing)} tensors missing (e.g. {missing[:3]})"
            )
        self.backbone.load_state_dict(state)
        return kind

    def save_weights(self, path: str | os.PathLike, kind: str = "trained") -> Path:
        """Write the backbone's weights to ``path`` (.safetensors, else torch), marked ``kind``,
        so that ``pretrained_path=path`` reloads them and reports ``weights_kind == kind``."""
        if kind not in WEIGHT_KINDS[:2]:
            raise ConfigError(f"save_weights: kind must be 'pretrained' or 'trained', got {kind!r}")
        path = Path(path)
        state = {k: v.detach().cpu().contiguous() for k, v in self.backbone.state_dict().items()}
        if path.suffix == ".safetensors":
            from safetensors.torch import save

            from nag.io import atomic_write_bytes

            return atomic_write_bytes(path, save(state, metadata={KIND_KEY: kind}))
        from nag.io import atomic_torch_save

        return atomic_torch_save({"state_dict": state, KIND_KEY: kind}, path)

    def identity(self) -> dict[str, str]:
        """What features from this encoder depend on: ``{"backbone", "weights" (kind), "fingerprint"}``
        (a hash of the weights). A meta-predictor records it and must be used with the same."""
        digest = hashlib.sha1()
        for name, value in sorted(self.backbone.state_dict().items()):
            digest.update(name.encode())
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())
        return {"backbone": self.backbone_name, "weights": self.weights_kind, "fingerprint": digest.hexdigest()[:16]}

    def train(self, mode: bool = True) -> "ImageFeatureExtractor":
        super().train(mode)
        self.backbone.eval()  # frozen: batch-norm statistics never move
        return self

    def _prepare(self, images: Tensor) -> Tensor:
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        h, w = images.shape[-2:]
        if min(h, w) < self.min_size:
            scale = self.min_size / min(h, w)
            size = (max(self.min_size, round(h * scale)), max(self.min_size, round(w * scale)))
            images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        return images

    def forward(self, images: Tensor) -> Tensor:
        """images: [*, C, H, W] -> [*, F]."""
        lead = images.shape[:-3]
        flat = self._prepare(images.reshape(-1, *images.shape[-3:]).float())
        return self.backbone(flat).reshape(*lead, self.out_dim)

    @torch.no_grad()
    def extract(self, images: Tensor, progress: bool = False) -> Tensor:
        """Like forward, without gradients, in chunks of ``batch_size``. [*, C, H, W] -> [*, F]."""
        from tqdm.auto import tqdm

        lead = images.shape[:-3]
        flat = images.reshape(-1, *images.shape[-3:])
        chunks = range(0, flat.shape[0], self.batch_size)
        device = next(self.backbone.parameters()).device
        out = [self(flat[i : i + self.batch_size].to(device)).cpu() for i in tqdm(chunks, disable=not progress)]
        return torch.cat(out).reshape(*lead, self.out_dim)

    def task_features(self, task: Any, n_per_class: int = 20, seed: int = 0, progress: bool = False) -> Tensor:
        """Per-class feature sets of a Task: ``task.class_sets(n, seed)`` -> [K, n, F], cached.

        The cache key is (task name, classes, n_per_class, seed), so repeated calls are free.
        """
        key = (task.name, tuple(getattr(task, "classes", ())), n_per_class, seed)
        if key not in self._cache:
            self._cache[key] = self.extract(task.class_sets(n_per_class, seed=seed), progress=progress)
        return self._cache[key]
