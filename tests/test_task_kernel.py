"""The kernel task condition: weights over the meta-training tasks, and a meta-predictor built on it."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nag.errors import ConfigError, UnknownNameError
from nag.metrics import spearman
from nag.modules.meta_predictor import MetaPredictor, fit_meta_predictor, pad_classes, select_kernel_width
from nag.modules.nets.task_kernel import TaskKernelEncoder, task_descriptor
from nag.spaces import get_space

F = 8
VE = {"name": "ve", "sigma_min": 0.1, "sigma_max": 5.0}
KERNEL_META = {"name": "meta", "hidden": 32, "layers": 2, "time_dim": 16, "task_dim": 8, "head_hidden": 32,
               "task_encoder": "kernel"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tasks(offsets, k=3, n=4, seed=0):
    """Per-class feature sets [k, n, F]: noise around ``o``, of a spread that grows with ``o``."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(k, n, F, generator=g) * (0.3 + 0.3 * o) + o for o in offsets]


def _encoder(tasks, tau=0.1, kappa=0.0):
    torch.manual_seed(0)
    enc = TaskKernelEncoder(F, 4, len(tasks), tau, kappa)
    feats, counts = pad_classes(tasks, [str(i) for i in range(len(tasks))])
    enc.set_reference(feats, counts)
    return enc, feats, counts


def test_descriptor_reads_only_real_classes():
    tasks = [torch.randn(k, 3, F) for k in (2, 4)]
    padded, counts = pad_classes(tasks, ["a", "b"])
    padded[0, 2:] = 1e3  # garbage in the padding
    together = task_descriptor(padded, counts)
    assert together.shape == (2, 3 * F + 1)
    torch.testing.assert_close(together[0], task_descriptor(tasks[0].unsqueeze(0))[0])


def test_descriptor_of_a_single_image_is_finite():
    assert torch.isfinite(task_descriptor(torch.randn(1, 1, 1, F))).all()


