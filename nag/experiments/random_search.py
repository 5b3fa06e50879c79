"""``experiment=random_search``: train ``budget`` random architectures, keep the best.

Candidates are ``budget`` architectures of distinct isomorphism classes (``space.canonical``),
drawn with ``seed``; each is really trained with the ``train`` budget (training seed ``seed``).
The best is chosen by **validation** accuracy, and its **test** accuracy is reported, so the
test split never influences the choice.

Every evaluated architecture is appended to ``history.jsonl`` in the run folder as soon as it
is done (one fsynced line). Rerunning with the same ``hydra.run.dir`` resumes: the rows already
there are kept and only the missing architectures are trained.

Results: ``best_arch``, ``best_val_acc``, ``best_test_acc``, ``n_evaluated``, and ``wall_s``
(training + evaluation seconds summed over all evaluated archs, resumed rows included).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from tqdm import tqdm

from nag.errors import ConfigError
from nag.experiments import build_budget, build_space, build_task, experiment, positive_int, run_dir
from nag.io import append_jsonl, read_jsonl
from nag.spaces import Arch, SearchSpace, as_rng
from nag.wandb_utils import log_metrics

HISTORY = "history.jsonl"
_MAX_DRAWS_PER_ARCH = 100


def distinct_sample(space: SearchSpace, n: int, seed: int) -> list[Arch]:
    """``n`` random archs of distinct isomorphism classes, in draw order (deterministic in ``seed``)."""
    rng = as_rng(seed)
    out: list[Arch] = []
    seen: set[Any] = set()
    for _ in range(_MAX_DRAWS_PER_ARCH * n):
        arch = space.sample(1, rng)[0]
        key = space.canonical(arch)
        if key not in seen:
            seen.add(key)
            out.append(arch)
            if len(out) == n:
                return out
    raise ConfigError(
        f"found only {len(out)} distinct architectures of space {space.name!r} in "
        f"{_MAX_DRAWS_PER_ARCH * n} draws; lower budget (asked for {n})"
    )


def _resume(path: Path, expected: list[str]) -> list[dict[str, Any]]:
    """Rows of an earlier, interrupted run of the same search (checked against ``expected``)."""
    rows = read_jsonl(path, missing_ok=True)
    for i, row in enumerate(rows):
        if i >= len(expected) or row.get("arch") != expected[i]:
            raise ConfigError(
                f"{path} holds row {i} for {row.get('arch')!r}, but this config would evaluate "
                f"{expected[i] if i < len(expected) else 'nothing'!r} there: it belongs to another search "
                f"(other seed, space or budget). Use a fresh hydra.run.dir or delete the file."
            )
    return rows


@experiment("random_search")
def random_search(cfg: DictConfig) -> dict:
    """Random search over ``cfg.space``; see the module docstring for the results."""
    space = build_space(cfg)
    n = positive_int(cfg, "budget")
    seed = int(cfg.seed)
    budget = build_budget(cfg)
    archs = distinct_sample(space, n, seed)
    names = [space.format(a) for a in archs]
    path = run_dir() / HISTORY
    rows = _resume(path, names)
    task = build_task(cfg)
    best: dict[str, Any] | None = None
    for row in rows:
        best = row if best is None or row["val_acc"] > best["val_acc"] else best
    with tqdm(total=n, initial=len(rows), desc="random_search", unit="arch", disable=None) as bar:
        for i in range(len(rows), n):
            m = space.train_eval(archs[i], task, budget, seed=seed)
            row = {"i": i, "arch": names[i], **{k: m[k] for k in ("val_acc", "test_acc", "wall_s", "params_M")}}
            append_jsonl(path, row)
            rows.append(row)
            best = row if best is None or row["val_acc"] > best["val_acc"] else best
            log_metrics({"val_acc": row["val_acc"], "test_acc": row["test_acc"], "best_val_acc": best["val_acc"]}, step=i)
            bar.set_postfix(best_val=f"{best['val_acc']:.2f}")
            bar.update()
    assert best is not None
    return {
        "best_arch": best["arch"],
        "best_val_acc": best["val_acc"],
        "best_test_acc": best["test_acc"],
        "n_evaluated": len(rows),
        "wall_s": sum(r["wall_s"] for r in rows),
    }
