"""``experiment=train_meta_predictor``: fit the task-conditioned, noise-aware meta-predictor, and
measure whether the task condition transfers.

Reads a meta-database: nag's own (``meta_db.path``, JSON lines from ``experiment=build_meta_db``;
default the shipped diverse database, docs/transfer_nas.md), or MetaD2A's (``meta_db.metad2a_path``, see ``nag.meta.metad2a``).
Rows of one (task, arch) trained with several seeds are averaged. Tasks of nag's database are
encoded as per-class image-feature sets (``dataset_encoder``); MetaD2A's come with features. The
meta-predictor is trained under the SDE of the prior it will guide (``prior.path``, default the
space's shipped prior), so GuidedSampler accepts the pair. ``label`` turns each task's accuracies
into the training target: ``raw``, or ``task_z`` (standardised within the task: the network learns
which archs win on a task, not how hard the task is).

Transfer is measured on tasks the network never saw, against two baselines on the same rows:
(a) the same network trained without the dataset condition (every task's features replaced by one
constant, so it can only learn an average ranking), and (b) params and FLOPs as predictors.
  - ``folds`` > 0: the training tasks are split (seeded) into that many groups; each group is
    held out in turn, both networks are fit on the rest, and each held-out task gets a Spearman
    rank correlation of every predictor with its measured accuracy (``folds.csv``).
  - the database's evaluation tasks (``held_out: true`` rows, never trained on) are scored by the
    final networks, fit on every training task (``heldout_tasks.csv``).

Writes ``meta_predictor.pt`` in the run folder (and to ``save_to`` when set) and
``progress.jsonl``: one fsynced row per finished fit, written after what it records. Rerunning
with the same ``hydra.run.dir`` resumes: finished fits are not fitted again, and a run folder of
other settings is refused.

Results: ``n_rows``, ``n_tasks``, ``encoder_weights`` (the dataset encoder's weights: ``pretrained``,
``trained`` or ``random``; the saved meta-predictor records the encoder and transfer_nas refuses
another); over the folds' held-out tasks ``heldout_spearman`` (mean, the
meta-predictor), ``heldout_spearman_min``, ``unconditioned_spearman``, ``params_spearman``,
``flops_spearman``; over the evaluation tasks (when the database has some) ``eval_spearman``,
``eval_unconditioned_spearman``, ``eval_params_spearman``, ``eval_flops_spearman``; for a kernel
task condition (``meta_predictor.net_config.task_encoder: kernel``; the default is ``set``) the final fit's
``kernel_tau`` and ``kernel_kappa``; ``fit_s`` (the final fit), ``wall_s``.
"""
from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from omegaconf import DictConfig
from torch import Tensor

from nag.diffusion.prior import PriorConfig, load_prior
from nag.errors import ConfigError
from nag.experiments import build_space, experiment, plain, run_dir, space_options, trainer_settings
from nag.experiments.config import NonNegativeInt, PositiveInt, RunConfig
from nag.io import append_jsonl, atomic_write_csv, read_jsonl, to_jsonable
from nag.meta import MetaDatabase
from nag.meta.database import ASSETS
from nag.meta.features import DatasetEncoderConfig, build_extractor, spec_features
from nag.metrics import spearman
from nag.modules.meta_predictor import MetaPredictorOptions
from nag.schema import Settings, describe_difference, space_difference

PROGRESS = "progress.jsonl"
# what the fits depend on; save_to is left out
SETTINGS_KEYS = ("space", "prior", "meta_db", "dataset_encoder", "n_per_class", "meta_predictor", "label", "folds", "seed")
BASELINES = ("params", "flops")  # cost predictors: params_M and flops_M of the space's network
LABELS = ("raw", "task_z")


class MetaDBSource(Settings):
    path: str | None  # null = the shipped database nag/assets/meta_db/diverse_<space>.jsonl
    metric: str
    metad2a_path: str | None


class TrainMetaPredictorConfig(RunConfig):
    prior: PriorConfig
    meta_db: MetaDBSource
    dataset_encoder: DatasetEncoderConfig
    n_per_class: PositiveInt
    meta_predictor: MetaPredictorOptions
    label: Literal[LABELS]  # type: ignore[valid-type]
    folds: NonNegativeInt
    save_to: str | None


# ----- data ------------------------------------------------------------------------------------
def seed_means(rows: Sequence[Mapping[str, Any]], metric: str) -> list[dict]:
    """One row ``{task, arch, accuracy, source}`` per (task, arch): ``metric`` averaged over training
    seeds; ``source`` (the task's image source) is None for rows without one."""
    values: dict[tuple[str, str], list[float]] = defaultdict(list)
    source: dict[str, Any] = {}
    for r in rows:
        values[(r["task"], r["arch"])].append(float(r[metric]))
        source[r["task"]] = r.get("source")
    return [{"task": t, "arch": a, "accuracy": float(np.mean(v)), "source": source[t]} for (t, a), v in values.items()]