@settings(max_examples=10, deadline=None)
@given(k=st.integers(2, 5), n=st.integers(2, 6), seed=st.integers(0, 10_000))
def test_descriptor_ignores_the_order_of_classes_and_images(k, n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(k, n, F, generator=g)
    shuffled = x[torch.randperm(k, generator=g)][:, torch.randperm(n, generator=g)]
    torch.testing.assert_close(task_descriptor(shuffled.unsqueeze(0)), task_descriptor(x.unsqueeze(0)), rtol=1e-4, atol=1e-5)


def test_a_training_task_weighs_itself_and_an_unseen_one_its_neighbours():
    tasks = _tasks([0.0, 0.1, 3.0, 3.1])
    enc, feats, counts = _encoder(tasks, tau=0.05)
    w = enc.weights(feats, counts)
    assert w.shape == (4, 5) and torch.allclose(w.sum(-1), torch.ones(4))
    assert (w.argmax(-1) == torch.arange(4)).all()  # each training task is nearest to itself
    near_first = enc.weights(_tasks([3.05], seed=1)[0].unsqueeze(0))[0]
    assert near_first[2:4].sum() > 0.9  # an unseen task near tasks 2 and 3
    left_out = enc.weights(feats, counts, exclude=torch.eye(4, dtype=torch.bool))
    assert (left_out.diagonal() == 0).all() and left_out[0, 1] > 0.9  # without itself: its neighbour
    assert enc(feats[0]).shape == (4,) and enc(feats, counts).shape == (4, 4)


def test_far_tasks_fall_back_to_the_average_prototype_and_alike_tasks_get_one_embedding():
    tasks = _tasks([0.0, 1.0, 2.0])
    enc, feats, counts = _encoder(tasks, tau=0.1, kappa=1e-2)
    far = enc.weights(_tasks([50.0])[0].unsqueeze(0))[0]
    assert far[-1] > 0.99  # far from every training task: the average
    enc.set_width(0.1, 1e6)
    torch.testing.assert_close(enc(feats[0]), enc.prototypes.mean(0), rtol=1e-4, atol=1e-4)
    blank = torch.zeros(3, 3, 4, F)  # the unconditioned baseline: every task alike
    blind = TaskKernelEncoder(F, 4, 3)
    blind.set_reference(blank)
    emb = blind(blank)
    assert torch.allclose(emb, emb[:1].expand_as(emb)) and torch.isfinite(emb).all()
    with pytest.raises(ValueError, match="tau must be > 0 and kappa >= 0"):
        enc.set_width(0.0)
    with pytest.raises(ValueError, match=r"\[K, n, 8\]"):
        enc(torch.randn(3, 4, F + 1))


def _grouped_rows(table, n_archs=40):
    """Four training tasks in two groups with opposite rankings (the average ranking is useless),
    told apart only by their features (the groups' images differ in level and spread); an unseen
    task of each group."""
    idx = np.random.default_rng(0).permutation(len(table.archs))[:n_archs]
    acc = np.asarray(table.values("cifar10_test_acc"))[idx]
    offsets = {"a0": 0.0, "a1": 0.2, "b0": 2.0, "b1": 2.2, "a_new": 0.1, "b_new": 2.1}
    feats = dict(zip(offsets, _tasks(list(offsets.values()))))
    rows = [{"task": t, "arch": table.archs[i], "accuracy": float(v if t[0] == "a" else -v), "source": t[0]}
            for t in ("a0", "a1", "b0", "b1") for i, v in zip(idx, acc)]
    return rows, feats, [table.archs[i] for i in idx], acc


def test_a_kernel_meta_predictor_ranks_an_unseen_task_like_its_neighbours(synthetic_table, tmp_path):
    space = get_space("nb201")
    rows, feats, archs, acc = _grouped_rows(synthetic_table)
    train_feats = {t: feats[t] for t in ("a0", "a1", "b0", "b1")}
    meta = fit_meta_predictor(space, rows, train_feats, VE, steps=400, net_config=KERNEL_META, seed=0)
    assert meta.kernel and set(meta.kernel_scores) == {"tau", "kappa", "score", "grid"}
    rho = {t: spearman(meta.for_task(feats[t]).predict_archs(archs)[0][:, 0].tolist(), acc.tolist()) for t in ("a_new", "b_new")}
    assert rho["a_new"] > 0.5 and rho["b_new"] < -0.5, rho  # each follows its own group's ranking
    loaded = MetaPredictor.load(meta.save(tmp_path / "kernel.pt"), space)  # width and reference travel along
    torch.testing.assert_close(loaded.for_task(feats["a_new"]).predict_archs(archs)[0],
                               meta.for_task(feats["a_new"]).predict_archs(archs)[0])
    for member in meta.net.members:
        member.dataset.set_width(0.1, 0.0)  # no pull to the centre: the nearest tasks left decide
    away = meta.for_task(feats["a0"], leave_out=["a0", "a1"]).predict_archs(archs)[0][:, 0]
    assert spearman(away.tolist(), acc.tolist()) < -0.5  # group a left out: a0 is ranked like group b


def test_width_selection_uses_each_source_left_out(synthetic_table):
    space = get_space("nb201")
    rows, feats, archs, acc = _grouped_rows(synthetic_table, n_archs=16)
    train_feats = {t: feats[t] for t in ("a0", "a1", "b0", "b1")}
    meta = fit_meta_predictor(space, rows, train_feats, VE, steps=5, net_config=KERNEL_META, seed=0)
    grid = select_kernel_width(meta, space, rows, train_feats, taus=(0.1, 1.0), kappas=(0.0, 1.0))["grid"]
    assert set(grid) == {(0.1, 0.0), (0.1, 1.0), (1.0, 0.0), (1.0, 1.0)}
    best = max(grid.values())
    assert meta.kernel_scores["score"] == best
    enc = meta.net.members[0].dataset
    assert (float(enc.tau), float(enc.kappa)) == pytest.approx((meta.kernel_scores["tau"], meta.kernel_scores["kappa"]))
    no_source = [{k: v for k, v in r.items() if k != "source"} for r in rows]
    with_sources = select_kernel_width(meta, space, rows, train_feats, taus=(0.1,), kappas=(0.0,))["score"]
    without = select_kernel_width(meta, space, no_source, train_feats, taus=(0.1,), kappas=(0.0,))["score"]
    assert with_sources != without  # leaving a whole source out is scored too


def test_leave_out_and_task_encoder_names_are_checked(synthetic_table):
    space = get_space("nb201")
    rows, feats, archs, _ = _grouped_rows(synthetic_table, n_archs=8)
    train_feats = {t: feats[t] for t in ("a0", "a1", "b0", "b1")}
    meta = fit_meta_predictor(space, rows, train_feats, VE, steps=2, net_config=KERNEL_META, seed=0)
    with pytest.raises(ConfigError, match=r"not training tasks: \['zz'\]"):
        meta.for_task(feats["a0"], leave_out=["zz"])
    plain = fit_meta_predictor(space, rows, train_feats, VE, steps=2, seed=0,
                               net_config={**KERNEL_META, "task_encoder": "set", "set_hidden": 16, "num_inducing": 2})
    assert not plain.kernel and plain.kernel_scores == {}
    with pytest.raises(ConfigError, match="needs a kernel meta-predictor"):
        plain.for_task(feats["a0"], leave_out=["a0"])
    with pytest.raises(UnknownNameError, match="Known task encoders: kernel, set"):
        fit_meta_predictor(space, rows, train_feats, VE, steps=1, net_config={**KERNEL_META, "task_encoder": "knn"})


def test_experts_by_source_give_each_group_its_own_network(synthetic_table, tmp_path):
    """experts_by=source: one expert per source, a training task routed to its own; an unseen task
    follows the expert of the tasks it resembles; the net round-trips through a checkpoint."""
    from nag.modules.meta_predictor import task_groups

    space = get_space("nb201")
    rows, feats, archs, acc = _grouped_rows(synthetic_table)
    train_feats = {t: feats[t] for t in ("a0", "a1", "b0", "b1")}
    assert task_groups(rows, ["a0", "a1", "b0", "b1"], "source") == {"experts": 2, "task_groups": [0, 0, 1, 1]}
    assert task_groups(rows, ["a0", "a1"], "source") == {"experts": 1}
    meta = fit_meta_predictor(space, rows, train_feats, VE, steps=400, net_config=KERNEL_META, experts_by="source", seed=0)
    net = meta.net.members[0]
    assert net.experts == 2 and len(net.encoder) == 2 and net.cond_dim == KERNEL_META["task_dim"] + 2
    for member in meta.net.members:
        member.dataset.set_width(0.1, 0.0)
    routes = net.embed_task(pad_classes([feats[t] for t in ("a0", "b1", "a_new")], ["a0", "b1", "a_new"])[0])[:, -2:]
    torch.testing.assert_close(routes.sum(-1), torch.ones(3))
    assert routes[0, 0] > 0.9 and routes[1, 1] > 0.9 and routes[2, 0] > 0.9  # own group; an unseen a-task goes to a
    rho = {t: spearman(meta.for_task(feats[t]).predict_archs(archs)[0][:, 0].tolist(), acc.tolist()) for t in ("a_new", "b_new")}
    assert rho["a_new"] > 0.5 and rho["b_new"] < -0.5, rho
    loaded = MetaPredictor.load(meta.save(tmp_path / "experts.pt"), space)
    torch.testing.assert_close(loaded.for_task(feats["b_new"]).predict_archs(archs)[0],
                               meta.for_task(feats["b_new"]).predict_archs(archs)[0])


def test_experts_need_the_kernel_and_a_group_key(synthetic_table):
    space = get_space("nb201")
    rows, feats, _, _ = _grouped_rows(synthetic_table, n_archs=8)
    train_feats = {t: feats[t] for t in ("a0", "a1", "b0", "b1")}
    with pytest.raises(ConfigError, match="experts=2 needs task_encoder='kernel' and task_groups"):
        fit_meta_predictor(space, rows, train_feats, VE, steps=1, experts_by="source",
                           net_config={**KERNEL_META, "task_encoder": "set", "set_hidden": 16, "num_inducing": 2})
    with pytest.raises(ConfigError, match="experts_by='family' needs every row to carry 'family'"):
        fit_meta_predictor(space, rows, train_feats, VE, steps=1, net_config=KERNEL_META, experts_by="family")


def test_transfer_nas_runs_with_a_kernel_meta_predictor(tmp_path):
    """train_meta_predictor with the kernel condition, then transfer_nas guided by what it saved."""
    import json

    from smoke import SMOKE

    from nag.experiments import run_experiment
    from nag.io import read_jsonl
    from nag.meta.database import ASSETS
    from nag.run import compose_config

    rows = read_jsonl(ASSETS / "meta_db" / "diverse_nb201.jsonl")
    tasks = [t for t in dict.fromkeys(r["task"] for r in rows if not r.get("held_out"))][:4]
    db = tmp_path / "db.jsonl"
    db.write_text("".join(json.dumps(r) + "\n" for t in tasks for r in [r for r in rows if r["task"] == t][:12]))
    saved = tmp_path / "kernel.pt"
    trained = run_experiment(compose_config([
        "experiment=train_meta_predictor", f"meta_db.path={db}", "meta_predictor.steps=5", "folds=0", "n_per_class=2",
        "meta_predictor.net_config.task_encoder=kernel", f"save_to={saved}"]), out_dir=tmp_path / "train")
    assert trained["kernel_tau"] > 0 and MetaPredictor.load(saved).kernel
    results = run_experiment(compose_config(["experiment=transfer_nas", f"meta_predictor.path={saved}", *SMOKE["transfer_nas"]]),
                             out_dir=tmp_path / "transfer")
    assert results["n_trained"] >= 2 and results["n_candidates_unique"] >= 1
