"""The "image_folder" task: the user's images in torchvision's ImageFolder layout, no plugin.

    DIR/<class>/<image>                        one pool, split train/val/test by ``split``
    DIR/train/<class>/<image>  [DIR/val/...]  [DIR/test/...]    the parts given; a missing val
                                                or test part is carved from train (``val_size``)

Class ids follow the sorted class-folder names (``Task.meta["class_names"]``). Images of any
size and mode are read with PIL into memory (uint8); ``channels`` converts them (1 = grey,
3 = RGB; default: keep, and refuse a folder that mixes them), ``size`` resizes them (int:
shorter side then centre crop; [H, W]: exactly; default: keep, and refuse mixed sizes).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from nag.data.images import check_size, complete_splits, existing_root, images_task, pil_to_array, stack_images
from nag.data.tasks import TASKS, Task, param_name
from nag.errors import BadDataError, MissingDataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".pbm", ".tif", ".tiff", ".webp")
PART_FOLDERS = {"train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}


def _visible_dirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _class_files(folder: Path) -> dict[str, list[Path]]:
    classes = _visible_dirs(folder)
    if not classes:
        found = sorted(p.name for p in folder.iterdir())[:5]
        raise MissingDataError(
            f"image_folder: {folder} has no class sub-folders (found {found}); expected {folder}/<class>/<image> "
            f"(or train/, val/, test/ folders of those)"
        )
    out = {}
    for c in classes:
        files = _image_files(c)
        if not files:
            raise MissingDataError(
                f"image_folder: class folder {c} holds no image; expected files ending in {', '.join(IMAGE_EXTENSIONS)}"
            )
        out[c.name] = files
    return out


def _read(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            return pil_to_array(img, str(path))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise BadDataError(f"image_folder: cannot read image {path} ({exc}); remove it or replace it by a readable image") from exc


@TASKS.register("image_folder")
def image_folder(
    root: str | None = None,
    size: int | list[int] | None = None,
    channels: int | None = None,
    normalize: str = "dataset",
    split: list[float] = (0.6, 0.2, 0.2),
    val_size: float = 0.2,
    augment: bool = False,
    split_seed: int = 0,
) -> Task:
    """Classes from the folders of ``root`` (see the module docstring); ``normalize``:
    ``dataset`` (per-channel train statistics), ``imagenet`` or ``none``; ``augment``: random
    crop and flip of training images."""
    path = existing_root(root, "image_folder")
    if not path.is_dir():
        raise MissingDataError(f"image_folder: task.root={str(path)!r} is a file; expected a folder of class folders")
    sizes = check_size(size, f"image_folder {path}")
    part_dirs = {
        part: next((path / n for n in names if (path / n).is_dir()), None) for part, names in PART_FOLDERS.items()
    }
    layout = "split folders" if part_dirs["train"] is not None else "class folders"
    sources = {p: d for p, d in part_dirs.items() if d is not None} if layout == "split folders" else {"train": path}
    files = {part: _class_files(folder) for part, folder in sources.items()}
    class_names = sorted(files["train"])
    for part, per_class in files.items():
        unknown = sorted(set(per_class) - set(class_names))
        if unknown:
            raise BadDataError(f"image_folder: {sources[part]} has class folders {unknown} that {sources['train']} lacks; every class needs training images")
    parts = {}
    for part, per_class in files.items():
        items = [(f, class_names.index(c)) for c in class_names for f in per_class.get(c, [])]
        arrays = [_read(f) for f, _ in tqdm(items, desc=f"image_folder: {part}", unit="img", disable=None, leave=False)]
        images = stack_images(arrays, [str(f) for f, _ in items], channels, sizes, f"image_folder {sources[part]}")
        parts[part] = (images, torch.tensor([k for _, k in items]))
    parts = complete_splits(parts, class_names, split, val_size, split_seed, f"image_folder {path}")
    name = param_name(path.resolve().name, image_folder, size=size, channels=channels, normalize=normalize, split=split,
                      val_size=val_size, augment=augment, split_seed=split_seed)
    return images_task(name, parts, class_names, normalize, augment,
                       meta={"root": str(path), "layout": layout, "split_seed": split_seed}, where=f"image_folder {path}")
