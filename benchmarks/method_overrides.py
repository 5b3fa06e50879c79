"""``--set METHOD.KEY=JSON`` for the benchmark scripts: change one setting of a search preset.

    python benchmarks/nb201_search.py --set bananas.q=2 'diffusion_bo.optimizer_params={"alternate": false}'

Dict settings merge one level deep into the preset's (``nag.search.method_settings``).
"""
from __future__ import annotations

import argparse
import json
from typing import Any


def add_set_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", nargs="*", default=[], metavar="METHOD.KEY=JSON",
                        help="override a method setting, e.g. bananas.q=2 'diffusion_bo.optimizer_params={\"weight\": 5}'")


def parse_set(items: list[str], parser: argparse.ArgumentParser) -> dict[str, dict[str, Any]]:
    """``["bananas.q=2", ...]`` -> ``{"bananas": {"q": 2}}``; a malformed item is a usage error."""
    overrides: dict[str, dict[str, Any]] = {}
    for item in items:
        key, eq, value = item.partition("=")
        method, dot, name = key.partition(".")
        try:
            if not (eq and dot and method and name):
                raise ValueError("expected METHOD.KEY=JSON")
            overrides.setdefault(method, {})[name] = json.loads(value)
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            parser.error(f"--set {item!r}: {exc} (e.g. bananas.q=2, or a JSON string in quotes: 'bananas.surrogate=\"gp\"')")
    return overrides
