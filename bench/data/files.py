"""A researcher's own data: an image-folder tree (``folder``) or a NumPy archive (``npz``).

``folder:path=DIR`` reads torchvision's ImageFolder layout twice, ``DIR/train/<class>/...`` and
``DIR/test/<class>/...``: class ids follow the sorted class-folder names, image files are those
with ImageFolder's extensions anywhere below a class folder (hidden files skipped). Every image
is converted to RGB and resized to the zoo's 32x32 (bilinear, antialiased).

``npz:path=FILE`` reads an archive written by ``numpy.savez`` with ``x_train``, ``y_train``,
``x_test``, ``y_test`` and, optionally, ``class_names`` (K strings). Images are uint8 (0..255) or
floats in [0, 1], shaped (N,H,W) (greyscale), (N,H,W,C) or (N,C,H,W) with C = 1 or 3 (the last
axis is the channel axis when it has 1 or 3 entries); any size, resized to 32x32; greyscale is
repeated over RGB. Labels are integers 0..K-1, K = ``len(class_names)`` or the largest training
label + 1. The archive is read without pickle (``allow_pickle=False``).

Both: every class needs training and test images, mean/std come from the training images, the
validation split is carved from train, and ``augment=crop|crop_flip`` turns on augmentation
(default none). A path holds no comma (commas separate items of ``--datasets``).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bench.data.prepare import channel_stats, make_bundle, reject_options
from bench.data.tensors import AUGMENTATIONS, DataBundle, TensorData
from bench.errors import DataNotFound, UsageError

IMAGE_SIZE = 32
# torchvision's ImageFolder extensions (torchvision.datasets.folder.IMG_EXTENSIONS)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
OPTIONS = ("path", "augment")
RESIZE_CHUNK = 4096


def _options(name: str, options: dict[str, Any], example: str) -> tuple[Path, str]:
    """(the ``path`` option as a Path, the augmentation) of dataset ``name``."""
    reject_options(name, options, OPTIONS)
    if "path" not in options:
        raise UsageError(f"dataset {name} needs path=... (e.g. --datasets {name}:path={example})")
    augment = str(options.get("augment", "none"))
    if augment not in AUGMENTATIONS:
        raise UsageError(f"dataset {name}: augment={augment} is not one of {', '.join(AUGMENTATIONS)}")
    return Path(str(options["path"])).expanduser(), augment


def _finish(name: str, class_names: list[str], train: TensorData, test: TensorData, val_fraction: float,
            augment: str) -> DataBundle:
    mean, std = channel_stats(train.x)
    return make_bundle(name, class_names, train, test, val_fraction, mean, std, augment)


def load_folder(
    root: Path | None = None, download: bool = False, val_fraction: float = 0.1, **options: Any
) -> DataBundle:
    """Images in ``path/train/<class>/`` and ``path/test/<class>/`` (see the module docstring)."""
    base, augment = _options("folder", options, "~/data/pets")
    if not base.is_dir():
        raise DataNotFound(f"folder: {base} is not a directory (expected {base}/train/<class>/ and "
                           f"{base}/test/<class>/ with images)")
    classes = _class_folders(base, "train")
    test_classes = _class_folders(base, "test")
    if classes != test_classes:
        only_train = sorted(set(classes) - set(test_classes)) or ["none"]
        only_test = sorted(set(test_classes) - set(classes)) or ["none"]
        raise UsageError(f"folder: train and test class sets differ in {base} (only in train/: "
                         f"{', '.join(only_train)}; only in test/: {', '.join(only_test)})")
    train, test = _read_split(base / "train", classes), _read_split(base / "test", classes)
    return _finish("folder", classes, train, test, val_fraction, augment)


def folder_files(root: Path | None = None, **options: Any) -> list[Path]:
    """The ``content_key`` of ``folder``: its train/ and test/ folders."""
    base = Path(str(options["path"])).expanduser()
    return [base / "train", base / "test"]


def _class_folders(base: Path, split: str) -> list[str]:
    directory = base / split
    if not directory.is_dir():
        raise DataNotFound(f"folder: {base} has no {split}/ folder (expected {base}/{split}/<class>/ with images)")
    names = sorted(p.name for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not names:
        raise DataNotFound(f"folder: {directory} holds no class folders (expected {directory}/<class>/ with images)")
    return names


def _read_split(directory: Path, classes: list[str]) -> TensorData:
    images: list[np.ndarray] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        files = sorted(p for p in (directory / name).rglob("*")
                       if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file())
        if not files:
            raise UsageError(f"folder: class '{name}' has no images in {directory / name} "
                             f"(extensions read: {' '.join(IMAGE_EXTENSIONS)})")
        images.extend(_read_image(path) for path in files)
        labels.extend([label] * len(files))
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()  # (N,32,32,3) -> (N,3,32,32)
    return TensorData(x, torch.tensor(labels, dtype=torch.int64))


def _read_image(path: Path) -> np.ndarray:
    """One image file as uint8 (32, 32, 3)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
            return np.asarray(rgb, dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise UsageError(f"folder: cannot read image {path} ({err})") from None


def npz_files(root: Path | None = None, **options: Any) -> list[Path]:
    """The ``content_key`` of ``npz``: its file."""
    return [Path(str(options["path"])).expanduser()]


def load_npz(
    root: Path | None = None, download: bool = False, val_fraction: float = 0.1, **options: Any
) -> DataBundle:
    """Arrays x_train, y_train, x_test, y_test (class_names optional) of a ``.npz`` file (see the module docstring)."""
    path, augment = _options("npz", options, "~/data/mine.npz")
    arrays = _read_npz(path)
    x_train, x_test = _images("x_train", arrays["x_train"]), _images("x_test", arrays["x_test"])
    if x_train.shape[1:] != x_test.shape[1:]:
        raise UsageError(f"npz: x_train images are {_shape(x_train)} but x_test images are {_shape(x_test)} "
                         "(both splits need one layout and size)")
    y_train = _labels("y_train", arrays["y_train"], x_train.shape[0])
    y_test = _labels("y_test", arrays["y_test"], x_test.shape[0])
    names = _class_names(arrays, y_train)
    _check_classes(names, "class_names" if "class_names" in arrays else "y_train", y_train, y_test)
    train = TensorData(_to_uint8_32(x_train), torch.from_numpy(y_train))
    test = TensorData(_to_uint8_32(x_test), torch.from_numpy(y_test))
    return _finish("npz", names, train, test, val_fraction, augment)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise DataNotFound(f"npz: {path} not found (expected a numpy .npz file with {', '.join(NPZ_KEYS)})")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except ValueError:  # numpy's message for a file that is no archive, or holds objects, advises unpickling it:
        # never relayed
        raise UsageError(f"npz: cannot read {path} (not a numpy .npz archive of plain arrays, as numpy.savez "
                         "writes; pickled data is never loaded)") from None
    except (OSError, EOFError, zipfile.BadZipFile) as err:  # EOFError: a short file that is no npz
        raise UsageError(f"npz: cannot read {path} ({err})") from None
    missing = [key for key in NPZ_KEYS if key not in arrays]
    if missing:
        raise UsageError(f"npz: {path} lacks {', '.join(missing)} (it holds: {', '.join(sorted(arrays)) or 'nothing'})")
    return arrays


def _shape(x: torch.Tensor) -> str:
    return "x".join(str(d) for d in x.shape[1:])


def _images(key: str, array: np.ndarray) -> np.ndarray:
    """``array`` checked and laid out (N, C, H, W), C 1 or 3, uint8 or floats in [0, 1]."""
    if array.ndim == 3:
        array = array[:, None]  # greyscale (N,H,W) -> (N,1,H,W)
    elif array.ndim == 4 and array.shape[3] in (1, 3):
        array = array.transpose(0, 3, 1, 2)  # NHWC -> NCHW
    elif array.ndim != 4 or array.shape[1] not in (1, 3):
        raise UsageError(f"npz: {key} has shape {array.shape}; expected (N,H,W,C) or (N,C,H,W) with C 1 or 3, "
                         "or (N,H,W)")
    if array.shape[0] == 0:
        raise UsageError(f"npz: {key} holds no images")
    if array.dtype.kind == "f":
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise UsageError(f"npz: {key} holds floats outside [0, 1] (min {array.min():g}, max {array.max():g}); "
                             "scale them to [0, 1] or store uint8")
    elif array.dtype != np.uint8:
        raise UsageError(f"npz: {key} has dtype {array.dtype}; store uint8 (0..255) or floats in [0, 1]")
    return array


def _to_uint8_32(array: np.ndarray) -> torch.Tensor:
    """Checked (N, C, H, W) images -> uint8 (N, 3, 32, 32), resized (bilinear, antialiased) when needed."""
    out = torch.empty(array.shape[0], 3, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.uint8)
    for start in range(0, array.shape[0], RESIZE_CHUNK):
        chunk = torch.from_numpy(np.ascontiguousarray(array[start : start + RESIZE_CHUNK]))
        if chunk.dtype == torch.uint8 and chunk.shape[2:] == (IMAGE_SIZE, IMAGE_SIZE):
            out[start : start + RESIZE_CHUNK] = chunk  # a single channel broadcasts over RGB
            continue
        values = chunk.float() / 255 if chunk.dtype == torch.uint8 else chunk.float()
        if values.shape[2:] != (IMAGE_SIZE, IMAGE_SIZE):
            values = F.interpolate(values, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", antialias=True,
                                   align_corners=False)
        out[start : start + RESIZE_CHUNK] = (values * 255).round().clamp(0, 255).to(torch.uint8)
    return out


def _labels(key: str, array: np.ndarray, count: int) -> np.ndarray:
    """Integer labels as int64 (N,); (N, 1) is accepted too."""
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1 or array.dtype.kind not in "iu":
        raise UsageError(f"npz: {key} must be integer class ids of shape (N,), got {array.dtype} {array.shape}")
    if array.shape[0] != count:
        raise UsageError(f"npz: {key} has {array.shape[0]} labels for {count} images in x_{key[2:]}")
    return array.astype(np.int64)


def _class_names(arrays: dict[str, np.ndarray], y_train: np.ndarray) -> list[str]:
    if "class_names" not in arrays:
        return [str(c) for c in range(max(int(y_train.max()), 0) + 1)]
    names = arrays["class_names"]
    if names.ndim != 1 or names.dtype.kind not in "US":
        raise UsageError(f"npz: class_names must be a 1-d array of strings, got {names.dtype} {names.shape}")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names.tolist()]


def _check_classes(names: list[str], source: str, y_train: np.ndarray, y_test: np.ndarray) -> None:
    """Labels within 0..K-1 (K from ``source``), every class in train, train and test alike."""
    k = len(names)
    for key, y in (("y_train", y_train), ("y_test", y_test)):
        bad = y[(y < 0) | (y >= k)]
        if bad.size:
            raise UsageError(f"npz: {key} holds label {int(bad[0])}, out of range 0..{k - 1} (classes from {source})")
    train_set, test_set = set(np.unique(y_train).tolist()), set(np.unique(y_test).tolist())
    empty = sorted(set(range(k)) - train_set)
    if empty:
        raise UsageError(f"npz: class {', '.join(map(str, empty))} has no training images "
                         f"(y_train must use every class 0..{k - 1})")
    if test_set != train_set:
        missing = ", ".join(map(str, sorted(train_set - test_set)))
        raise UsageError(f"npz: train and test class sets differ (no test images of class {missing})")
