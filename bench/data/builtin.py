"""The built-in datasets (digits, synthetic, CIFAR-10/100, SVHN, your folder or npz) and their plugin registration."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from bench.data.files import folder_files, load_folder, load_npz, npz_files
from bench.data.pickles import load_arrays
from bench.data.prepare import channel_stats, make_bundle, reject_options
from bench.data.tensors import DataBundle, TensorData, crop_windows, derive_seed, stratified_split
from bench.errors import DataNotFound, UsageError
from bench.hookspecs import hookimpl

DIGITS_TEST_FRACTION = 0.2
# Standard per-channel (mean, std) of the training images, on the [0, 1] scale.
CIFAR10_NORM = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
CIFAR100_NORM = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
SVHN_NORM = ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970))
SYNTHETIC_DEFAULTS = {"size": 2000, "classes": 10, "test_size": 500, "seed": 0}
SYNTHETIC_SHIFT = 4  # patterns are drawn 36x36; each sample is a random 32x32 window (+-2 pixels)
SYNTHETIC_CHUNK = 1024


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: how to load it, how many classes it has (None: known from the files only) and, for
    data a user can change on disk, what its content is (``content_key``)."""

    name: str
    num_classes: int | None
    description: str
    load: Callable[..., DataBundle]  # load(root: Path | None, download: bool, val_fraction: float, **kwargs)
    aliases: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)  # accepted options and their defaults (None: required)
    train_size: int | None = None  # training images, for planning a grid before the files are here
    # content_key(root, **options): what the data holds, for the store's keys: the files it is read from (modbench
    # hashes their sizes and times, and keeps their checksum beside that) or a string that changes with the data.
    # None: the name and options determine the data (generated, or shipped with a library).
    content_key: Callable[..., str | Sequence[Path]] | None = None

    def canonical_args(self, args: dict[str, Any]) -> dict[str, Any]:
        """``args`` checked against ``options``, with values equal to their default left out.

        ``synthetic:size=2000`` and ``synthetic`` name the same data, so they share one cache key.
        """
        unknown = sorted(set(args) - set(self.options))
        if unknown:
            takes = ", ".join(self.options) or "none"
            raise UsageError(f"dataset '{self.name}' takes no option {', '.join(unknown)} (it takes: {takes})")
        missing = [k for k, v in self.options.items() if v is None and k not in args]
        if missing:
            raise UsageError(f"dataset '{self.name}' needs option {', '.join(missing)} "
                             f"(e.g. {self.name}:{missing[0]}=...)")
        return {k: v for k, v in args.items() if v != self.options[k]}


def default_data_root() -> Path:
    """Where torchvision datasets live when no root is given: ``~/.cache/modbench/data``."""
    return Path("~/.cache/modbench/data").expanduser()


