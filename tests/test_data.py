"""Tests of the dataset layer: tensor datasets, splits, sub-tasks, the batch loader and built-in datasets."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pluggy
import pytest
import scipy.io
import torch
import torch.nn.functional as F
import torchvision.datasets.cifar
import torchvision.datasets.svhn

import bench.hookspecs
from bench.data import BatchLoader, DataBundle, DatasetSpec, TensorData, builtin, stratified_split
from bench.errors import DataNotFound, UsageError

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def make_data(labels: list[int], image_size: int = 32) -> TensorData:
    """Sample i is the constant image i (mod 256), so order and identity can be read back from x."""
    n = len(labels)
    x = (torch.arange(n) % 256).to(torch.uint8).view(n, 1, 1, 1).expand(n, 3, image_size, image_size)
    return TensorData(x.contiguous(), torch.tensor(labels, dtype=torch.int64))


def ids(data: TensorData) -> list[int]:
    return data.x[:, 0, 0, 0].tolist()


@pytest.fixture(scope="module")
def digits() -> DataBundle:
    return builtin.load_digits()


# ---------------------------------------------------------------- TensorData, splits, tasks


def test_tensor_data_rejects_bad_tensors():
    with pytest.raises(ValueError, match="uint8"):
        TensorData(torch.zeros(2, 3, 32, 32), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="int64"):
        TensorData(torch.zeros(2, 3, 32, 32, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64))


def test_take_subset_and_class_counts():
    data = make_data([0, 1, 2, 3, 2, 1, 0, 3])
    assert ids(data.take(torch.tensor([5, 1]))) == [5, 1]
    sub = data.subset([2, 0])
    assert ids(sub) == [0, 2, 4, 6]  # original order kept
    assert sub.y.tolist() == [1, 0, 0, 1]  # 2 -> 0, 0 -> 1
    assert data.class_counts(5).tolist() == [2, 2, 2, 2, 0]


def test_stratified_split_is_stratified_ordered_and_deterministic():
    data = make_data([0] * 10 + [1] * 2 + [2] * 1)
    rest, carved = stratified_split(data, 0.2, seed=3)
    assert carved.class_counts(3).tolist() == [2, 1, 0]
    assert rest.class_counts(3).tolist() == [8, 1, 1]
    assert sorted(ids(rest) + ids(carved)) == list(range(13))
    assert ids(rest) == sorted(ids(rest)) and ids(carved) == sorted(ids(carved))
    again = stratified_split(data, 0.2, seed=3)
    assert ids(again[1]) == ids(carved)
    picks = {tuple(ids(stratified_split(data, 0.2, seed=s)[1])) for s in range(6)}
    assert len(picks) > 1  # the seed matters


def test_stratified_split_fraction_bounds():
    data = make_data([0, 0, 1, 1])
    rest, carved = stratified_split(data, 0.0)
    assert len(carved) == 0 and len(rest) == 4
    with pytest.raises(UsageError, match=r"\[0, 1\)"):
        stratified_split(data, 1.0)


def toy_bundle() -> DataBundle:
    labels = [0, 1, 2, 3, 2, 1, 0, 3]
    splits = make_data(labels), make_data(labels[:4]), make_data(labels[::-1])
    return DataBundle("toy", 4, ["a", "b", "c", "d"], *splits, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "crop")


def test_task_restricts_and_relabels_every_split():
    task = toy_bundle().task([3, 1])
    assert task.num_classes == 2 and task.class_names == ["d", "b"]
    assert ids(task.train) == [1, 3, 5, 7] and task.train.y.tolist() == [1, 0, 1, 0]
    assert task.val.y.tolist() == [1, 0]
    assert ids(task.test) == [0, 2, 4, 6] and task.test.y.tolist() == [0, 1, 0, 1]
    assert (task.name, task.mean, task.augment) == ("toy", (0.5, 0.5, 0.5), "crop")


def test_one_vs_rest_is_the_target_labelled_0_then_as_many_others_drawn_with_the_seed():
    labels = [0, 1, 2, 3] * 10 + [2] * 6  # class 2: 16 samples, the others 10 each
    data = make_data(labels)
    binary = data.one_vs_rest(2, seed=5)
    own = [i for i, label in enumerate(labels) if label == 2]
    assert ids(binary)[:16] == own and binary.y.tolist() == [0] * 16 + [1] * 16
    drawn = ids(binary)[16:]
    assert len(set(drawn)) == 16 and all(labels[i] != 2 for i in drawn)
    assert ids(data.one_vs_rest(2, seed=5)) == ids(binary)  # same seed, same draw
    assert len({tuple(ids(data.one_vs_rest(2, seed=s))[16:]) for s in range(4)}) > 1  # the seed draws
    few = make_data([1, 1, 1, 0, 1])
    assert ids(few.one_vs_rest(1, seed=0)) == [0, 1, 2, 4, 3]  # fewer others than targets: every one


def test_bundle_one_vs_rest_applies_to_every_split():
    bundle = toy_bundle()
    binary = bundle.one_vs_rest(3, seed=0)
    assert binary.num_classes == 2 and binary.class_names == ["d", "not d"]
    for split in ("train", "val", "test"):
        part, whole = getattr(binary, split), getattr(bundle, split)
        assert ids(part) == ids(whole.one_vs_rest(3, seed=0))
    assert binary.train.y.tolist() == [0, 0, 1, 1] and binary.val.y.tolist() == [0, 1]
    with pytest.raises(UsageError, match="class id 4 is out of range"):
        bundle.one_vs_rest(4, seed=0)


@pytest.mark.parametrize(
    ("classes", "message"),
    [
        ([0, 12], "class id 12 is out of range for toy (classes 0..3)"),
        ([-1], "class id -1 is out of range for toy (classes 0..3)"),
        ([1, 2, 1], "class id 1 is given twice for toy"),
        ([], "a task needs at least one class of toy (classes 0..3)"),
        ([0.5], "class id 0.5 is not an integer"),
    ],
)
def test_task_rejects_bad_class_ids(classes, message):
    with pytest.raises(UsageError) as err:
        toy_bundle().task(classes)
    assert message in str(err.value)


# ---------------------------------------------------------------- BatchLoader


def loader(data: TensorData, batch_size: int = 4, **kwargs) -> BatchLoader:
    return BatchLoader(data, batch_size, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), **kwargs)


def labels_of(batches) -> list[int]:
    return [label for _, y in batches for label in y.tolist()]


def test_loader_batch_count_and_drop_last():
    data = make_data(list(range(10)))
    assert [len(y) for _, y in loader(data)] == [4, 4, 2] and len(loader(data)) == 3
    dropped = loader(data, shuffle=True, drop_last=True)
    batches = list(dropped)
    assert len(dropped) == 2 and [len(y) for _, y in batches] == [4, 4]
    assert len(set(labels_of(batches))) == 8  # no sample twice


def test_loader_shuffles_reproducibly_and_covers_every_sample():
    data = make_data(list(range(50)))  # label == sample id
    first = labels_of(loader(data, shuffle=True, seed=1))
    assert sorted(first) == list(range(50)) and first != list(range(50))

    epoch3 = labels_of(loader_at(data, 1, 3))
    assert labels_of(loader_at(data, 1, 3)) == epoch3  # same (seed, epoch): same order
    assert labels_of(loader_at(data, 1, 4)) != epoch3  # another epoch: another order
    assert labels_of(loader_at(data, 2, 3)) != epoch3  # another seed: another order


def loader_at(data: TensorData, seed: int, epoch: int) -> BatchLoader:
    result = loader(data, shuffle=True, seed=seed)
    result.set_epoch(epoch)
    return result


def test_loader_internal_epoch_counter_advances_per_full_pass():
    data = make_data(list(range(30)))
    running = loader(data, shuffle=True, seed=5)
    epoch0, epoch1 = labels_of(running), labels_of(running)
    assert epoch0 != epoch1
    assert labels_of(loader_at(data, 5, 0)) == epoch0
    assert labels_of(loader_at(data, 5, 1)) == epoch1


def test_loader_normalises_and_keeps_order_without_shuffle():
    data = TensorData(torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8), torch.arange(6))
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 0.125)
    batches = list(BatchLoader(data, 4, mean=mean, std=std))
    x = torch.cat([xb for xb, _ in batches])
    expected = (data.x.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert x.dtype == torch.float32 and batches[0][1].dtype == torch.int64
    torch.testing.assert_close(x, expected)
    assert torch.cat([y for _, y in batches]).tolist() == list(range(6))


def augmented(augment: str, n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """A hand-made asymmetric image repeated n times, its zero-padded copy, and the loader's output."""
    image = (torch.arange(3 * 32 * 32) % 251 + 1).to(torch.uint8).view(3, 32, 32)
    data = TensorData(image.expand(n, 3, 32, 32).contiguous(), torch.zeros(n, dtype=torch.int64))
    out = torch.cat([x for x, _ in loader(data, 16, shuffle=True, augment=augment, seed=7)])
    assert out.shape == (n, 3, 32, 32)
    return F.pad(image, (4, 4, 4, 4)), (out * 255).round().to(torch.uint8)


