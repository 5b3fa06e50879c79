"""The "arrays" task: images and labels from a NumPy ``.npz`` file, no plugin.

Keys: ``x`` and ``y`` (one pool, split train/val/test by ``split``), or ``x_train``/``y_train``
with any of ``x_val``/``y_val`` and ``x_test``/``y_test`` (a missing val or test part is carved
from train by ``val_size``). Images: ``[N, H, W]`` (grey), ``[N, H, W, C]`` or ``[N, C, H, W]``
(``layout``: auto / nhwc / nchw), uint8 0..255 or float in [0, 1]. Labels: integers or strings,
one per image; class ids follow their sorted values (``Task.meta["class_names"]``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from nag.data.images import check_size, complete_splits, convert_channels, images_task, label_ids, resize_images
from nag.data.tasks import TASKS, Task, param_name
from nag.errors import BadDataError, ConfigError, MissingDataError

LAYOUTS = ("auto", "nhwc", "nchw")


def _images(x: np.ndarray, layout: str, where: str) -> Tensor:
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4:
        last, second = x.shape[-1] in (1, 3, 4), x.shape[1] in (1, 3, 4)
        if layout == "auto":
            if last == second:
                raise BadDataError(f"{where}: cannot tell channels from the shape {x.shape}; set task.layout=nhwc or task.layout=nchw")
            layout = "nhwc" if last else "nchw"
        if layout == "nhwc":
            x = x.transpose(0, 3, 1, 2)
    else:
        raise BadDataError(f"{where}: images must be [N, H, W], [N, H, W, C] or [N, C, H, W], got shape {x.shape}")
    if x.shape[1] not in (1, 2, 3, 4):
        raise BadDataError(f"{where}: images have {x.shape[1]} channels (shape {x.shape}); expected 1-4 (check task.layout)")
    if x.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(x))
    if x.dtype.kind != "f":
        raise BadDataError(f"{where}: images must be uint8 (0..255) or float (0..1), got dtype {x.dtype}")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise BadDataError(f"{where}: float images must lie in [0, 1], found values in [{lo:g}, {hi:g}]; scale them or store uint8")
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


@TASKS.register("arrays")
def arrays(
    path: str | None = None,
    layout: str = "auto",
    size: int | list[int] | None = None,
    channels: int | None = None,
    normalize: str = "dataset",
    split: list[float] = (0.6, 0.2, 0.2),
    val_size: float = 0.2,
    augment: bool = False,
    split_seed: int = 0,
) -> Task:
    """Images and labels of the ``.npz`` file ``path`` (keys in the module docstring)."""
    if path is None:
        raise ConfigError("task 'arrays' needs task.path=FILE.npz (keys x, y or x_train, y_train, ...)")
    file = Path(path).expanduser()
    if not file.is_file():
        raise MissingDataError(f"arrays: task.path={str(file)!r} does not exist; expected an .npz file with keys x and y")
    if layout not in LAYOUTS:
        raise ConfigError(f"arrays: layout must be one of {list(LAYOUTS)}, got {layout!r}")
    try:
        data = dict(np.load(file, allow_pickle=False))
    except (ValueError, OSError) as exc:
        raise BadDataError(f"arrays: cannot read {file} as an .npz of plain arrays ({exc})") from exc
    if {"x", "y"} <= set(data):
        pools = {"train": ("x", "y")}
    elif {"x_train", "y_train"} <= set(data):
        pools = {p: (f"x_{p}", f"y_{p}") for p in ("train", "val", "test") if {f"x_{p}", f"y_{p}"} <= set(data)}
    else:
        raise BadDataError(f"arrays: {file} has keys {sorted(data)}; expected x and y, or x_train and y_train (with x_val/y_val, x_test/y_test)")
    all_labels = np.concatenate([data[ky] for _, ky in pools.values()])
    _, class_names, originals = label_ids(all_labels, f"arrays {file}")
    index = {o: k for k, o in enumerate(originals)}
    sizes = check_size(size, f"arrays {file}")
    parts = {}
    for part, (kx, ky) in pools.items():
        x, y = data[kx], data[ky]
        if len(x) != len(y):
            raise BadDataError(f"arrays: {file}: {kx} has {len(x)} images but {ky} has {len(y)} labels")
        y_arr = np.asarray(y)
        y_arr = y_arr.astype(np.int64) if y_arr.dtype.kind == "f" else y_arr
        ids = np.array([index[v] for v in y_arr.tolist()], dtype=np.int64)
        images = resize_images(convert_channels(_images(x, layout, f"arrays {file} {kx}"), channels, f"arrays {file}"), sizes)
        parts[part] = (images, torch.from_numpy(ids))
    parts = complete_splits(parts, class_names, split, val_size, split_seed, f"arrays {file}")
    name = param_name(file.stem, arrays, layout=layout, size=size, channels=channels, normalize=normalize, split=split,
                      val_size=val_size, augment=augment, split_seed=split_seed)
    labels_meta = originals if all(isinstance(o, (int, np.integer)) for o in originals) else class_names
    return images_task(name, parts, class_names, normalize, augment,
                       meta={"path": str(file), "labels": labels_meta, "split_seed": split_seed}, where=f"arrays {file}")
