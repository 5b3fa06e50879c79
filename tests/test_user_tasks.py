"""Tasks from the user's own data, with no plugin: image_folder, torchvision, arrays; their errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nag.data import dataset_labels, get_task
from nag.errors import BadDataError, ConfigError, MissingDataError, UnknownNameError
from user_data import digits_28, write_mnist_raw, write_png_folder

REPO = Path(__file__).resolve().parents[1]
NB201_ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|skip_connect~0|nor_conv_1x1~1|avg_pool_3x3~2|"


@pytest.fixture(scope="module")
def png_root(tmp_path_factory) -> Path:
    return write_png_folder(tmp_path_factory.mktemp("pngs") / "digits_png", per_class=40)


# ----- image_folder --------------------------------------------------------------------------
def test_image_folder_reads_class_folders(png_root: Path) -> None:
    task = get_task("image_folder", root=str(png_root))
    assert task.num_classes == 10 and task.input_shape == (1, 28, 28)
    assert task.meta["class_names"] == [str(k) for k in range(10)] and task.meta["layout"] == "class folders"
    assert [len(task.train), len(task.val), len(task.test)] == [240, 80, 80]
    for split in (task.train, task.val, task.test):  # stratified
        assert torch.bincount(dataset_labels(split), minlength=10).tolist() == [len(split) // 10] * 10
    x = torch.stack([task.train[i][0] for i in range(len(task.train))])
    assert abs(x.mean().item()) < 1e-3 and abs(x.std().item() - 1) < 1e-2  # normalize=dataset
    # the image of file 0/0000.png, as stored and normalised
    raw = torch.from_numpy(np.asarray(Image.open(png_root / "0" / "0000.png"))).float() / 255
    mean, std = task.meta["mean"][0], task.meta["std"][0]
    assert any(torch.allclose(task.train[i][0][0], (raw - mean) / std, atol=1e-5) for i in range(24))
    # dataset-encoder sets and class subsets
    assert task.class_sets(5, seed=0).shape == (10, 5, 1, 28, 28)
    sub = task.subset([3, 7])
    assert sub.num_classes == 2 and len(sub.train) == 48 and sub.class_sets(4).shape == (2, 4, 1, 28, 28)
    assert get_task("image_folder", root=str(png_root), classes=[2, 5]).classes == (2, 5)


def test_image_folder_split_seed_and_options(png_root: Path) -> None:
    a = get_task("image_folder", root=str(png_root))
    b = get_task("image_folder", root=str(png_root), split_seed=1)
    assert not torch.equal(a.test.images, b.test.images)
    assert torch.equal(a.test.images, get_task("image_folder", root=str(png_root)).test.images)
    rgb = get_task("image_folder", root=str(png_root), channels=3, size=16, normalize="imagenet", split=[0.5, 0.25, 0.25])
    assert rgb.input_shape == (3, 16, 16) and len(rgb.train) == 200
    assert rgb.meta["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert rgb.name != a.name  # feature caches key on names
    aug = get_task("image_folder", root=str(png_root), augment=True)
    assert aug.train.augment and not aug.val.augment and not aug.test.augment
    with pytest.raises(ConfigError, match="normalize=imagenet needs 3-channel"):
        get_task("image_folder", root=str(png_root), normalize="imagenet")
    with pytest.raises(ConfigError, match="normalize must be one of"):
        get_task("image_folder", root=str(png_root), normalize="minmax")
    with pytest.raises(ConfigError, match="size must be an int"):
        get_task("image_folder", root=str(png_root), size=[1, 2, 3])


def test_image_folder_train_test_folders(tmp_path: Path) -> None:
    write_png_folder(tmp_path / "train", per_class=20, classes=range(3))
    write_png_folder(tmp_path / "test", per_class=5, classes=range(3))
    task = get_task("image_folder", root=str(tmp_path), val_size=0.25)
    assert task.meta["layout"] == "split folders"
    assert [len(task.train), len(task.val), len(task.test)] == [45, 15, 15]
    write_png_folder(tmp_path / "val", per_class=4, classes=range(3))
    task = get_task("image_folder", root=str(tmp_path))
    assert [len(task.train), len(task.val), len(task.test)] == [60, 12, 15]


def test_image_folder_rgb_and_sizes(tmp_path: Path) -> None:
    write_png_folder(tmp_path, per_class=10, classes=range(2), mode="RGB")
    task = get_task("image_folder", root=str(tmp_path), split=[0.6, 0.2, 0.2])
    assert task.input_shape == (3, 28, 28)
    grey = get_task("image_folder", root=str(tmp_path), channels=1)
    assert grey.input_shape == (1, 28, 28)
    Image.new("RGB", (40, 30)).save(tmp_path / "0" / "wide.png")
    with pytest.raises(BadDataError, match=r"different sizes \(.*task.size="):
        get_task("image_folder", root=str(tmp_path))
    resized = get_task("image_folder", root=str(tmp_path), size=20)
    assert resized.input_shape == (3, 20, 20)  # shorter side 20, centre crop: no distortion


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(MissingDataError, match=r"task.root='.*absent' does not exist"):
        get_task("image_folder", root=str(tmp_path / "absent"))
    with pytest.raises(ConfigError, match="task.root=DIR"):
        get_task("image_folder")
    (tmp_path / "flat").mkdir()
    Image.new("L", (8, 8)).save(tmp_path / "flat" / "a.png")
    with pytest.raises(MissingDataError, match=r"no class sub-folders .*<class>/<image>"):
        get_task("image_folder", root=str(tmp_path / "flat"))

    root = write_png_folder(tmp_path / "d", per_class=10, classes=range(3))
    (root / "empty").mkdir()
    (root / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(MissingDataError, match=r"class folder .*empty holds no image; expected files ending in .png"):
        get_task("image_folder", root=str(root))
    (root / "empty" / "notes.txt").unlink()
    (root / "empty").rmdir()

    (root / "few").mkdir()
    for name in ("x.png", "y.png"):
        Image.fromarray(np.zeros((28, 28), np.uint8)).save(root / "few" / name)
    with pytest.raises(BadDataError, match=r"class 'few' has 2 image\(s\), too few .*at least 5 images"):
        get_task("image_folder", root=str(root))
    for f in (root / "few").iterdir():
        f.unlink()
    (root / "few").rmdir()

    (root / "1" / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(BadDataError, match=r"cannot read image .*broken.png"):
        get_task("image_folder", root=str(root))
    (root / "1" / "broken.png").unlink()

    Image.new("RGB", (28, 28)).save(root / "2" / "colour.png")
    with pytest.raises(BadDataError, match=r"different channel counts \(1 in .*, 3 in .*colour.png\).*task.channels=1"):
        get_task("image_folder", root=str(root))
    assert get_task("image_folder", root=str(root), channels=1).input_shape == (1, 28, 28)


def test_image_folder_test_part_must_cover_every_class(tmp_path: Path) -> None:
    write_png_folder(tmp_path / "train", per_class=10, classes=range(3))
    write_png_folder(tmp_path / "test", per_class=5, classes=range(2))
    with pytest.raises(BadDataError, match=r"the test part has no image of class\(es\) \['2'\]"):
        get_task("image_folder", root=str(tmp_path))
    write_png_folder(tmp_path / "test", per_class=5, classes=range(4))
    with pytest.raises(BadDataError, match=r"class folders \['3'\] that .*train lacks"):
        get_task("image_folder", root=str(tmp_path))


# ----- torchvision ------------------------------------------------------------------------------
def test_torchvision_reads_mnist_from_disk(tmp_path: Path) -> None:
    write_mnist_raw(tmp_path, n_train=300, n_test=100)
    task = get_task("torchvision", dataset="MNIST", root=str(tmp_path))
    assert task.name == "mnist" and task.input_shape == (1, 28, 28) and task.num_classes == 10
    assert [len(task.train), len(task.val), len(task.test)] == [270, 30, 100]  # val_size=0.1 of train
    x, _ = digits_28()
    assert task.test.images.shape == (100, 1, 28, 28)
    assert any(torch.equal(task.test.images[0, 0], torch.from_numpy(img)) for img in x)  # real pixels
    assert task.class_sets(3).shape == (10, 3, 1, 28, 28) and task.subset([0, 1]).num_classes == 2
    write_mnist_raw(tmp_path, "FashionMNIST", n_train=200, n_test=50)
    fashion = get_task("torchvision", dataset="FashionMNIST", root=str(tmp_path), size=14, channels=3, val_size=40)
    assert fashion.input_shape == (3, 14, 14) and len(fashion.val) == 40 and fashion.meta["class_names"][0] == "T-shirt/top"


def test_torchvision_never_downloads_and_names_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(MissingDataError, match=r"no intact copy under .*task.download=true"):
        get_task("torchvision", dataset="KMNIST", root=str(tmp_path))
    assert not (tmp_path / "KMNIST").exists() or not any((tmp_path / "KMNIST").rglob("*ubyte*"))
    with pytest.raises(MissingDataError, match=r"task.root='.*nowhere' does not exist"):
        get_task("torchvision", dataset="MNIST", root=str(tmp_path / "nowhere"))
    with pytest.raises(UnknownNameError, match=r"unknown torchvision dataset 'Mnist'.*MNIST"):
        get_task("torchvision", dataset="Mnist", root=str(tmp_path))
    with pytest.raises(ConfigError, match="task.dataset="):
        get_task("torchvision", root=str(tmp_path))


class _SplitDataset:
    """A torchvision-style class with a ``split=`` argument and PIL items (no data array)."""

    splits = ("train", "test")

    def __init__(self, root: str, split: str = "train", download: bool = False) -> None:
        if split not in self.splits:
            raise ValueError(f"Unknown value '{split}' for argument split")
        rng = np.random.default_rng(0 if split == "train" else 1)
        self.items = [(Image.fromarray(rng.integers(0, 255, (12, 10, 3), dtype=np.uint8)), i % 3) for i in range(30)]
        self.classes = ["a", "b", "c"]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i]


def test_torchvision_split_argument_datasets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets as tvd

    fake = type("FakeSplits", (_SplitDataset, tvd.VisionDataset), {})
    monkeypatch.setattr(tvd, "FakeSplits", fake, raising=False)
    task = get_task("torchvision", dataset="FakeSplits", root=str(tmp_path), val_size=6)
    assert [len(task.train), len(task.val), len(task.test)] == [24, 6, 30]
    assert task.input_shape == (3, 12, 10) and task.meta["class_names"] == ["a", "b", "c"]
    assert get_task("torchvision", dataset="FakeSplits", root=str(tmp_path), size=[8, 8]).input_shape == (3, 8, 8)


def test_cifar_presets_are_the_torchvision_task(tmp_path: Path) -> None:
    from nag.data.tasks import TASKS

    with pytest.raises(MissingDataError, match=r"CIFAR10: no intact copy under .*task.download=true"):
        get_task("cifar10", root=str(tmp_path))
    assert "torchvision" in TASKS and "cifar10" in TASKS


# ----- arrays -------------------------------------------------------------------------------------
def test_arrays_task(tmp_path: Path) -> None:
    x, y = digits_28(per_class=20)
    np.savez(tmp_path / "pool.npz", x=x, y=y + 10)  # labels need not start at 0
    task = get_task("arrays", path=str(tmp_path / "pool.npz"))
    assert task.input_shape == (1, 28, 28) and task.num_classes == 10
    assert task.meta["labels"] == list(range(10, 20)) and len(task.train) == 120
    nhwc = (np.repeat(x[..., None], 3, axis=-1) / 255).astype(np.float32)
    labels = np.array([f"c{v}" for v in y])
    order = np.random.default_rng(0).permutation(len(y))
    tr, te = order[:150], order[150:]
    np.savez(tmp_path / "parts.npz", x_train=nhwc[tr], y_train=labels[tr], x_test=nhwc[te], y_test=labels[te])
    task = get_task("arrays", path=str(tmp_path / "parts.npz"), size=16, val_size=30)
    assert task.input_shape == (3, 16, 16) and [len(task.train), len(task.val), len(task.test)] == [120, 30, 50]
    assert task.meta["class_names"][:2] == ["c0", "c1"] and task.train.images.dtype == torch.float32
    assert task.class_sets(2).shape == (10, 2, 3, 16, 16)
    nchw = nhwc.transpose(0, 3, 1, 2)
    np.savez(tmp_path / "nchw.npz", x=nchw, y=y)
    assert get_task("arrays", path=str(tmp_path / "nchw.npz")).input_shape == (3, 28, 28)


def test_arrays_errors(tmp_path: Path) -> None:
    with pytest.raises(MissingDataError, match=r"task.path='.*none.npz' does not exist; expected an .npz"):
        get_task("arrays", path=str(tmp_path / "none.npz"))
    np.savez(tmp_path / "keys.npz", images=np.zeros((4, 8, 8), np.uint8))
    with pytest.raises(BadDataError, match=r"has keys \['images'\]; expected x and y"):
        get_task("arrays", path=str(tmp_path / "keys.npz"))
    np.savez(tmp_path / "ambiguous.npz", x=np.zeros((40, 3, 8, 3), np.uint8), y=np.arange(40) % 2)
    with pytest.raises(BadDataError, match="task.layout=nhwc or task.layout=nchw"):
        get_task("arrays", path=str(tmp_path / "ambiguous.npz"))
    np.savez(tmp_path / "range.npz", x=np.full((40, 8, 8), 7.0), y=np.arange(40) % 2)
    with pytest.raises(BadDataError, match=r"float images must lie in \[0, 1\]"):
        get_task("arrays", path=str(tmp_path / "range.npz"))
    np.savez(tmp_path / "count.npz", x=np.zeros((40, 8, 8), np.uint8), y=np.arange(39) % 2)
    with pytest.raises(BadDataError, match="x has 40 images but y has 39 labels"):
        get_task("arrays", path=str(tmp_path / "count.npz"))
    np.savez(tmp_path / "few.npz", x=np.zeros((41, 8, 8), np.uint8), y=np.r_[np.arange(40) % 2, [2]])
    with pytest.raises(BadDataError, match=r"class '2' has 1 image\(s\), too few"):
        get_task("arrays", path=str(tmp_path / "few.npz"))


# ----- through the command line and the experiments ------------------------------------------
def test_evaluate_on_an_image_folder(png_root: Path, tmp_path: Path) -> None:
    from nag.experiments import run_experiment
    from nag.run import compose_config

    cfg = compose_config(["experiment=evaluate", "task=image_folder", f"task.root={png_root}", f"arch={NB201_ARCH}",
                          "train.epochs=1", "train.max_steps=3", "space.C=4", "task.classes=[1,7]"])
    results = run_experiment(cfg, out_dir=tmp_path)
    assert results["arch"] == NB201_ARCH and 0 <= results["test_acc"] <= 100


@pytest.mark.slow
def test_evaluate_on_an_image_folder_from_the_command_line(png_root: Path, tmp_path: Path) -> None:
    env = {**{k: v for k, v in os.environ.items() if k != "NAG_TRACEBACK"}, "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-m", "nag.run", "experiment=evaluate", "task=image_folder", f"task.root={png_root}",
         f"arch={NB201_ARCH}", "train.epochs=1", "train.max_steps=3", "space.C=4", f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["arch"] == NB201_ARCH and 0 <= results["test_acc"] <= 100 and results["n_runs"] == 1


@pytest.mark.slow
def test_transfer_nas_on_an_image_folder(png_root: Path, tmp_path: Path) -> None:
    from nag.experiments import run_experiment
    from nag.run import compose_config

    from smoke import SMOKE

    cfg = compose_config(["experiment=transfer_nas", "task=image_folder", f"task.root={png_root}", *SMOKE["transfer_nas"]])
    results = run_experiment(cfg, out_dir=tmp_path)
    assert results["task"] == "digits_png" and results["n_trained"] >= 2
    assert results["encoder_weights"] in ("pretrained", "trained", "random")
    lines = (tmp_path / "archs.csv").read_text().splitlines()  # every trained arch: predicted vs measured
    assert lines[0] == "group,arch,predicted,val_acc,test_acc,wall_s" and len(lines) == 1 + results["n_trained"]
    assert (tmp_path / "predicted_vs_measured.png").read_bytes()[:4] == b"\x89PNG"