def window_offset(padded: torch.Tensor, sample: torch.Tensor) -> tuple[int, int] | None:
    for top in range(9):
        for left in range(9):
            if torch.equal(padded[:, top : top + 32, left : left + 32], sample):
                return top, left
    return None


def test_crop_gives_shifted_windows_of_the_padded_image():
    padded, out = augmented("crop")
    offsets = [window_offset(padded, sample) for sample in out]
    assert None not in offsets
    assert len(set(offsets)) > 10  # random offsets per sample
    assert any(offset != (4, 4) for offset in offsets)


def test_crop_flip_flips_about_half_of_the_samples():
    padded, out = augmented("crop_flip")
    flipped = 0
    for sample in out:
        if window_offset(padded, sample) is None:
            assert window_offset(padded, sample.flip(-1)) is not None
            flipped += 1
    assert 10 < flipped < 54


def test_augmentation_is_reproducible():
    data = TensorData(torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8), torch.arange(20))
    first = [x for x, _ in loader_aug(data)]
    second = [x for x, _ in loader_aug(data)]
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


def loader_aug(data: TensorData) -> BatchLoader:
    result = loader(data, 8, shuffle=True, augment="crop_flip", seed=11)
    result.set_epoch(2)
    return result


def test_loader_rejects_bad_arguments():
    data = make_data([0, 1])
    with pytest.raises(UsageError, match="augmentation 'rotate'"):
        loader(data, augment="rotate")
    with pytest.raises(UsageError, match="batch size"):
        loader(data, 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_loader_on_cuda_matches_cpu():
    data = TensorData(torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8), torch.arange(40))
    cpu = loader(data, 16, shuffle=True, augment="crop_flip", seed=3)
    gpu = loader(data, 16, shuffle=True, augment="crop_flip", seed=3, device="cuda")
    assert gpu.x.is_cuda
    for (xc, yc), (xg, yg) in zip(cpu, gpu, strict=True):
        assert xg.is_cuda and yg.is_cuda
        torch.testing.assert_close(xg.cpu(), xc)
        assert torch.equal(yg.cpu(), yc)


