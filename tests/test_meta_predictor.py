"""Set encoder invariances, image features, and the task-conditioned meta-predictor."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nag.errors import CheckpointMismatchError, ConfigError, MissingDataError
from nag.modules.meta_predictor import MetaPredictor, MetaPredictorModule, fit_meta_predictor
from nag.modules.nets.feature_extractor import ImageFeatureExtractor
from nag.modules.nets.set_encoder import ISAB, PMA, SAB, DatasetEncoder
from nag.modules.predictor import Predictor, PredictorModule
from nag.spaces import get_space

VE = {"name": "ve", "sigma_min": 0.1, "sigma_max": 5.0}
F = 16
SMALL_META = {
    "name": "meta",
    "hidden": 32,
    "layers": 2,
    "time_dim": 16,
    "task_dim": 16,
    "set_hidden": 32,
    "num_inducing": 4,
    "head_hidden": 32,
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def space():
    return get_space("nb201")


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return DatasetEncoder(in_dim=F, hidden=32, out_dim=8, heads=4, num_inducing=4).eval()


@settings(max_examples=10, deadline=None)
@given(k=st.integers(1, 6), n=st.integers(1, 7), seed=st.integers(0, 10_000))
def test_dataset_encoder_is_permutation_invariant(encoder, k, n, seed):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(k, n, F, generator=g)
    emb = encoder(feats)
    assert emb.shape == (8,)
    classes = torch.randperm(k, generator=g)
    within = torch.stack([torch.randperm(n, generator=g) for _ in range(k)])
    shuffled = feats[classes]
    shuffled = torch.gather(shuffled, 1, within.unsqueeze(-1).expand(-1, -1, F))  # a different order per class
    torch.testing.assert_close(encoder(shuffled), emb, rtol=1e-4, atol=1e-5)


def test_dataset_encoder_separates_tasks_and_batches(encoder):
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 4, F, generator=g), torch.randn(5, 4, F, generator=g) + 1.0
    batched = encoder(torch.stack([a, b]))
    assert batched.shape == (2, 8)
    torch.testing.assert_close(batched[0], encoder(a), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(batched[0], batched[1])
    with pytest.raises(ValueError, match=r"\[K, n, 16\]"):
        encoder(torch.randn(5, 4, F + 1))


def test_set_blocks_equivariance():
    torch.manual_seed(0)
    x = torch.randn(2, 6, 8)
    perm = torch.randperm(6)
    for block in (SAB(8, 8, 2), ISAB(8, 8, 2, 3)):
        block.eval()
        torch.testing.assert_close(block(x)[:, perm], block(x[:, perm]), rtol=1e-4, atol=1e-5)
    pma = PMA(8, 2, num_seeds=2).eval()
    assert pma(x).shape == (2, 2, 8)
    torch.testing.assert_close(pma(x), pma(x[:, perm]), rtol=1e-4, atol=1e-5)


class _FakeTask:
    """A stand-in exposing the Task API the extractor uses (class_sets)."""

    def __init__(self, name: str, k: int, channels: int, size: int) -> None:
        self.name, self.classes, self.calls = name, tuple(range(k)), 0
        self.shape = (k, channels, size)

    def class_sets(self, n_per_class: int, seed: int = 0):
        self.calls += 1
        k, c, s = self.shape
        return torch.rand(k, n_per_class, c, s, s, generator=torch.Generator().manual_seed(seed))


def test_feature_extractor_grey_small_images_and_cache():
    fx = ImageFeatureExtractor("resnet18")
    task = _FakeTask("grey8", k=3, channels=1, size=8)
    feats = fx.task_features(task, n_per_class=4, seed=0)
    assert feats.shape == (3, 4, 512) and torch.isfinite(feats).all()
    assert fx.task_features(task, n_per_class=4, seed=0) is feats and task.calls == 1  # cached
    fx.task_features(task, n_per_class=4, seed=1)
    assert task.calls == 2
    again = ImageFeatureExtractor("resnet18")  # fixed-seed fallback: the same features every time
    torch.testing.assert_close(again.task_features(task, 4, 0), feats)


def test_feature_extractor_loads_a_local_weights_file(tmp_path):
    src = ImageFeatureExtractor("resnet18")
    with torch.no_grad():
        for p in src.backbone.parameters():
            p.mul_(0.5)
    path = tmp_path / "resnet18.pth"
    torch.save({"state_dict": src.backbone.state_dict()}, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # real weights: no fallback warning
        fx = ImageFeatureExtractor("resnet18", pretrained_path=path)
    assert fx.weights_source == str(path)
    img = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(fx.extract(img), src.extract(img))
    with pytest.raises(MissingDataError, match="not found"):
        ImageFeatureExtractor("resnet18", pretrained_path=tmp_path / "absent.pth")
    with pytest.raises(ConfigError, match="timm"):
        ImageFeatureExtractor("not_a_model_xyz")


def _two_task_rows(table, n_archs: int):
    """Two tasks of table rows: 'c10' = the cifar10_test_acc column, 'c100' = cifar100_test_acc."""
    idx = np.random.default_rng(0).permutation(len(table.archs))[:n_archs]
    rows = []
    for task, col in (("c10", "cifar10_test_acc"), ("c100", "cifar100_test_acc")):
        vals = table.values(col)
        rows += [(task, table.archs[i], float(vals[i])) for i in idx]
    g = torch.Generator().manual_seed(0)
    feats = {"c10": torch.randn(4, 5, F, generator=g), "c100": torch.randn(4, 5, F, generator=g) + 0.5}
    return rows, feats, table, idx


def test_meta_predictor_binds_a_task_and_is_differentiable(space, synthetic_table, tmp_path):
    rows, feats, table, idx = _two_task_rows(synthetic_table, 64)
    meta = fit_meta_predictor(space, rows, feats, VE, steps=30, ensemble=2, net_config=SMALL_META, seed=0)
    assert isinstance(meta, MetaPredictor) and meta.targets == ["accuracy"] and meta.task_names == ["c10", "c100"]
    p10, p100 = meta.for_task(feats["c10"]), meta.for_task(feats["c100"])
    assert isinstance(p10, Predictor) and p10.sde_config == meta.sde_config
    x = torch.randn(6, space.num_nodes, space.num_ops, requires_grad=True)
    out = p10(x, torch.rand(6))
    assert out.shape == (6, 1)
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    archs = [table.archs[i] for i in idx[:8]]
    m10, v10 = p10.predict_archs(archs)
    assert (v10 > 0).all()  # two members disagree
    assert not torch.allclose(m10, p100.predict_archs(archs)[0])  # the task embedding matters

    # the bound predictor and the meta-predictor both survive a save / load round trip
    loaded_p = Predictor.load(p10.save(tmp_path / "bound.pt"), space)
    assert torch.equal(loaded_p.predict_archs(archs)[0], m10)
    loaded_meta = MetaPredictor.load(meta.save(tmp_path / "meta.pt"), space)
    assert torch.equal(loaded_meta.for_task(feats["c10"]).predict_archs(archs)[0], m10)
    with pytest.raises(CheckpointMismatchError, match="trained on space 'nb201' .*not on 'mbv3'.*train a new meta-predictor"):
        MetaPredictor.load(tmp_path / "meta.pt", get_space("mbv3"))
    with pytest.raises(CheckpointMismatchError, match="not a nag.meta_predictor"):
        MetaPredictor.load(tmp_path / "bound.pt")


def test_meta_module_reuses_the_predictor_training_path(space):
    assert issubclass(MetaPredictorModule, PredictorModule)
    assert MetaPredictorModule.loss is PredictorModule.loss
    assert MetaPredictorModule.training_step is PredictorModule.training_step


def test_meta_inputs_are_checked(space):
    archs = space.sample(3, 0)
    rows = [("a", archs[0], 1.0), ("b", archs[1], 2.0)]
    with pytest.raises(ConfigError, match="without features"):
        fit_meta_predictor(space, rows, {"a": torch.zeros(2, 3, F)}, VE, steps=1)
    with pytest.raises(ConfigError, match="training tasks must share n and F"):
        fit_meta_predictor(space, rows, {"a": torch.zeros(2, 3, F), "b": torch.zeros(2, 4, F)}, VE, steps=1)
    fit_meta_predictor(space, rows, {"a": torch.zeros(2, 3, F), "b": torch.ones(3, 3, F)}, VE, steps=1)  # 2 and 3 classes


def test_tasks_with_different_class_counts_embed_as_alone():
    """Padded to one [T, K, n, F] batch, each task's embedding is the one it gets alone: padding
    classes are never read."""
    from nag.modules.meta_predictor import pad_classes
    from nag.modules.nets.set_encoder import DatasetEncoder

    torch.manual_seed(0)
    encoder = DatasetEncoder(F, hidden=16, out_dim=8, heads=2, num_inducing=4).eval()
    tasks = [torch.randn(k, 3, F) for k in (2, 5, 3, 5)]
    padded, counts = pad_classes(tasks, ["a", "b", "c", "d"])
    assert padded.shape == (4, 5, 3, F) and counts.tolist() == [2, 5, 3, 5]
    with torch.no_grad():
        together = encoder(padded, counts)
        alone = torch.stack([encoder(t) for t in tasks])
        padded[0, 2:] = 100.0  # garbage in the padding changes nothing
        assert torch.allclose(encoder(padded, counts), together)
    assert torch.allclose(together, alone, atol=1e-5)


# ----- where the dataset encoder's weights come from (encoder_weights in results.json) ----------
def test_encoder_weights_kind_random_file_and_trained(tmp_path, monkeypatch):
    import nag.modules.nets.feature_extractor as fe

    monkeypatch.setattr(fe, "_warned_random", set())  # the fallback warns once per process
    with pytest.warns(UserWarning, match="randomly initialised"):
        fx = ImageFeatureExtractor("test_resnet")
    assert fx.weights_kind == "random"
    torch.save({"state_dict": fx.backbone.state_dict()}, tmp_path / "timm.pth")  # someone else's checkpoint
    assert ImageFeatureExtractor("test_resnet", pretrained_path=tmp_path / "timm.pth").weights_kind == "pretrained"
    with torch.no_grad():
        for p in fx.backbone.parameters():
            p.add_(0.01)
    img = torch.rand(2, 3, 32, 32)
    for name in ("enc.safetensors", "enc.pth"):
        path = fx.save_weights(tmp_path / name)  # nag's own trained encoder
        again = ImageFeatureExtractor("test_resnet", pretrained_path=path)
        assert again.weights_kind == "trained" and again.weights_source == str(path)
        torch.testing.assert_close(again.extract(img), fx.extract(img))
    with pytest.raises(ConfigError, match="kind must be 'pretrained' or 'trained'"):
        fx.save_weights(tmp_path / "x.pth", kind="random")


def test_encoder_weights_from_the_hugging_face_cache(tmp_path, monkeypatch):
    """A timm backbone whose weights are in the local HF cache loads them, offline."""
    import huggingface_hub.constants as hf_constants
    from safetensors.torch import save_file

    import timm

    model = timm.create_model("test_resnet", pretrained=False, num_classes=0)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(0.02)
    repo = tmp_path / "models--timm--test_resnet.r160_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    snap = repo / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(snap / "model.safetensors"))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # found weights: no random fallback warning
        fx = ImageFeatureExtractor("test_resnet")
    assert fx.weights_kind == "pretrained" and fx.weights_source == str(snap / "model.safetensors")
    assert all(torch.all(p == 0.02) for p in fx.backbone.parameters())


# ----- train_meta_predictor's data helpers -------------------------------------------------------
def test_rows_are_seed_averaged_labels_standardised_per_task_and_folds_partition_the_tasks():
    from nag.experiments.train_meta_predictor import fold_tasks, seed_means, task_labels, unconditioned

    raw = [{"task": "a", "arch": "x", "val_acc": 50.0, "seed": 0}, {"task": "a", "arch": "x", "val_acc": 60.0, "seed": 1},
           {"task": "a", "arch": "y", "val_acc": 70.0, "seed": 0}, {"task": "b", "arch": "x", "val_acc": 90.0, "seed": 0},
           {"task": "b", "arch": "y", "val_acc": 80.0, "seed": 0}]
    rows = seed_means(raw, "val_acc")
    assert rows == [{"task": "a", "arch": "x", "accuracy": 55.0, "source": None},
                    {"task": "a", "arch": "y", "accuracy": 70.0, "source": None},
                    {"task": "b", "arch": "x", "accuracy": 90.0, "source": None},
                    {"task": "b", "arch": "y", "accuracy": 80.0, "source": None}]
    z = task_labels(rows, "task_z")
    assert [r["accuracy"] for r in z] == pytest.approx([-1.0, 1.0, 1.0, -1.0])  # each task: mean 0, std 1
    assert task_labels(rows, "raw") == rows
    folds = fold_tasks([f"t{i}" for i in range(7)], 3, seed=0)
    assert sorted(t for f in folds for t in f) == [f"t{i}" for i in range(7)] and [len(f) for f in folds] == [3, 2, 2]
    with pytest.raises(ConfigError, match="folds=8 but the database has only 7 training tasks"):
        fold_tasks([f"t{i}" for i in range(7)], 8, seed=0)
    blind = unconditioned({"a": torch.randn(2, 3, F), "b": torch.randn(5, 3, F)})
    assert torch.equal(blind["a"], blind["b"]) and blind["a"].shape == (1, 3, F)  # no task can be told apart


def test_train_meta_predictor_scores_the_databases_held_out_tasks(tmp_path):
    """Evaluation rows (held_out: true) are never trained on, and are scored by the final networks."""
    import json

    from nag.experiments import run_experiment
    from nag.io import read_jsonl
    from nag.meta.database import ASSETS
    from nag.run import compose_config

    rows = read_jsonl(ASSETS / "meta_db" / "diverse_nb201.jsonl")
    train = [t for t in dict.fromkeys(r["task"] for r in rows if not r.get("held_out"))][:3]
    held = [t for t in dict.fromkeys(r["task"] for r in rows if r.get("held_out"))][:1]
    keep = [r for t in train + held for r in [r for r in rows if r["task"] == t][:8]]
    db = tmp_path / "db.jsonl"
    db.write_text("".join(json.dumps(r) + "\n" for r in keep))
    cfg = compose_config(["experiment=train_meta_predictor", f"meta_db.path={db}", "meta_predictor.steps=3", "folds=0",
                          "n_per_class=2", "meta_predictor.net_config.task_encoder=kernel"])
    results = run_experiment(cfg, out_dir=tmp_path / "run")
    pairs = {(r["task"], r["arch"]) for r in keep if r["task"] in train}
    assert results["n_tasks"] == 3 and results["n_rows"] == len(pairs) < 24  # seeds of a pair averaged into one row
    assert {"eval_spearman", "eval_unconditioned_spearman", "eval_params_spearman"} <= set(results)
    assert results["kernel_tau"] > 0 and results["kernel_kappa"] >= 0  # what the kernel's fit chose
    table = (tmp_path / "run" / "heldout_tasks.csv").read_text().splitlines()
    assert table[0] == "task,meta,unconditioned,params,flops" and len(table) == 2 and held[0] in table[1]
    assert [r["fit"] for r in read_jsonl(tmp_path / "run" / "progress.jsonl")] == ["final", "final_unconditioned"]


def test_train_meta_predictor_refuses_a_database_that_mixes_networks_or_budgets(tmp_path):
    """Rows built with another macro network (or budget) rank archs differently: one file, one setting."""
    import json

    from nag.errors import ConfigError
    from nag.experiments import run_experiment
    from nag.io import read_jsonl
    from nag.meta.database import ASSETS
    from nag.run import compose_config

    rows = read_jsonl(ASSETS / "meta_db" / "diverse_nb201.jsonl")[:8]
    small = {"space": {"C": 8, "N": 1}, "train": {"max_steps": 40}}
    deep = {"space": {"C": 8, "N": 3}, "train": {"max_steps": 40}}
    db = tmp_path / "db.jsonl"
    db.write_text("".join(json.dumps({**r, "built_with": small if i < 4 else deep}) + "\n" for i, r in enumerate(rows)))
    cfg = compose_config(["experiment=train_meta_predictor", f"meta_db.path={db}", "folds=0"])
    with pytest.raises(ConfigError, match=r"mixes rows built with different settings: space\.N=1 \(other rows: 3\)"):
        run_experiment(cfg, out_dir=tmp_path / "run")


def test_a_meta_predictor_records_its_macro_network_and_runs_with_another_are_refused_or_warned(tmp_path):
    """train_meta_predictor refuses a space that differs from the database's; the meta-predictor
    records the database's settings, and transfer_nas warns when it trains another network."""
    import json

    from nag.experiments import run_experiment
    from nag.io import read_jsonl
    from nag.meta.database import ASSETS
    from nag.run import compose_config
    from tests.smoke import SMOKE

    rows = read_jsonl(ASSETS / "meta_db" / "diverse_nb201.jsonl")
    tasks = [t for t in dict.fromkeys(r["task"] for r in rows if not r.get("held_out"))][:3]
    db = tmp_path / "db.jsonl"
    db.write_text("".join(json.dumps(r) + "\n" for t in tasks for r in [r for r in rows if r["task"] == t][:8]))
    train = ["experiment=train_meta_predictor", f"meta_db.path={db}", "meta_predictor.steps=3", "folds=0", "n_per_class=2"]
    with pytest.raises(ConfigError, match=r"built with another macro network: space\.N=3 \(this run: 1\).*space\.N=3"):
        run_experiment(compose_config([*train, "space.N=1"]), out_dir=tmp_path / "refused")
    assert not (tmp_path / "refused" / "meta_predictor.pt").exists()

    saved = tmp_path / "meta.pt"
    run_experiment(compose_config([*train, f"save_to={saved}"]), out_dir=tmp_path / "meta")
    meta = MetaPredictor.load(saved)
    assert meta.built_with == rows[0]["built_with"] and meta.space_difference({"C": 8, "N": 3}) is None
    assert meta.space_difference({"C": 8, "N": 1}) == "space.N=3 (this run: 1)"

    transfer = ["experiment=transfer_nas", f"meta_predictor.path={saved}", *SMOKE["transfer_nas"]]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_experiment(compose_config(transfer), out_dir=tmp_path / "same")
        assert not [w for w in caught if "another macro network" in str(w.message)]
        run_experiment(compose_config([*transfer, "space.N=1"]), out_dir=tmp_path / "other")
    assert [w for w in caught if "another macro network than this run trains: space.N=3 (this run: 1)" in str(w.message)]
