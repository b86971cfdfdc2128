"""A researcher's own data: the ``folder`` and ``npz`` datasets read real files written here, and keyed by what
they hold."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import bench.pipeline.datakeys
from bench import DatasetSpec, hookimpl
from bench.data.builtin import default_data_root, load_synthetic
from bench.data.files import load_folder, load_npz
from bench.data.prepare import channel_stats
from bench.errors import DataNotFound, UsageError
from bench.grid.resolve import Resolved
from bench.pipeline.datakeys import DataKeys
from bench.pipeline.progress import Bars
from bench.pipeline.runner import run_grid
from bench.pipeline.stages.train import TrainStage
from bench.pipeline.workspace import Workspace
from bench.plugins.manager import get_plugins
from bench.refs import Ref
from bench.testing import make_tiny_grid, use_plugin

CLASSES = ("cat", "dog", "owl")
COLOURS = ((200, 30, 30), (30, 200, 30), (30, 30, 200))


def class_images(label: int, count: int, seed: int) -> np.ndarray:
    """uint8 (count, 40, 36, 3): the class colour plus noise, so that a model can learn the classes."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(-25, 26, size=(count, 40, 36, 3))
    return np.clip(np.array(COLOURS[label]) + noise, 0, 255).astype(np.uint8)


def write_tree(root: Path, per_class: dict[str, int] | None = None) -> Path:
    """``root/train/<class>/*.png`` (12 each) and ``root/test/<class>/*.png`` (4 each), plus noise files."""
    for split, count in (("train", 12), ("test", 4)):
        for label, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i, pixels in enumerate(class_images(label, count, seed=label + 10 * (split == "test"))):
                Image.fromarray(pixels).save(folder / f"{i:02d}.png")
            (folder / "notes.txt").write_text("not an image")  # other extensions are ignored, like ImageFolder
    return root


def write_npz(path: Path, **changes: np.ndarray) -> Path:
    """An archive of the same three classes as ``write_tree``, uint8 NHWC; ``changes`` replace arrays."""
    x_train = np.concatenate([class_images(c, 12, seed=c) for c in range(3)])
    x_test = np.concatenate([class_images(c, 4, seed=c + 10) for c in range(3)])
    arrays = {"x_train": x_train, "y_train": np.repeat(np.arange(3), 12), "x_test": x_test,
              "y_test": np.repeat(np.arange(3), 4), "class_names": np.array(CLASSES)}
    arrays.update(changes)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def test_folder_reads_classes_resizes_and_normalises(tmp_path):
    root = write_tree(tmp_path / "pets")
    gray = Image.new("L", (50, 20), color=77)
    gray.save(root / "train" / "dog" / "gray.png")  # greyscale, other size: RGB 32x32 all the same
    data = load_folder(path=str(root), val_fraction=0.25)
    assert data.class_names == list(CLASSES) and data.num_classes == 3
    train = torch.cat([data.train.x, data.val.x])
    assert train.shape == (37, 3, 32, 32) and data.test.x.shape == (12, 3, 32, 32)
    assert data.test.y.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert len(data.val) == 9 and data.val.class_counts(3).tolist() == [3, 3, 3]
    assert (train == 77).all(dim=(1, 2, 3)).sum() == 1
    red = data.test.x[data.test.y == 0].float().mean(dim=(0, 2, 3))
    assert red[0] > 170 and red[1] < 60 and red[2] < 60
    mean, std = channel_stats(train)
    assert data.mean == pytest.approx(mean) and data.std == pytest.approx(std)
    assert data.augment == "none"
    assert load_folder(path=str(root), augment="crop_flip").augment == "crop_flip"


def test_npz_accepts_nhwc_nchw_greyscale_and_floats(tmp_path):
    reference = load_npz(path=str(write_npz(tmp_path / "a.npz")), val_fraction=0.25)
    assert reference.class_names == list(CLASSES)
    x_train = np.concatenate([class_images(c, 12, seed=c) for c in range(3)])[:, :32, :32]
    x_test = np.concatenate([class_images(c, 4, seed=c + 10) for c in range(3)])[:, :32, :32]
    nhwc = load_npz(path=str(write_npz(tmp_path / "b.npz", x_train=x_train, x_test=x_test)))
    nchw = load_npz(path=str(write_npz(tmp_path / "c.npz", x_train=x_train.transpose(0, 3, 1, 2),
                                       x_test=x_test.transpose(0, 3, 1, 2), class_names=None)))
    floats = load_npz(path=str(write_npz(tmp_path / "d.npz", x_train=x_train.astype(np.float32) / 255,
                                         x_test=x_test.astype(np.float64) / 255)))
    for other in (nchw, floats):
        assert torch.equal(other.train.x, nhwc.train.x) and torch.equal(other.test.x, nhwc.test.x)
    assert torch.equal(nhwc.test.x[0], torch.from_numpy(x_test[0]).permute(2, 0, 1))  # 32x32 uint8: as stored
    assert nchw.class_names == ["0", "1", "2"]
    grey = load_npz(path=str(write_npz(tmp_path / "e.npz", x_train=np.full((36, 28, 28), 90, np.uint8),
                                       x_test=np.full((12, 28, 28), 90, np.uint8))))
    assert grey.train.x.shape[1:] == (3, 32, 32) and (grey.train.x == 90).all()


