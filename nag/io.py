"""Crash-safe file writes: a reader never sees a half-written results file or checkpoint.

Whole files are written to a temporary file in the same folder, flushed to disk, then moved
over the target with ``os.replace`` (atomic on POSIX and Windows). Logs of rows use JSON Lines
with one ``write`` + ``fsync`` per row; ``read_jsonl`` skips a torn last line. ``RowStore`` is
such a log keyed by some of its fields: each key is written once, so a resumed run neither loses
nor doubles a row.

Distributed jobs (DDP, SLURM, torchrun): every rank runs the same code, and only rank zero
writes (``nag.distributed``); on the other ranks these functions return without touching disk,
so a checkpoint, a results file or a row is written once.

JSON policy: numbers, strings, bools, None, lists and string-keyed dicts. numpy/torch scalars
and arrays become Python numbers/lists, tuples become lists, paths become strings. NaN and
+-inf are written as ``null`` (strict JSON has no NaN; a diverged metric must not cost the
whole results file). Anything else is a TypeError naming where it sits.
"""
from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

import numpy as np

from nag.distributed import is_rank_zero

PathLike = str | os.PathLike


def to_jsonable(obj: Any, where: str = "$") -> Any:
    """``obj`` as plain JSON values (see the module policy). ``where`` names it in errors."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item(), where)
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist(), where)
    torch = sys.modules.get("torch")  # if torch was never imported, obj is no tensor
    if torch is not None and isinstance(obj, torch.Tensor):
        return to_jsonable(obj.detach().cpu().tolist(), where)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, (str, int, np.integer)) or isinstance(k, bool):
                raise TypeError(f"JSON keys must be strings or ints; {where} has the key {k!r}")
            out[str(k)] = to_jsonable(v, f"{where}.{k}")
        return out
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(obj, (DictConfig, ListConfig)):
            return to_jsonable(OmegaConf.to_container(obj, resolve=True), where)
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(
        f"cannot write {type(obj).__name__} at {where} as JSON; accepted: numbers, strings, bools, "
        f"None, lists/tuples, dicts, numpy/torch scalars and arrays, paths"
    )


@contextmanager
def _atomic_file(path: PathLike, mode: str = "w") -> Iterator[IO[Any]]:
    """A temp file beside ``path``; on success it is fsynced and moved over ``path``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.chmod(tmp, _file_mode(target))  # mkstemp makes 0600 files; keep the usual mode
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(target.parent)


