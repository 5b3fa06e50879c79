"""``experiment=transfer_nas``: generate, rank and train architectures for an unseen task.

1. Encode the task: per-class image-feature sets (``dataset_encoder``), ``n_per_class`` images.
2. Guided generation: the space's prior, guided by the meta-predictor bound to that task
   (``guidance.weight``, plus particle-guidance diversity), ``n_candidates`` samples.
3. Rank the distinct candidates (isomorphism classes) with the clean meta-predictor (t = 0,
   mean over its ensemble).
4. Train the ``top_k`` for real (``train`` budget); the best by validation accuracy is the answer.
5. Baseline at an equal training budget, in the same run: ``top_k`` random archs.

The trainings of step 4-5 run on ``executor`` (``local`` or ``ray``, docs/scale.md), each with
the run's ``seed``; an arch in both groups is trained once. Every trained arch is appended to
``history.jsonl`` (keyed by group and arch) as soon as it finishes; a rerun in the same folder
resumes and trains only what is missing. ``archs.csv`` lists every trained arch (group, arch,
predicted, val_acc, test_acc) and ``predicted_vs_measured.png`` plots the meta-predictor's score
against the measured test accuracy.
Results: ``best_arch``, ``best_val_acc``, ``best_test_acc``, ``random_best_arch``,
``random_best_test_acc``, ``n_trained``, ``n_candidates_unique``,
``predictor_spearman_on_task`` (predicted vs measured test accuracy over every arch trained in
the run; null when they all scored the same), ``generate_s``, ``wall_s``, ``task`` and
``encoder_weights`` (the dataset encoder's weights: ``pretrained``, ``trained`` or ``random``;
see ``nag.modules.nets.feature_extractor``).
"""
from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig
from tqdm import tqdm

from nag.diffusion.guidance import GuideSpec
from nag.diffusion.prior import load_prior
from nag.diffusion.sampling import SamplerSettings, build_sampler
from nag.errors import MissingDataError
from nag.evaluation import TrainBudget, train_eval
from nag.executor import Job, build_executor
from nag.experiments import (build_budget, build_space, build_task, distinct_sample, experiment, plain, run_dir,
                             space_options, trainer_settings)
from nag.experiments.config import PositiveInt, SamplingConfig
from nag.io import RowStore, atomic_write_csv, atomic_write_png
from nag.meta.database import ASSETS
from nag.meta.features import DatasetEncoderConfig, build_extractor
from nag.metrics import spearman
from nag.schema import Settings
from nag.wandb_utils import log_metrics

HISTORY = "history.jsonl"


class MetaPredictorPath(Settings):
    path: str | None  # null = nag/assets/predictors/meta_<space>_diverse.pt


class TransferNASConfig(SamplingConfig):
    meta_predictor: MetaPredictorPath
    dataset_encoder: DatasetEncoderConfig
    n_per_class: PositiveInt
    guidance: GuideSpec
    n_candidates: PositiveInt
    top_k: PositiveInt
    train: TrainBudget


def resolve_meta_predictor(cfg: DictConfig, space) -> Any:
    from nag.modules.meta_predictor import MetaPredictor

    path = cfg.meta_predictor.get("path")
    path = Path(path) if path else ASSETS / "predictors" / f"meta_{space.name}_diverse.pt"
    if not path.is_file():
        raise MissingDataError(
            f"meta-predictor {path} does not exist. Train one with "
            f"`python -m nag.run experiment=train_meta_predictor meta_db.path=<db.jsonl> save_to={path}` "
            f"or pass meta_predictor.path=<file>."
        )
    return MetaPredictor.load(path, space)


