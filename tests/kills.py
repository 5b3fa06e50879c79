"""Simulated kills for resume tests: a process dies at a chosen point, leaving its files as a real
kill would (a row lost, a torn last line, a stray temp file of an interrupted atomic write)."""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any


class Killed(Exception):
    """A simulated kill of the process."""


def killing_append(real: Callable[[Any, Mapping[str, Any]], None], when: Callable[[Mapping[str, Any]], bool],
                   torn: bool = False) -> Callable[[Any, Mapping[str, Any]], None]:
    """``append_jsonl`` that dies at the first row for which ``when(row)`` holds: before writing it
    (the row is lost) or, with ``torn``, after writing half of it (a torn last line)."""

    def append(path, row):
        if when(row):
            if torn:
                line = json.dumps(dict(row))
                with open(path, "a") as fh:
                    fh.write(line[: len(line) // 2])
            raise Killed(f"killed while appending a row to {Path(path).name}")
        real(path, row)

    return append


def stray_temp_file(target: Path) -> Path:
    """What a kill during ``nag.io`` 's atomic write of ``target`` leaves: a half-written temp file."""
    tmp = target.parent / f".{target.name}.killed.tmp"
    tmp.write_text('{"half": ')
    return tmp