@pytest.mark.parametrize("kind", ["folder", "npz"])
def test_a_tiny_grid_runs_on_the_researchers_data(tmp_path, kind):
    path = write_tree(tmp_path / "pets") if kind == "folder" else write_npz(tmp_path / "pets.npz")
    grid = make_tiny_grid(tmp_path / "runs", datasets=f"{kind}:path={path}", tasks=((0, 2),))
    records = run_grid(grid)
    assert [r["error"] for r in records] == [None]
    record = records[0]
    assert record["dataset"] == kind and record["dataset_args"]["path"] == str(path)
    assert record["tasks"][0]["classes"] == [0, 2] and 0 <= record["tasks"][0]["module_acc"] <= 1


def corrupt_image(root: Path) -> str:
    (root / "train" / "dog" / "05.png").write_bytes(b"\x89PNG not really")
    return f"folder: cannot read image {root / 'train' / 'dog' / '05.png'}"


def empty_class(root: Path) -> str:
    for path in (root / "test" / "owl").glob("*.png"):
        path.unlink()
    return f"folder: class 'owl' has no images in {root / 'test' / 'owl'}"


def extra_class(root: Path) -> str:
    (root / "test" / "cow").mkdir()
    Image.new("RGB", (32, 32)).save(root / "test" / "cow" / "0.png")
    return f"folder: train and test class sets differ in {root} (only in train/: none; only in test/: cow)"