def atomic_write_text(path: PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (parents are created). Returns the path."""
    if not is_rank_zero():
        return Path(path)
    with _atomic_file(path, "w") as fh:
        fh.write(text)
    return Path(path)


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (parents are created). Returns the path."""
    if not is_rank_zero():
        return Path(path)
    with _atomic_file(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def atomic_write_png(path: PathLike, fig: Any) -> Path:
    """A matplotlib figure as a PNG, laid out tightly, written atomically."""
    import io

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return atomic_write_bytes(path, buf.getvalue())


def atomic_write_csv(path: PathLike, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> Path:
    """``rows`` as a CSV with a header of ``columns`` (other keys are left out; floats as ``%.6g``), atomically."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return atomic_write_text(path, buf.getvalue())


def atomic_write_json(path: PathLike, obj: Any, indent: int | None = 2) -> Path:
    """Write ``obj`` as JSON atomically; NaN/inf become null (see the module docstring)."""
    text = json.dumps(to_jsonable(obj), indent=indent, allow_nan=False) + "\n"
    return atomic_write_text(path, text)


def atomic_torch_save(obj: Any, path: PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` atomically: an interrupted save keeps the old file."""
    import torch

    if not is_rank_zero():
        return Path(path)
    with _atomic_file(path, "wb") as fh:
        torch.save(obj, fh)
    return Path(path)


def append_jsonl(path: PathLike, row: Mapping[str, Any]) -> None:
    """Append one JSON row to ``path`` as a single line, flushed and fsynced before returning.

    If a killed writer left a torn last line (no newline), the new row starts on a fresh line,
    so only the torn fragment is lost.
    """
    line = json.dumps(to_jsonable(row), allow_nan=False) + "\n"
    if not is_rank_zero():
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "ab+") as fh:
        if fh.seek(0, os.SEEK_END) > 0:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                line = "\n" + line
        fh.write(line.encode("utf-8"))  # one write: concurrent appenders do not interleave
        fh.flush()
        os.fsync(fh.fileno())


def read_jsonl(path: PathLike, missing_ok: bool = False) -> list[Any]:
    """Rows of a JSON Lines file. A torn last line (killed writer) is skipped silently; a bad
    line elsewhere is skipped with a warning naming it. ``missing_ok``: [] for a missing file."""
    target = Path(path)
    if missing_ok and not target.exists():
        return []
    lines = target.read_text(encoding="utf-8").split("\n")
    rows = []
    last = max((i for i, ln in enumerate(lines) if ln.strip()), default=-1)
    for i, ln in enumerate(lines):
        if not ln.strip():
            continue
        try:
            rows.append(json.loads(ln))
        except json.JSONDecodeError:
            if i != last:
                warnings.warn(f"{target}:{i + 1}: skipped an unreadable line (torn by an earlier crash?)", stacklevel=2)
    return rows


RowKey = Any  # one field's value, or a tuple of the key fields' values


class RowStore:
    """A JSON Lines file of rows, at most one per key (the values of the ``key`` fields).

    ``append`` writes a row with one fsynced line (``append_jsonl``) unless its key is already
    there; reading keeps the first row of each key and skips a torn last line, so a writer
    killed at any moment leaves a file that a rerun completes without doubling a row. One
    process writes a store (the driver of a run); the keys written are remembered in memory.

    Args:
        path: the ``.jsonl`` file (created on the first append).
        key: the field, or fields, that identify a row, e.g. ``("task", "arch")``.
    """

    def __init__(self, path: PathLike, key: str | tuple[str, ...]) -> None:
        self.path = Path(path)
        self.key = key
        self._keys: set[RowKey] | None = None

    def key_of(self, row: Mapping[str, Any]) -> RowKey:
        """The key of ``row``: one value for a single key field, else a tuple of values."""
        try:
            if isinstance(self.key, str):
                return _hashable(row[self.key])
            return tuple(_hashable(row[k]) for k in self.key)
        except KeyError as exc:
            raise KeyError(f"a row of {self.path} has no key field {exc.args[0]!r} (key: {self.key})") from None

    def rows(self) -> list[dict[str, Any]]:
        """The rows in file order, the first of each key only; [] when there is no file yet."""
        out, seen = [], set()
        for row in read_jsonl(self.path, missing_ok=True):
            k = self.key_of(row)
            if k not in seen:
                seen.add(k)
                out.append(row)
        self._keys = seen
        return out

    def by_key(self) -> dict[RowKey, dict[str, Any]]:
        return {self.key_of(r): r for r in self.rows()}

    def keys(self) -> set[RowKey]:
        if self._keys is None:
            self.rows()
        return set(self._keys or ())

    def __contains__(self, key: RowKey) -> bool:
        if self._keys is None:
            self.rows()
        return key in self._keys  # type: ignore[operator]

    def __len__(self) -> int:
        return len(self.keys())

    def append(self, row: Mapping[str, Any]) -> bool:
        """Write ``row`` unless a row with its key is there; True when it was written."""
        key = self.key_of(row)
        if key in self:
            return False
        append_jsonl(self.path, row)
        self._keys.add(key)  # type: ignore[union-attr]
        return True


def _hashable(value: Any) -> Any:
    return tuple(_hashable(v) for v in value) if isinstance(value, list) else value


def _file_mode(target: Path) -> int:
    """The target's current mode, else 0666 minus the process umask."""
    with suppress(OSError):
        return target.stat().st_mode & 0o7777
    umask = 0o022
    with suppress(OSError, ValueError, StopIteration):
        status = Path("/proc/self/status").read_text().splitlines()
        umask = int(next(ln for ln in status if ln.startswith("Umask:")).split()[1], 8)
    return 0o666 & ~umask


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened."""
    with suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