def _int_option(name: str, key: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise UsageError(f"option {key} of dataset {name} must be an integer, got {value!r}")
    try:
        number = int(value)
    except ValueError:
        raise UsageError(f"option {key} of dataset {name} must be an integer, got {value!r}") from None
    if number < minimum:
        raise UsageError(f"option {key} of dataset {name} must be at least {minimum}, got {number}")
    return number


def load_digits(
    root: Path | None = None, download: bool = False, val_fraction: float = 0.1, **options: Any
) -> DataBundle:
    """scikit-learn's 1,797 8x8 digits, upscaled to 32x32x3 uint8, with a fixed stratified 80/20 split.

    Offline: ``root`` and ``download`` are ignored. mean/std come from the training images.
    """
    reject_options("digits", options)
    from sklearn import datasets

    digits = datasets.load_digits()
    small = torch.from_numpy(digits.images).float().unsqueeze(1) / 16  # (N,1,8,8) in [0,1]
    large = F.interpolate(small, size=(32, 32), mode="bilinear", align_corners=False)
    x = (large * 255).round().clamp(0, 255).to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    full = TensorData(x, torch.from_numpy(digits.target).long())
    train, test = stratified_split(full, DIGITS_TEST_FRACTION, seed=0)
    mean, std = channel_stats(train.x)
    names = [str(c) for c in range(10)]
    return make_bundle("digits", names, train, test, val_fraction, mean, std, "none")


def _synthetic_split(patterns: torch.Tensor, size: int, seed: int, split: str) -> TensorData:
    """``size`` samples: a class pattern at a random +-2 pixel shift plus Gaussian noise, uint8."""
    classes = patterns.shape[0]
    label_gen = torch.Generator().manual_seed(derive_seed(seed, f"{split}-labels"))
    y = (torch.arange(size) % classes)[torch.randperm(size, generator=label_gen)]
    x = torch.empty(size, 3, 32, 32, dtype=torch.uint8)
    for chunk, start in enumerate(range(0, size, SYNTHETIC_CHUNK)):
        gen = torch.Generator().manual_seed(derive_seed(seed, f"{split}-{chunk}"))
        labels = y[start : start + SYNTHETIC_CHUNK]
        n = labels.shape[0]
        top, left = torch.randint(0, SYNTHETIC_SHIFT + 1, (2, n), generator=gen)
        signal = crop_windows(patterns[labels], top, left, 32)
        noise = torch.randn(n, 3, 32, 32, generator=gen)
        x[start : start + n] = (128 + 48 * signal + 32 * noise).round().clamp(0, 255).to(torch.uint8)
    return TensorData(x, y)


def load_synthetic(
    root: Path | None = None, download: bool = False, val_fraction: float = 0.1, **options: Any
) -> DataBundle:
    """Deterministic, learnable images for tests: a fixed low-frequency pattern per class plus noise.

    Options: ``size`` (training samples, 2000), ``classes`` (10), ``test_size`` (500), ``seed`` (0).
    """
    reject_options("synthetic", options, tuple(SYNTHETIC_DEFAULTS))
    values = {**SYNTHETIC_DEFAULTS, **options}
    classes = _int_option("synthetic", "classes", values["classes"], 2)
    size = _int_option("synthetic", "size", values["size"], classes)
    test_size = _int_option("synthetic", "test_size", values["test_size"], classes)
    seed = _int_option("synthetic", "seed", values["seed"], 0)

    gen = torch.Generator().manual_seed(derive_seed(seed, "patterns"))
    coarse = torch.randn(classes, 3, 4, 4, generator=gen)
    patterns = F.interpolate(coarse, size=(32 + SYNTHETIC_SHIFT,) * 2, mode="bilinear", align_corners=False)
    patterns = patterns / patterns.std(dim=(1, 2, 3), keepdim=True)  # unit contrast per class
    train = _synthetic_split(patterns, size, seed, "train")
    test = _synthetic_split(patterns, test_size, seed, "test")
    mean, std = channel_stats(train.x)
    names = [f"pattern_{c}" for c in range(classes)]
    return make_bundle("synthetic", names, train, test, val_fraction, mean, std, "none")


def _open_torchvision(name: str, expected: str, download: bool, make: Callable[[], Any]) -> Any:
    """``make()`` a torchvision dataset; missing or corrupt files become one-line DataNotFound errors."""
    try:
        return make()
    except RuntimeError as err:
        if "not found or corrupted" not in str(err):
            raise
        if download:
            raise DataNotFound(f"{name}: download failed ({err}); put the files at {expected} by hand") from None
        raise DataNotFound(
            f"{name}: files not found or corrupted; torchvision expects {expected} "
            "(pass --data-root DIR that holds them, or pass --download)"
        ) from None
    except OSError as err:
        if not download:
            raise
        raise DataNotFound(f"{name}: download failed ({err}); put the files at {expected} by hand") from None


def _cifar_split(dataset: Any) -> TensorData:
    x = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()  # (N,32,32,3) -> (N,3,32,32)
    return TensorData(x, torch.tensor(dataset.targets, dtype=torch.int64))


def _load_cifar(name: str, hundred: bool, root: Path | None, download: bool) -> tuple[Any, Any]:
    from torchvision.datasets import CIFAR10, CIFAR100

    cls = CIFAR100 if hundred else CIFAR10
    root = Path(root) if root is not None else default_data_root()
    expected = str(root / cls.base_folder)
    train = _open_torchvision(name, expected, download, lambda: cls(root, train=True, download=download))
    test = _open_torchvision(name, expected, download, lambda: cls(root, train=False, download=False))
    return train, test


def _cifar_loader(name: str, hundred: bool, norm: tuple) -> Callable[..., DataBundle]:
    """The loader of CIFAR-10 or CIFAR-100 (fine labels) through torchvision."""

    def load(root: Path | None = None, download: bool = False, val_fraction: float = 0.1,
             **options: Any) -> DataBundle:
        reject_options(name, options)
        train, test = _load_cifar(name, hundred, root, download)
        return make_bundle(name, list(train.classes), _cifar_split(train), _cifar_split(test), val_fraction, *norm,
                           "crop_flip")

    folder = "cifar-100-python" if hundred else "cifar-10-batches-py"
    load.__doc__ = f"{name} through torchvision (``<root>/{folder}``)."
    return load


load_cifar10 = _cifar_loader("cifar10", False, CIFAR10_NORM)
load_cifar100 = _cifar_loader("cifar100", True, CIFAR100_NORM)


def _read_pickle(path: Path) -> dict[str, Any]:
    """A CIFAR-100 batch or meta file (Python 2 pickles), built by the restricted ``ArraysOnly`` unpickler."""
    return load_arrays(path, encoding="latin1")


def _coarse_split(dataset: Any) -> TensorData:
    """The split with CIFAR-100's superclass labels, read from the files torchvision has just verified."""
    folder = Path(dataset.root) / dataset.base_folder
    files = dataset.train_list if dataset.train else dataset.test_list
    labels = [label for file_name, _ in files for label in _read_pickle(folder / file_name)["coarse_labels"]]
    return TensorData(_cifar_split(dataset).x, torch.tensor(labels, dtype=torch.int64))


def load_cifar100_coarse(
    root: Path | None = None, download: bool = False, val_fraction: float = 0.1, **options: Any
) -> DataBundle:
    """CIFAR-100 with its 20 superclass labels (same files as ``cifar100``)."""
    reject_options("cifar100_coarse", options)
    train, test = _load_cifar("cifar100_coarse", True, root, download)
    meta = _read_pickle(Path(train.root) / train.base_folder / train.meta["filename"])
    names = list(meta["coarse_label_names"])
    train_data, test_data = _coarse_split(train), _coarse_split(test)
    return make_bundle("cifar100_coarse", names, train_data, test_data, val_fraction, *CIFAR100_NORM, "crop_flip")


def load_svhn(
    root: Path | None = None, download: bool = False, val_fraction: float = 0.1, **options: Any
) -> DataBundle:
    """SVHN's 'train' and 'test' splits through torchvision (``<root>/train_32x32.mat``, ``test_32x32.mat``)."""
    reject_options("svhn", options)
    from torchvision.datasets import SVHN

    root = Path(root) if root is not None else default_data_root()
    splits = []
    for split in ("train", "test"):
        expected = str(root / SVHN.split_list[split][1])
        make = functools.partial(SVHN, root, split=split, download=download)
        dataset = _open_torchvision("svhn", expected, download, make)
        splits.append(TensorData(torch.from_numpy(dataset.data).contiguous(), torch.from_numpy(dataset.labels)))
    names = [str(c) for c in range(10)]
    return make_bundle("svhn", names, splits[0], splits[1], val_fraction, *SVHN_NORM, "crop")


def _under_root(*names: str) -> Callable[..., list[Path]]:
    """A ``content_key``: the files or folders ``names`` under the data root."""

    def files(root: Path | None = None, **options: Any) -> list[Path]:
        base = Path(root).expanduser() if root is not None else default_data_root()
        return [base / name for name in names]

    return files


BUILTIN_DATASETS = (
    DatasetSpec("digits", 10, "scikit-learn's 8x8 handwritten digits upscaled to 32x32 (offline)", load_digits),
    DatasetSpec(
        "synthetic", 10, "deterministic learnable class patterns plus noise, for tests (options: "
        "size, classes, test_size, seed)", load_synthetic, options=dict(SYNTHETIC_DEFAULTS),
    ),
    DatasetSpec("cifar10", 10, "CIFAR-10 via torchvision", load_cifar10, train_size=50_000,
                content_key=_under_root("cifar-10-batches-py")),
    DatasetSpec("cifar100", 100, "CIFAR-100 with its 100 fine classes, via torchvision", load_cifar100,
                train_size=50_000, content_key=_under_root("cifar-100-python")),
    DatasetSpec(
        "cifar100_coarse", 20, "CIFAR-100 with its 20 superclasses, via torchvision", load_cifar100_coarse,
        aliases=("cifar20",), train_size=50_000, content_key=_under_root("cifar-100-python"),
    ),
    DatasetSpec("svhn", 10, "Street View House Numbers (train / test) via torchvision", load_svhn,
                train_size=73_257, content_key=_under_root("train_32x32.mat", "test_32x32.mat")),
    DatasetSpec("folder", None, "your images: ImageFolder train/ and test/ under path=DIR, resized to 32x32 "
                "(options: path, augment)", load_folder, options={"path": None, "augment": "none"},
                content_key=folder_files),
    DatasetSpec("npz", None, "your arrays: x_train, y_train, x_test, y_test of path=FILE.npz, resized to 32x32 "
                "(options: path, augment)", load_npz, options={"path": None, "augment": "none"},
                content_key=npz_files),
)


@hookimpl
def register_datasets(register: Callable[[DatasetSpec], None]) -> None:
    """Register the built-in datasets."""
    for spec in BUILTIN_DATASETS:
        register(spec)