def no_test(root: Path) -> str:
    for path in sorted((root / "test").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (root / "test").rmdir()
    return f"folder: {root} has no test/ folder (expected {root}/test/<class>/ with images)"


@pytest.mark.parametrize("damage", [corrupt_image, empty_class, extra_class, no_test])
def test_bad_folders_fail_in_one_line(tmp_path, damage):
    root = write_tree(tmp_path / "pets")
    expected = damage(root)
    with pytest.raises((UsageError, DataNotFound)) as err:
        load_folder(path=str(root))
    assert str(err.value).startswith(expected) and "\n" not in str(err.value)


def test_a_missing_folder_or_file_says_what_is_expected(tmp_path):
    with pytest.raises(DataNotFound, match=r"folder: .*absent is not a directory \(expected .*absent/train/<class>/"):
        load_folder(path=str(tmp_path / "absent"))
    with pytest.raises(DataNotFound, match=r"npz: .*absent.npz not found \(expected a numpy .npz file with x_train"):
        load_npz(path=str(tmp_path / "absent.npz"))
    with pytest.raises(UsageError, match=r"dataset folder needs path=\.\.\. \(e\.g\. --datasets folder:path="):
        load_folder()
    with pytest.raises(UsageError, match="augment=rotate is not one of none, crop, crop_flip"):
        load_npz(path=str(tmp_path), augment="rotate")


BAD_NPZ = [
    ({"y_test": None}, "npz: {path} lacks y_test (it holds: class_names, x_test, x_train, y_train)"),
    ({"y_train": np.zeros(35, np.int64)}, "npz: y_train has 35 labels for 36 images in x_train"),
    ({"x_test": np.zeros((12, 3, 32, 32), np.uint8)},
     "npz: x_train images are 3x40x36 but x_test images are 3x32x32 (both splits need one layout and size)"),
    ({"y_test": np.array([0, 1, 2, 3] * 3)}, "npz: y_test holds label 3, out of range 0..2 (classes from class_names)"),
    ({"y_train": np.repeat([0, 1, 3], 12), "class_names": None},
     "npz: class 2 has no training images (y_train must use every class 0..3)"),
    ({"y_test": np.repeat([0, 1], 6)}, "npz: train and test class sets differ (no test images of class 2)"),
    ({"x_train": np.full((36, 32, 32, 3), 1.5, np.float32)}, "npz: x_train holds floats outside [0, 1] (min 1.5"),
    ({"x_test": np.zeros((12, 32, 32, 3), np.int32)}, "npz: x_test has dtype int32; store uint8 (0..255) or floats"),
    ({"x_train": np.zeros((36, 32, 32, 5), np.uint8)}, "npz: x_train has shape (36, 32, 32, 5); expected (N,H,W,C)"),
    ({"y_train": np.repeat([0.0, 1.0, 2.0], 12)}, "npz: y_train must be integer class ids of shape (N,), got float64"),
]


@pytest.mark.parametrize(("changes", "message"), BAD_NPZ)
def test_bad_archives_fail_in_one_line(tmp_path, changes, message):
    path = write_npz(tmp_path / "bad.npz", **changes)
    with pytest.raises(UsageError) as err:
        load_npz(path=str(path))
    assert str(err.value).startswith(message.format(path=path)) and "\n" not in str(err.value)


def test_a_pickled_archive_is_refused(tmp_path):
    path = tmp_path / "pickled.npz"
    np.savez(path, x_train=np.array([{"a": 1}], dtype=object))
    with pytest.raises(UsageError, match=r"npz: cannot read .*pickled\.npz"):
        load_npz(path=str(path))


def test_bench_run_on_a_missing_folder_prints_one_line(tmp_path, monkeypatch, capsys):
    from bench.cli import main

    monkeypatch.setattr("sys.argv", ["bench", "run", "--datasets", f"folder:path={tmp_path / 'absent'}",
                                     "--models", "simcnn:width=0.125", "--methods", "standard", "--device", "cpu",
                                     "--out", str(tmp_path / "runs")])
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.startswith("error: folder: ") and "absent is not a directory" in err and err.count("\n") == 1


# ----------------------------------------------------------------------------- results follow the data's content


def stage_keys(out: Path, dataset: str) -> tuple[Workspace, Resolved]:
    """A fresh workspace (a new run) over ``out`` and the standard cell of the tiny model on ``dataset``."""
    grid = make_tiny_grid(out, datasets=dataset)
    ws = Workspace(grid, get_plugins(), torch.device("cpu"), Bars(quiet=True))
    return ws, ws.resolver.cell("standard", grid.models[0], ws.resolver.dataset(grid.datasets[0]), 0, grid.overrides)


@pytest.fixture
def checksums(monkeypatch) -> list[int]:
    """Counts the full checksums computed (one per data set whose fingerprint was not remembered)."""
    calls = []
    real = bench.pipeline.datakeys.checksum
    monkeypatch.setattr(bench.pipeline.datakeys, "checksum", lambda roots: calls.append(1) or real(roots))
    return calls


@pytest.mark.parametrize("kind", ["npz", "folder"])
def test_a_data_set_on_disk_is_keyed_by_its_content(kind, tmp_path, checksums, caplog):
    """Issue 22, defect 1: another content under the same path is another key (the model's folder stays: it names
    the settings); a touched file costs one checksum and keeps the key; the change is said once."""
    path = write_tree(tmp_path / "pets") if kind == "folder" else write_npz(tmp_path / "pets.npz")
    dataset, out = f"{kind}:path={path}", tmp_path / "runs"
    ws, r = stage_keys(out, dataset)
    first, folder = TrainStage(ws).key(r), TrainStage(ws).directory(r)
    assert ws.data_key(r) == ws.data_key(r) and len(checksums) == 1  # once per process
    assert TrainStage(stage_keys(out, dataset)[0]).key(r) == first and len(checksums) == 1  # remembered
    target = path / "test" / "dog" / "01.png" if kind == "folder" else path
    os.utime(target, ns=(1, 1))  # touched, not changed
    assert TrainStage(stage_keys(out, dataset)[0]).key(r) == first and len(checksums) == 2
    assert "changed" not in caplog.text
    if kind == "folder":
        Image.fromarray(class_images(1, 1, seed=99)[0]).save(target)
    else:
        write_npz(path, x_test=np.concatenate([class_images(c, 4, seed=c + 20) for c in range(3)]))
    ws, _ = stage_keys(out, dataset)
    assert TrainStage(ws).key(r) != first and TrainStage(ws).directory(r) == folder
    assert f"the data of {r.dataset} changed since this runs folder last used it" in caplog.text


def test_cifar_and_svhn_are_keyed_by_their_files_under_the_data_root(tmp_path, checksums):
    plugins = get_plugins()
    assert plugins.datasets.get("cifar10").content_key(tmp_path) == [tmp_path / "cifar-10-batches-py"]
    assert plugins.datasets.get("cifar20").content_key(None) == [default_data_root() / "cifar-100-python"]
    assert plugins.datasets.get("svhn").content_key(tmp_path) == [tmp_path / "train_32x32.mat",
                                                                  tmp_path / "test_32x32.mat"]
    batches = tmp_path / "cifar-10-batches-py"
    batches.mkdir()
    (batches / "data_batch_1").write_bytes(b"one")
    keys = DataKeys(tmp_path / "runs")
    first = keys.key(Ref("cifar10"), [batches], load=lambda: pytest.fail("the files are there"))
    (batches / "data_batch_1").write_bytes(b"two")
    assert DataKeys(tmp_path / "runs").key(Ref("cifar10"), [batches], load=lambda: None) != first


class VersionedData:
    """A plugin data set whose content key is a version string (a data set served by a database, say)."""

    version = "v1"

    @hookimpl
    def register_datasets(self, register):
        """Register 'versioned': the synthetic images, keyed by ``version``."""
        register(DatasetSpec("versioned", 4, "synthetic, versioned", functools.partial(load_synthetic, classes=4),
                             content_key=lambda root, **options: self.version))


def test_a_plugin_data_set_says_its_content_key(tmp_path):
    plugin = VersionedData()
    with use_plugin(plugin, "test-versioned"):
        ws, r = stage_keys(tmp_path / "runs", "versioned")
        first = TrainStage(ws).key(r)
        plugin.version = "v2"
        assert TrainStage(stage_keys(tmp_path / "runs", "versioned")[0]).key(r) != first
    ws, r = stage_keys(tmp_path / "runs", "synthetic")  # named by its options: its keys are what they were
    assert ws.data_key(r) is None and TrainStage(ws).key(r) == TrainStage(ws).settings_key(r)
