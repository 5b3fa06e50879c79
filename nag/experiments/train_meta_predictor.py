"""``experiment=train_meta_predictor``: fit the task-conditioned, noise-aware meta-predictor.

Reads a meta-database: nag's own (``meta_db.path``, JSON lines from
``experiment=build_meta_db``; default the shipped digits database), or MetaD2A's
(``meta_db.metad2a_path``, see ``nag.meta.metad2a``). Tasks of nag's database are encoded as
per-class image-feature sets (``dataset_encoder``); MetaD2A's come with features. The
meta-predictor is trained under the SDE of the prior it will guide (``prior.path``, default the
space's shipped prior), so GuidedSampler accepts the pair. The first ``holdout_tasks`` tasks
are held out in turn to measure how well it ranks archs on a task it has not seen.

Writes ``meta_predictor.pt`` in the run folder (and to ``save_to`` when set), and
``progress.jsonl``: one fsynced row per finished fit (each held-out fold's Spearman, then the
final fit), written after what it records. Rerunning with the same ``hydra.run.dir`` resumes:
finished fits are not fitted again (a larger ``holdout_tasks`` adds folds), and a run folder of
other settings is refused.
Results: ``n_rows``, ``n_tasks``, ``heldout_spearman`` (mean over held-out tasks, clean t=0),
``heldout_spearman_min``, ``fit_s``, ``wall_s``.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from omegaconf import DictConfig
from scipy.stats import spearmanr
from torch import Tensor

from nag.diffusion.prior import PriorConfig, load_prior
from nag.errors import ConfigError
from nag.experiments import build_space, experiment, plain, run_dir, trainer_settings
from nag.experiments.config import NonNegativeInt, PositiveInt, RunConfig
from nag.io import append_jsonl, read_jsonl, to_jsonable
from nag.meta import MetaDatabase
from nag.meta.database import ASSETS
from nag.meta.features import DatasetEncoderConfig, build_extractor, spec_features
from nag.modules.meta_predictor import MetaPredictorOptions
from nag.schema import Settings

PROGRESS = "progress.jsonl"
# what the fits depend on; holdout_tasks and save_to are left out (more folds extend a run)
SETTINGS_KEYS = ("space", "prior", "meta_db", "dataset_encoder", "n_per_class", "meta_predictor", "seed")

class MetaDBSource(Settings):
    path: str | None  # null = the shipped database nag/assets/meta_db/digits_<space>.jsonl
    metric: str
    metad2a_path: str | None


class TrainMetaPredictorConfig(RunConfig):
    prior: PriorConfig
    meta_db: MetaDBSource
    dataset_encoder: DatasetEncoderConfig
    n_per_class: PositiveInt
    meta_predictor: MetaPredictorOptions
    holdout_tasks: NonNegativeInt
    save_to: str | None


def load_meta_rows(cfg: DictConfig, space, seed: int) -> tuple[list[dict], dict[str, Tensor]]:
    """Rows ``{"task", "arch", "accuracy"}`` and ``{task: features [K, n, F]}`` of the configured database."""
    n_per_class = int(cfg.n_per_class)
    if cfg.meta_db.get("metad2a_path"):
        from nag.meta.metad2a import read_metad2a

        return read_metad2a(cfg.meta_db.metad2a_path, n_per_class)
    db = MetaDatabase(cfg.meta_db.path or ASSETS / "meta_db" / f"digits_{space.name}.jsonl")
    metric = str(cfg.meta_db.metric)
    rows = [{"task": r["task"], "arch": r["arch"], "accuracy": r[metric]} for r in db.rows(missing_ok=False, held_out=False)]
    trained_on = {r["task"] for r in rows}  # held-out (evaluation) tasks are never trained on
    extractor = build_extractor(plain(cfg.dataset_encoder))
    return rows, spec_features(extractor, [s for s in db.task_specs() if s.id in trained_on], n_per_class, seed)


def fit_rows(cfg: DictConfig, space, sde_config, rows: list[dict], features: dict[str, Tensor], seed: int):
    from nag.modules.meta_predictor import fit_meta_predictor

    parsed = [{**r, "arch": space.parse(r["arch"])} for r in rows]
    options = MetaPredictorOptions(**plain(cfg.meta_predictor)).settings()
    return fit_meta_predictor(space, parsed, features, sde_config, seed=seed, progress=True, trainer=trainer_settings(cfg),
                              **options)


def finished_fits(path: Path, settings: dict) -> dict[str, dict]:
    """Rows of ``progress.jsonl`` by fit ("fold:<task>" or "final"); refuses rows of other settings."""
    rows = read_jsonl(path, missing_ok=True)
    for row in rows:
        recorded = row.get("settings") or {}
        differ = [k for k in sorted(set(settings) | set(recorded)) if recorded.get(k) != settings.get(k)]
        if differ:
            raise ConfigError(
                f"{path} records fits made with other settings of {', '.join(differ)}. Use another output "
                f"folder (hydra.run.dir=...), or delete {path.name} to start afresh."
            )
    return {row["fit"]: row for row in rows}


@experiment("train_meta_predictor", schema=TrainMetaPredictorConfig)
def train_meta_predictor(cfg: DictConfig) -> dict:
    from nag.modules.meta_predictor import MetaPredictor

    start = time.perf_counter()
    space = build_space(cfg)
    seed = int(cfg.seed)
    settings = json.loads(json.dumps(to_jsonable({k: plain(cfg.get(k)) for k in SETTINGS_KEYS})))  # as read back
    progress = run_dir() / PROGRESS
    done = finished_fits(progress, settings)
    sde_config = load_prior(cfg.prior.path, space).sde.config()
    rows, features = load_meta_rows(cfg, space, seed)
    tasks = list(dict.fromkeys(r["task"] for r in rows))

    spearmans = []
    for held in tasks[: int(cfg.holdout_tasks)]:
        fold = done.get(f"fold:{held}")
        if fold is None:
            test_rows = [r for r in rows if r["task"] == held]
            meta = fit_rows(cfg, space, sde_config, [r for r in rows if r["task"] != held], features, seed)
            mean, _ = meta.for_task(features[held]).predict_archs([space.parse(r["arch"]) for r in test_rows], t=0.0)
            rho = float(spearmanr(mean[:, 0].numpy(), [r["accuracy"] for r in test_rows]).statistic)
            fold = {"fit": f"fold:{held}", "spearman": rho, "settings": settings}
            append_jsonl(progress, fold)
        spearmans.append(float("nan") if fold["spearman"] is None else fold["spearman"])  # NaN is written as null

    out = run_dir() / "meta_predictor.pt"
    final = done.get("final")
    if final is not None and out.is_file():
        meta = MetaPredictor.load(out, space)
    else:  # the checkpoint is written before its row: a kill between them refits (same seed, same fit)
        fit_start = time.perf_counter()
        meta = fit_rows(cfg, space, sde_config, rows, features, seed)
        final = {"fit": "final", "fit_s": time.perf_counter() - fit_start, "settings": settings}
        meta.save(out)
        append_jsonl(progress, final)
    if cfg.get("save_to"):
        meta.save(cfg.save_to)
    return {
        "n_rows": len(rows),
        "n_tasks": len(tasks),
        "heldout_spearman": float(np.mean(spearmans)) if spearmans else float("nan"),
        "heldout_spearman_min": float(np.min(spearmans)) if spearmans else float("nan"),
        "fit_s": final["fit_s"],
        "wall_s": time.perf_counter() - start,
    }
