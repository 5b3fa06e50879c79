"""Reader for the MetaD2A meta-training database (for users who have its files).

MetaD2A (Lee et al., ICLR 2021) ships, in one folder:

* ``meta_train_tasks_predictor.pt``: a dict with ``acc`` (list of accuracies, percent),
  ``task`` (task index per row) and the architecture as ``str`` (NB201 strings) or ``x``
  (one-hot node matrices [8, 7] in the NB201 vocabulary order), plus ``g`` (igraph objects,
  not needed here and skipped);
* ``meta_train_task_lst.pt``: for each task index, its list of ImageNet-32 class ids (1-based);
* ``imgnet32bylabel.pt``: per class, ``x[cls - 1][0]`` = a [n, 512] tensor of ResNet-18 features.

``read_metad2a(folder)`` turns these into nag's rows and task features, ready for
``fit_meta_predictor``. igraph need not be installed: unknown pickled classes load as inert
placeholders.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from nag.errors import MissingDataError

FILES = ("meta_train_tasks_predictor.pt", "meta_train_task_lst.pt", "imgnet32bylabel.pt")
NB201_VOCAB = ("input", "output", "none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


class _Placeholder:
    """Stands in for any class the pickle names but this environment lacks (e.g. igraph.Graph)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _TolerantUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            return _Placeholder


class _TolerantPickle:
    """A pickle module for ``torch.load`` that tolerates missing classes."""

    Unpickler = _TolerantUnpickler
    load = staticmethod(pickle.load)
    __name__ = "nag_tolerant_pickle"


def _load(path: Path) -> Any:
    return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_TolerantPickle)


def x_to_nb201_string(x: Any) -> str:
    """One-hot node matrix [8, 7] (MetaD2A order: input, 6 edge ops, output) -> NB201 string."""
    ops = [NB201_VOCAB[int(i)] for i in torch.as_tensor(x).float().argmax(dim=-1).tolist()]
    e = ops[1:7]
    return f"|{e[0]}~0|+|{e[1]}~0|{e[2]}~1|+|{e[3]}~0|{e[4]}~1|{e[5]}~2|"


def read_metad2a(folder: str | Path, n_per_class: int = 20) -> tuple[list[dict], dict[str, Tensor]]:
    """MetaD2A's predictor database -> (rows, task features).

    Returns:
        rows: dicts with ``task`` ("imagenet32/<index>"), ``arch`` (NB201 string), ``accuracy``.
        features: {task: Tensor [K, n_per_class, 512]} (first n images of each class).
    """
    folder = Path(folder)
    missing = [f for f in FILES if not (folder / f).is_file()]
    if missing:
        raise MissingDataError(
            f"MetaD2A database folder {folder} lacks {missing}; it needs {list(FILES)} "
            f"(from the MetaD2A release). Point meta_db.metad2a_path at that folder."
        )
    data = _load(folder / FILES[0])
    task_lists = _load(folder / FILES[1])
    by_label = _load(folder / FILES[2])
    if "str" in data:
        archs = [str(s) for s in data["str"]]
    elif "x" in data:
        archs = [x_to_nb201_string(x) for x in data["x"]]
    else:
        raise MissingDataError(
            f"{folder / FILES[0]} has neither 'str' nor 'x' (keys: {sorted(data)}); nag reads the arch from one of them"
        )
    tasks = [int(t) for t in data["task"]]
    rows = [
        {"task": f"imagenet32/{t}", "arch": a, "accuracy": float(acc), "source": "imagenet32"}
        for t, a, acc in zip(tasks, archs, data["acc"])
    ]
    features = {
        f"imagenet32/{t}": torch.stack(
            [torch.as_tensor(by_label[int(c) - 1][0])[:n_per_class].float() for c in task_lists[t]]
        )
        for t in sorted(set(tasks))
    }
    return rows, features
