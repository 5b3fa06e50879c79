"""``experiment=train_meta_predictor``: fit the task-conditioned, noise-aware meta-predictor.

Reads a meta-database (``meta_db.path``, JSON lines from ``experiment=build_meta_db``),
encodes every task as per-class image-feature sets (``dataset_encoder``), and trains a
``MetaPredictor`` under the SDE of the prior it will guide (``prior.path``, default: the
space's shipped prior), so GuidedSampler accepts the pair. Tasks are held out in turn
(``holdout_tasks``) to measure how well it ranks archs on a task it has not seen.

Writes ``meta_predictor.pt`` in the run folder (and to ``save_to`` when set).
Results: ``n_rows``, ``n_tasks``, ``heldout_spearman`` (mean over held-out tasks, clean t=0),
``fit_s``, ``wall_s``.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from omegaconf import DictConfig
from scipy.stats import spearmanr

from nag.experiments import build_space, experiment, plain, run_dir
from nag.meta import MetaDatabase
from nag.meta.features import build_extractor, spec_features

ASSETS = Path(__file__).resolve().parents[1] / "assets"


def fit_from_db(cfg: DictConfig, space, sde_config, rows, features, seed: int):
    from nag.modules.meta_predictor import fit_meta_predictor

    fit = plain(cfg.meta_predictor)
    metric = fit.pop("metric")
    return fit_meta_predictor(
        space,
        [{"task": r["task"], "arch": space.parse(r["arch"]), "accuracy": r[metric]} for r in rows],
        features,
        sde_config,
        seed=seed,
        **fit,
    )


@experiment("train_meta_predictor")
def train_meta_predictor(cfg: DictConfig) -> dict:
    from nag.experiments.generate import load_configured_prior

    start = time.perf_counter()
    space = build_space(cfg)
    seed = int(cfg.seed)
    prior = load_configured_prior(cfg, space)
    db = MetaDatabase(cfg.meta_db.path or ASSETS / "meta_db" / f"digits_{space.name}.jsonl")
    rows = db.rows(missing_ok=False)
    specs = db.task_specs()
    extractor = build_extractor(plain(cfg.dataset_encoder))
    n_per_class = int(cfg.n_per_class)
    features = spec_features(extractor, specs, n_per_class, seed)

    spearmans = []
    for held in specs[: int(cfg.holdout_tasks)]:
        train_rows = [r for r in rows if r["task"] != held.id]
        test_rows = [r for r in rows if r["task"] == held.id]
        meta = fit_from_db(cfg, space, prior.sde.config(), train_rows, features, seed)
        mean, _ = meta.for_task(features[held.id]).predict_archs([space.parse(r["arch"]) for r in test_rows], t=0.0)
        truth = [r[cfg.meta_predictor.metric] for r in test_rows]
        spearmans.append(float(spearmanr(mean[:, 0].numpy(), truth).statistic))

    fit_start = time.perf_counter()
    meta = fit_from_db(cfg, space, prior.sde.config(), rows, features, seed)
    fit_s = time.perf_counter() - fit_start
    meta.save(run_dir() / "meta_predictor.pt")
    if cfg.get("save_to"):
        meta.save(cfg.save_to)
    return {
        "n_rows": len(rows),
        "n_tasks": len(specs),
        "heldout_spearman": float(np.mean(spearmans)) if spearmans else float("nan"),
        "heldout_spearman_min": float(np.min(spearmans)) if spearmans else float("nan"),
        "fit_s": fit_s,
        "wall_s": time.perf_counter() - start,
    }