# ---------------------------------------------------------------- digits and synthetic


def test_digits_splits_shapes_and_labels(digits):
    assert (digits.name, digits.num_classes, digits.augment) == ("digits", 10, "none")
    assert digits.class_names == [str(c) for c in range(10)]
    assert len(digits.train) + len(digits.val) + len(digits.test) == 1797
    assert 355 <= len(digits.test) <= 365  # 20 % test
    for split in (digits.train, digits.val, digits.test):
        assert split.x.dtype == torch.uint8 and split.x.shape[1:] == (3, 32, 32)
        assert split.y.dtype == torch.int64 and set(split.y.tolist()) == set(range(10))
        assert torch.equal(split.x[:, 0], split.x[:, 2])  # grey replicated to 3 channels
    assert digits.train.x.max() > 200  # scaled to 0..255
    assert 0.2 < digits.mean[0] < 0.4 and 0.2 < digits.std[0] < 0.45


def test_digits_val_is_stratified(digits):
    full = digits.train.class_counts(10) + digits.val.class_counts(10)
    val = digits.val.class_counts(10)
    assert torch.all((val - 0.1 * full).abs() <= 1)


def test_digits_are_deterministic(digits):
    again = builtin.load_digits()
    for name in ("train", "val", "test"):
        assert torch.equal(getattr(again, name).x, getattr(digits, name).x)
        assert torch.equal(getattr(again, name).y, getattr(digits, name).y)
    assert again.mean == digits.mean


def test_digits_val_fraction_and_options():
    bundle = builtin.load_digits(val_fraction=0.25)
    assert 355 <= len(bundle.val) <= 362  # a quarter of the 1,438 training images
    with pytest.raises(UsageError, match="dataset digits"):
        builtin.load_digits(size=10)


def test_synthetic_is_deterministic_and_honours_options():
    a = builtin.load_synthetic(size=300, classes=3, test_size=60, seed=1)
    b = builtin.load_synthetic(size="300", classes=3, test_size=60, seed=1)
    assert a.num_classes == 3 and len(a.class_names) == 3
    assert len(a.train) + len(a.val) == 300 and len(a.test) == 60
    assert a.train.class_counts(3).sum() == len(a.train) and a.test.class_counts(3).tolist() == [20, 20, 20]
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    c = builtin.load_synthetic(size=300, classes=3, test_size=60, seed=2)
    assert not torch.equal(a.train.x, c.train.x)
    assert a.train.x.dtype == torch.uint8 and a.train.x.float().std() > 20  # not blank