class MetaRows(NamedTuple):
    """What ``load_meta_rows`` reads: training and evaluation rows (``held_out: true``; none for
    MetaD2A), each ``{"task", "arch", "accuracy"}``; ``{task: features [K, n, F]}`` of both; the
    dataset encoder's ``identity()`` and the rows' ``built_with`` (None for MetaD2A)."""

    train: list[dict]
    held_out: list[dict]
    features: dict[str, Tensor]
    encoder: dict | None
    built_with: dict | None


def load_meta_rows(cfg: DictConfig, space, seed: int) -> MetaRows:
    """The configured database's rows and its tasks' features (``MetaRows``)."""
    n_per_class = int(cfg.n_per_class)
    if cfg.meta_db.get("metad2a_path"):
        from nag.meta.metad2a import read_metad2a

        rows, features = read_metad2a(cfg.meta_db.metad2a_path, n_per_class)
        return MetaRows(rows, [], features, None, None)
    db = MetaDatabase(cfg.meta_db.path or ASSETS / "meta_db" / f"diverse_{space.name}.jsonl")
    metric = str(cfg.meta_db.metric)
    raw = db.rows(missing_ok=False)
    missing = sorted({k for r in raw for k in ("task", "arch", metric) if k not in r})
    if missing:
        raise ConfigError(f"rows of {db.path} lack {missing}; meta_db.metric={metric!r} must be a column of every row")
    settings = db.built_with()
    if len(settings) > 1:
        raise ConfigError(f"{db.path} mixes rows built with different settings: "
                          f"{describe_difference(settings[0], settings[1], label='other rows')}; one database holds one macro network "
                          f"and budget (build another file with meta_db.path=...)")
    if settings and (difference := space_difference(settings[0], space_options(cfg))) is not None:
        raise ConfigError(f"{db.path} was built with another macro network: {difference}; its accuracies belong "
                          f"to that network, so set space to the database's values "
                          f"(e.g. space.N={settings[0]['space'].get('N')}), or build a database with this run's")
    held_out = {r["task"] for r in raw if r.get("held_out", False)}
    rows = seed_means(raw, metric)
    extractor = build_extractor(plain(cfg.dataset_encoder))
    features = spec_features(extractor, db.task_specs(), n_per_class, seed)
    return MetaRows([r for r in rows if r["task"] not in held_out], [r for r in rows if r["task"] in held_out], features,
                    extractor.identity(), settings[0] if settings else None)


def task_labels(rows: Sequence[Mapping[str, Any]], how: str) -> list[dict]:
    """``rows`` with ``accuracy`` as the training target ``how`` (``LABELS``)."""
    if how == "raw":
        return [dict(r) for r in rows]
    by_task: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        by_task[r["task"]].append(r["accuracy"])
    stats = {t: (float(np.mean(v)), float(np.std(v)) or 1.0) for t, v in by_task.items()}
    return [{**r, "accuracy": (r["accuracy"] - stats[r["task"]][0]) / stats[r["task"]][1]} for r in rows]


def fold_tasks(tasks: Sequence[str], folds: int, seed: int) -> list[list[str]]:
    """``tasks`` shuffled with ``seed`` and dealt into ``folds`` groups (each a fold's held-out tasks)."""
    if folds > len(tasks):
        raise ConfigError(f"folds={folds} but the database has only {len(tasks)} training tasks; use folds <= {len(tasks)}")
    order = [tasks[i] for i in np.random.default_rng(seed).permutation(len(tasks))]
    return [order[i::folds] for i in range(folds)]


