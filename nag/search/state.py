"""Resumable search state: what a killed search needs to go on exactly where it stopped.

The state is the evaluated history (archs in their string form, values, extra numbers), the
numpy generator's state, the round counter, and a method-specific JSON-able ``extra`` dict.
It is written atomically after every round.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nag.errors import ConfigError
from nag.evaluation.evaluators import Evaluator
from nag.spaces.base import SearchSpace

STATE_VERSION = 1


@dataclass
class SearchState:
    """Everything a search loop carries from one round to the next."""

    method: str
    seed: int
    round: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)  # {"arch": str, "value": float, "info": {...}}
    rng: dict[str, Any] = field(default_factory=dict)  # numpy bit_generator.state
    extra: dict[str, Any] = field(default_factory=dict)
    version: int = STATE_VERSION

    # ----- conversion from / to live objects ---------------------------------------------
    def capture(self, space: SearchSpace, evaluator: Evaluator, rng: np.random.Generator) -> None:
        """Copy the evaluator's history and the generator's state into this state."""
        known = len(self.history)
        for q in evaluator.history[known:]:
            self.history.append(
                {"arch": space.format(q.arch), "value": q.value, "info": evaluator.info.get(q.arch, {})}
            )
        self.rng = rng.bit_generator.state

    def restore(self, space: SearchSpace, evaluator: Evaluator) -> np.random.Generator:
        """Preload ``evaluator`` with the saved history and return the generator as saved."""
        if evaluator.n_queries:
            raise ConfigError("resume needs a fresh evaluator; this one has already been queried")
        evaluator.preload((space.parse(h["arch"]), h["value"], h.get("info")) for h in self.history)
        rng = np.random.default_rng()
        if self.rng:
            rng.bit_generator.state = self.rng
        return rng

    # ----- files --------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write atomically (tmp file, then os.replace)."""
        from nag.io import atomic_write_json

        atomic_write_json(path, asdict(self))

    @classmethod
    def load(cls, path: str | Path) -> "SearchState":
        data = json.loads(Path(path).read_text())
        if data.get("version") != STATE_VERSION:
            raise ConfigError(
                f"search state {path} has version {data.get('version')!r}; this nag reads version "
                f"{STATE_VERSION}. Delete the file to start the search afresh."
            )
        return cls(**data)

    def check_matches(self, method: str, seed: int, path: str | Path) -> None:
        """Refuse to resume a state written by another method or seed."""
        if (self.method, self.seed) != (method, seed):
            raise ConfigError(
                f"search state {path} belongs to method={self.method!r} seed={self.seed}, not "
                f"method={method!r} seed={seed}. Use another output folder or delete the state file."
            )
