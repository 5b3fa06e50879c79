"""Overrides that make each built-in experiment run in seconds (tests/test_experiment_configs.py).

They live here, not in the production YAML, so they never reach a run's config.yaml or W&B. A new
experiment file under experiments/experiment/ needs an entry (the test says so); an experiment
whose smoke run still takes more than ~30 s goes into SLOW too.
"""
from __future__ import annotations

NB201_TINY = ["space.C=4", "space.N=1"]
PRIOR_TINY = ["train.max_steps=3", "train.ckpt_every=1", "data.n_samples=64", "data.batch_size=16", "n=8",
              "batch_size=8", "solver.steps=2", "net.d_model=16", "net.n_layers=1", "net.n_heads=2", "net.d_ff=16"]

SMOKE: dict[str, list[str]] = {
    "bo_nas": ["method=bananas", "budget=3", "bo.n_init=2", "train.epochs=1", "train.max_steps=3", *NB201_TINY],
    "build_meta_db": ["meta_db.n_tasks=1", "meta_db.archs_per_task=1", "train.epochs=1", "train.max_steps=2", "space.C=4"],
    "evaluate": ["train.epochs=1", "train.max_steps=3", *NB201_TINY],
    "fit_acc_predictor_mbv3": ["n_archs=4", "heldout_frac=0.25", "predictor.steps=4", "train.epochs=1",
                               "train.max_steps=1", "space.resolution=32"],
    "fit_cost_predictor": ["n_archs=8", "heldout_frac=0.25", "predictor.steps=4", "measure.runs=1", "measure.warmup=0",
                           "space.resolution=32"],
    "generate": ["n=8", "batch_size=8", "solver.steps=2"],
    "guided_generation": ["n_labeled=64", "n_heldout=64", "n=8",
                          "batch_size=8", "solver.steps=4", "predictor.steps=4"],
    "pareto_generation": ["n=6", "n_unguided=6", "batch_size=6", "solver.steps=2", "timing.runs=1", "timing.warmup=0",
                          "space.resolution=32"],
    "random_search": ["budget=2", "train.epochs=1", "train.max_steps=3", *NB201_TINY],
    "train_dataset_encoder": ["meta_db.n_tasks=2", "train.epochs=1", "train.max_steps=2", "train.batch_size=8",
                              "dataset_encoder.backbone=resnet10t", "dataset_encoder.min_size=16"],
    "train_meta_predictor": ["meta_predictor.steps=5", "meta_predictor.ensemble=1", "folds=2", "n_per_class=2"],
    "train_prior": PRIOR_TINY,
    "train_prior_mbv3": PRIOR_TINY,
    "transfer_nas": ["n_candidates=8", "batch_size=8", "top_k=1", "solver.steps=2", "train.epochs=1", "train.max_steps=2",
                     "n_per_class=2"],
    "transfer_nas_paper": ["task=digits", "task.classes=null", *NB201_TINY, "n_candidates=8", "batch_size=8", "top_k=1",
                           "solver.steps=2", "guidance.weight=1.0", "train.epochs=1", "train.max_steps=2", "n_per_class=2"],
}

SLOW: set[str] = set()  # experiments whose smoke run takes more than ~30 s