def unconditioned(features: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Every task's features replaced by one constant set: the network cannot tell tasks apart."""
    shape = next(iter(features.values())).shape
    blank = torch.zeros(1, *shape[1:])
    return {task: blank for task in features}


# ----- fitting and scoring ---------------------------------------------------------------------
def fit_rows(cfg: DictConfig, space, sde_config, rows: list[dict], features: dict[str, Tensor], seed: int):
    from nag.modules.meta_predictor import fit_meta_predictor

    parsed = [{**r, "arch": space.parse(r["arch"])} for r in rows]
    options = MetaPredictorOptions(**plain(cfg.meta_predictor)).settings()
    return fit_meta_predictor(space, parsed, features, sde_config, seed=seed, progress=True, trainer=trainer_settings(cfg),
                              **options)


class CostBaselines:
    """params_M / flops_M of each arch (``space.cost``), computed once per arch."""

    def __init__(self, space) -> None:
        self.space = space
        self._cost: dict[str, dict[str, float]] = {}

    def __call__(self, arch: str, name: str) -> float:
        if arch not in self._cost:
            self._cost[arch] = self.space.cost(self.space.parse(arch))
        return self._cost[arch][f"{name}_M"]


def score_tasks(space, models: Mapping[str, tuple[Any, Mapping[str, Tensor]]], rows: Sequence[Mapping[str, Any]],
                costs: CostBaselines) -> dict[str, dict[str, float | None]]:
    """{task: {predictor: Spearman with the measured accuracy}} for ``models`` (name -> a
    MetaPredictor and the task features it reads) and the cost baselines, on each task of ``rows``."""
    by_task: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        by_task[r["task"]].append(r)
    out: dict[str, dict[str, float | None]] = {}
    for task, task_rows in by_task.items():
        true = [r["accuracy"] for r in task_rows]
        archs = [space.parse(r["arch"]) for r in task_rows]
        scores: dict[str, float | None] = {}
        for name, (meta, features) in models.items():
            mean, _ = meta.for_task(features[task]).predict_archs(archs, t=0.0)
            scores[name] = spearman(mean[:, 0].tolist(), true)
        for name in BASELINES:
            scores[name] = spearman([costs(r["arch"], name) for r in task_rows], true)
        out[task] = scores
    return out


def mean_of(table: Mapping[str, Mapping[str, float | None]], column: str, how=np.mean) -> float:
    values = [s[column] for s in table.values() if s.get(column) is not None]
    return float(how(values)) if values else math.nan


# ----- the experiment --------------------------------------------------------------------------
def finished_fits(path: Path, settings: dict) -> dict[str, dict]:
    """Rows of ``progress.jsonl`` by fit ("fold:<i>", "final", "final_unconditioned"); refuses rows of other settings."""
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


def write_table(path: Path, table: Mapping[str, Mapping[str, Any]], fold_of: Mapping[str, int] | None = None) -> None:
    columns = ["task", *(["fold"] if fold_of else []), "meta", "unconditioned", *BASELINES]
    rows = [{"task": t, **({"fold": fold_of[t]} if fold_of else {}), **s} for t, s in table.items()]
    atomic_write_csv(path, rows, columns)


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
    measured, eval_rows, features, encoder, db_settings = load_meta_rows(cfg, space, seed)
    blank = unconditioned(features)
    rows = task_labels(measured, str(cfg.label))
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    costs = CostBaselines(space)

    def fit(key: str, filename: str, train: list[dict], feats: dict[str, Tensor]) -> tuple[Any, dict]:
        """A final fit and its progress row, or both read back when a row says it finished."""
        path = run_dir() / filename
        if key in done and path.is_file():
            return MetaPredictor.load(path, space), done[key]
        fit_start = time.perf_counter()  # the checkpoint is written before its row: a kill between them refits
        model = fit_rows(cfg, space, sde_config, train, feats, seed)
        model.encoder, model.built_with = encoder, db_settings
        model.save(path)
        row = {"fit": key, "fit_s": time.perf_counter() - fit_start, "settings": settings}
        append_jsonl(progress, row)
        return model, row

    cv: dict[str, dict[str, float | None]] = {}
    fold_of: dict[str, int] = {}
    for i, held in enumerate(fold_tasks(tasks, int(cfg.folds), seed) if cfg.folds else []):
        row = done.get(f"fold:{i}")
        if row is None:
            train = [r for r in rows if r["task"] not in held]
            test = [r for r in measured if r["task"] in held]
            models = {"meta": (fit_rows(cfg, space, sde_config, train, features, seed), features),
                      "unconditioned": (fit_rows(cfg, space, sde_config, train, blank, seed), blank)}
            row = {"fit": f"fold:{i}", "scores": score_tasks(space, models, test, costs), "settings": settings}
            append_jsonl(progress, row)
        cv.update(row["scores"])
        fold_of.update({t: i for t in row["scores"]})

    meta, final = fit("final", "meta_predictor.pt", rows, features)
    if cfg.get("save_to"):
        meta.save(cfg.save_to)

    results: dict[str, Any] = {"n_rows": len(rows), "n_tasks": len(tasks),
                               "encoder_weights": encoder["weights"] if encoder else "metad2a"}
    if cv:
        write_table(run_dir() / "folds.csv", cv, fold_of)
        results.update(heldout_spearman=mean_of(cv, "meta"), heldout_spearman_min=mean_of(cv, "meta", np.min),
                       unconditioned_spearman=mean_of(cv, "unconditioned"),
                       **{f"{b}_spearman": mean_of(cv, b) for b in BASELINES})
    if eval_rows:
        blind, _ = fit("final_unconditioned", "unconditioned.pt", rows, blank)
        table = score_tasks(space, {"meta": (meta, features), "unconditioned": (blind, blank)}, eval_rows, costs)
        write_table(run_dir() / "heldout_tasks.csv", table)
        results.update(eval_spearman=mean_of(table, "meta"), eval_unconditioned_spearman=mean_of(table, "unconditioned"),
                       **{f"eval_{b}_spearman": mean_of(table, b) for b in BASELINES})
    if meta.kernel_width:
        results.update({f"kernel_{k}": v for k, v in meta.kernel_width.items()})
    results.update(fit_s=final["fit_s"], wall_s=time.perf_counter() - start)
    return results