def test_synthetic_rejects_bad_options():
    with pytest.raises(UsageError, match=r"synthetic.*size, classes, test_size, seed"):
        builtin.load_synthetic(bogus=1)
    with pytest.raises(UsageError, match="classes of dataset synthetic must be at least 2"):
        builtin.load_synthetic(classes=1)
    with pytest.raises(UsageError, match="must be an integer"):
        builtin.load_synthetic(size=2.5)


def test_synthetic_is_learnable_by_a_linear_model():
    data = builtin.load_synthetic(size=1000, test_size=300)
    torch.manual_seed(0)

    def features(split: TensorData) -> torch.Tensor:
        return F.avg_pool2d(split.x.float() / 255, 4).flatten(1)  # (N, 3*8*8)

    train_x, test_x = features(data.train), features(data.test)
    mean, std = train_x.mean(0), train_x.std(0)
    model = torch.nn.Linear(train_x.shape[1], data.num_classes)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(60):
        loss = F.cross_entropy(model((train_x - mean) / std), data.train.y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    accuracy = (model((test_x - mean) / std).argmax(1) == data.test.y).float().mean()
    assert accuracy > 0.9  # chance is 0.1


# ---------------------------------------------------------------- torchvision datasets (fake files)


@pytest.fixture
def skip_md5(monkeypatch):
    """Test only: accept any existing file (the fake files cannot match torchvision's MD5 sums).

    Both ``CIFAR10._check_integrity`` and ``CIFAR10._load_meta`` (and ``SVHN._check_integrity``) go
    through the module-level ``check_integrity``; patching that keeps "file missing" detection real.
    """
    def exists(fpath, md5=None):
        return os.path.isfile(fpath)

    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", exists)
    monkeypatch.setattr(torchvision.datasets.svhn, "check_integrity", exists)


def dump(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def fake_cifar10(root: Path) -> tuple[np.ndarray, list[int], np.ndarray, list[int]]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (100, 3072), dtype=np.uint8)
    labels = [i % 10 for i in range(100)]
    for batch in range(5):
        rows = slice(20 * batch, 20 * (batch + 1))
        dump(folder / f"data_batch_{batch + 1}", {"data": data[rows], "labels": labels[rows]})
    test_data, test_labels = rng.integers(0, 256, (30, 3072), dtype=np.uint8), [i % 10 for i in range(30)]
    dump(folder / "test_batch", {"data": test_data, "labels": test_labels})
    dump(folder / "batches.meta", {"label_names": CIFAR10_NAMES})
    return data, labels, test_data, test_labels


def as_images(rows: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rows).view(-1, 3, 32, 32)


def test_cifar10_round_trip(tmp_path, skip_md5):
    data, labels, test_data, test_labels = fake_cifar10(tmp_path)
    bundle = builtin.load_cifar10(tmp_path, val_fraction=0.0)
    assert (bundle.name, bundle.num_classes, bundle.class_names) == ("cifar10", 10, CIFAR10_NAMES)
    assert bundle.augment == "crop_flip" and bundle.mean == builtin.CIFAR10_NORM[0]
    assert torch.equal(bundle.train.x, as_images(data)) and bundle.train.y.tolist() == labels
    assert torch.equal(bundle.test.x, as_images(test_data)) and bundle.test.y.tolist() == test_labels

    carved = builtin.load_cifar10(tmp_path, val_fraction=0.2)
    assert carved.val.class_counts(10).tolist() == [2] * 10 and len(carved.train) == 80
    assert torch.equal(carved.test.x, bundle.test.x)


def fake_cifar100(root: Path) -> dict[str, dict]:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    splits = {}
    for name, n in (("train", 200), ("test", 100)):
        fine = rng.permutation(np.arange(n) % 100).tolist()
        images = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        entry = {"data": images, "fine_labels": fine, "coarse_labels": [label // 5 for label in fine]}
        dump(folder / name, entry)
        splits[name] = entry
    fine_names, coarse_names = [f"fine{i}" for i in range(100)], [f"coarse{i}" for i in range(20)]
    dump(folder / "meta", {"fine_label_names": fine_names, "coarse_label_names": coarse_names})
    return splits


def test_cifar100_fine_and_coarse_round_trip(tmp_path, skip_md5):
    files = fake_cifar100(tmp_path)
    fine = builtin.load_cifar100(tmp_path, val_fraction=0.0)
    coarse = builtin.load_cifar100_coarse(tmp_path, val_fraction=0.0)
    assert (fine.num_classes, coarse.num_classes) == (100, 20)
    assert fine.class_names[7] == "fine7" and coarse.class_names == [f"coarse{i}" for i in range(20)]
    for bundle in (fine, coarse):
        assert bundle.augment == "crop_flip" and bundle.std == builtin.CIFAR100_NORM[1]
        assert torch.equal(bundle.train.x, as_images(files["train"]["data"]))
        assert torch.equal(bundle.test.x, as_images(files["test"]["data"]))
    assert fine.train.y.tolist() == files["train"]["fine_labels"]
    assert coarse.train.y.tolist() == files["train"]["coarse_labels"]
    assert coarse.test.y.tolist() == files["test"]["coarse_labels"]

    carved = builtin.load_cifar100_coarse(tmp_path, val_fraction=0.1)
    assert carved.val.class_counts(20).tolist() == [1] * 20  # 10 per superclass -> 1 each


def fake_svhn(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(2)
    splits = {}
    for name, n in (("train", 40), ("test", 20)):
        images = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        labels = (np.arange(n) % 10 + 1).astype(np.uint8).reshape(n, 1)  # 10 means digit 0
        scipy.io.savemat(root / f"{name}_32x32.mat", {"X": images, "y": labels})
        splits[name] = images, labels
    return splits


def test_svhn_round_trip(tmp_path, skip_md5):
    files = fake_svhn(tmp_path)
    bundle = builtin.load_svhn(tmp_path, val_fraction=0.0)
    assert (bundle.name, bundle.num_classes, bundle.augment) == ("svhn", 10, "crop")
    for split, (images, labels) in ((bundle.train, files["train"]), (bundle.test, files["test"])):
        assert torch.equal(split.x, torch.from_numpy(images).permute(3, 2, 0, 1))
        assert split.y.tolist() == (labels.ravel() % 10).tolist()
    assert bundle.train.y.tolist()[:3] == [1, 2, 3] and bundle.train.y.tolist()[9] == 0


@pytest.mark.parametrize(
    ("load", "expected"),
    [
        (builtin.load_cifar10, "cifar-10-batches-py"),
        (builtin.load_cifar100, "cifar-100-python"),
        (builtin.load_cifar100_coarse, "cifar-100-python"),
        (builtin.load_svhn, "train_32x32.mat"),
    ],
)
def test_missing_files_raise_data_not_found(tmp_path, load, expected):
    with pytest.raises(DataNotFound) as err:
        load(tmp_path)
    message = str(err.value)
    assert "\n" not in message and str(tmp_path / expected) in message and "--download" in message


def test_missing_root_uses_the_default_data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(DataNotFound, match=r"cifar10.*/.cache/modbench/data/cifar-10-batches-py"):
        builtin.load_cifar10(None)


def test_fake_files_fail_the_real_integrity_check(tmp_path):
    fake_cifar10(tmp_path)
    with pytest.raises(DataNotFound, match="not found or corrupted"):
        builtin.load_cifar10(tmp_path)


def test_failed_download_says_where_to_put_the_files(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", offline)
    with pytest.raises(DataNotFound, match=r"cifar10: download failed .*cifar-10-batches-py by hand"):
        builtin.load_cifar10(tmp_path, download=True)


def test_torchvision_datasets_reject_options(tmp_path):
    with pytest.raises(UsageError, match=r"unknown option.*foo for dataset svhn"):
        builtin.load_svhn(tmp_path, foo=1)


# ---------------------------------------------------------------- plugin registration


def test_register_datasets_hook_registers_every_builtin(digits):
    manager = pluggy.PluginManager("modbench")
    manager.add_hookspecs(bench.hookspecs)
    manager.register(builtin)
    specs: list[DatasetSpec] = []
    manager.hook.register_datasets(register=specs.append)
    names = [spec.name for spec in specs]
    assert names == ["digits", "synthetic", "cifar10", "cifar100", "cifar100_coarse", "svhn", "folder", "npz"]
    by_name = {spec.name: spec for spec in specs}
    assert by_name["cifar100_coarse"].num_classes == 20 and by_name["cifar100_coarse"].aliases == ("cifar20",)
    assert by_name["digits"].num_classes == digits.num_classes
    assert by_name["synthetic"].load(None, False, 0.1, size=100, test_size=20).num_classes == 10