def plot_predicted_vs_measured(path: Path, rows: list[dict], title: str) -> None:
    """Scatter of the meta-predictor's score against the measured test accuracy, one colour per group; atomic PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.6, 4.2), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for group, color in (("guided", "tab:blue"), ("random", "0.5")):
        pts = [(r["predicted"], r["test_acc"]) for r in rows if r["group"] == group]
        if pts:
            x, y = zip(*pts)
            ax.scatter(x, y, s=28, c=color, alpha=0.8, linewidths=0, label=f"{group} ({len(pts)})")
    ax.set_xlabel("meta-predictor score (clean, t = 0)")
    ax.set_ylabel("measured test accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    atomic_write_png(path, fig)


def distinct_by_class(space, archs: list) -> list:
    seen: set = set()
    out = []
    for a in archs:
        key = space.canonical(a)
        if key not in seen:
            seen.add(key)
            out.append(a)
    return out


@experiment("transfer_nas", schema=TransferNASConfig)
def transfer_nas(cfg: DictConfig) -> dict:
    start = time.perf_counter()
    space, task, budget = build_space(cfg), build_task(cfg), build_budget(cfg)
    seed, k = int(cfg.seed), int(cfg.top_k)
    prior = load_prior(cfg.prior.path, space)
    meta = resolve_meta_predictor(cfg, space)
    if (difference := meta.space_difference(space_options(cfg))) is not None:
        warnings.warn(f"the meta-predictor learned accuracies of another macro network than this run trains: "
                      f"{difference}. Its ranking of cells may not hold here; set space as it was trained "
                      f"(its built_with: {meta.built_with['space']}), or train one on a database of this network", stacklevel=1)

    # 1-2. encode the task, generate guided candidates
    extractor = build_extractor(plain(cfg.dataset_encoder))
    meta.check_encoder(extractor.identity())
    predictor = meta.for_task(extractor.task_features(task, int(cfg.n_per_class), seed))
    guide = GuideSpec(**plain(cfg.guidance)).build(predictor)
    sampler = build_sampler(prior, SamplerSettings.pick(cfg), [guide])
    gen_start = time.perf_counter()
    candidates = distinct_by_class(space, sampler.sample(int(cfg.n_candidates), seed=seed))
    generate_s = time.perf_counter() - gen_start

    # 3. rank with the clean predictor
    mean, _ = predictor.predict_archs(candidates, t=0.0)
    order = np.argsort(-mean[:, 0].numpy(), kind="stable")
    top = [candidates[i] for i in order[:k]]
    random_archs = distinct_sample(space, k, seed=seed + 1)

    # 4-5. train the top-k and the random baseline, resumably, on the executor
    store = RowStore(run_dir() / HISTORY, ("group", "arch"))
    plan = [("guided", space.format(a), a) for a in top] + [("random", space.format(a), a) for a in random_archs]
    trained = {r["arch"]: r for r in store.rows()}  # an arch in both groups is trained once: same arch, task, seed
    needed = {name: arch for group, name, arch in plan if (group, name) not in store and name not in trained}

    def write(name: str, metrics: dict) -> None:
        for group, plan_name, arch in plan:
            if plan_name == name and (group, name) not in store:
                pred = float(predictor.predict_archs([arch], t=0.0)[0][0, 0])
                row = {"group": group, "arch": name, "predicted": pred,
                       **{x: metrics[x] for x in ("val_acc", "test_acc", "wall_s")}}
                store.append(row)
                log_metrics({f"{group}_val_acc": row["val_acc"], f"{group}_test_acc": row["test_acc"]})

    for name, row in trained.items():  # the other group of an arch trained before a kill
        write(name, row)
    with build_executor(cfg.get("executor")) as executor:
        jobs = []
        if needed:
            shared_space, shared_task = executor.share(space), executor.share(task)
            trainer = {"trainer": trainer_settings(cfg)}
            jobs = [Job(name, train_eval, (shared_space, arch, shared_task, budget, seed), trainer)
                    for name, arch in needed.items()]
        n_archs = len({name for _, name, _ in plan})
        done = tqdm(executor.run(jobs), total=n_archs, initial=n_archs - len(needed), desc="transfer_nas: train",
                    unit="arch", disable=None)
        for job, metrics in done:
            write(job.key, metrics)
    by_key = store.by_key()
    rows = [by_key[(group, name)] for group, name, _ in plan]

    atomic_write_csv(run_dir() / "archs.csv", rows, ["group", "arch", "predicted", "val_acc", "test_acc", "wall_s"])
    plot_predicted_vs_measured(run_dir() / "predicted_vs_measured.png", rows, f"transfer_nas on {task.name}")

    def best(group: str) -> dict:
        return max((r for r in rows if r["group"] == group), key=lambda r: r["val_acc"])

    guided, rand = best("guided"), best("random")
    unique_rows = list({r["arch"]: r for r in rows}.values())
    rho = spearman([r["predicted"] for r in unique_rows], [r["test_acc"] for r in unique_rows])
    return {
        "best_arch": guided["arch"],
        "best_val_acc": guided["val_acc"],
        "best_test_acc": guided["test_acc"],
        "random_best_arch": rand["arch"],
        "random_best_test_acc": rand["test_acc"],
        "guided_mean_test_acc": float(np.mean([r["test_acc"] for r in rows if r["group"] == "guided"])),
        "random_mean_test_acc": float(np.mean([r["test_acc"] for r in rows if r["group"] == "random"])),
        "n_trained": len(rows),
        "n_candidates_unique": len(candidates),
        "predictor_spearman_on_task": rho,  # null when every trained arch scored the same
        "generate_s": generate_s,
        "guidance_weight_factor": sampler.weight_factor,
        "wall_s": time.perf_counter() - start,
        "task": task.name,
        "encoder_weights": extractor.weights_kind,
    }
