"""In-memory image datasets (uint8 tensors), stratified splits and a device-resident batch loader."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import operator
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bench.errors import UsageError

AUGMENTATIONS = ("none", "crop", "crop_flip")
CROP_PADDING = 4


@dataclass(repr=False)
class TensorData:
    """Images as uint8 (N,3,32,32) and int64 labels (N,), on CPU."""

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if self.x.dtype != torch.uint8 or self.x.ndim != 4 or self.x.shape[1] != 3:
            raise ValueError(f"images must be uint8 (N,3,H,W), got {self.x.dtype} {tuple(self.x.shape)}")
        if self.y.dtype != torch.int64 or self.y.shape != self.x.shape[:1]:
            raise ValueError(
                f"labels must be int64 ({self.x.shape[0]},), got {self.y.dtype} {tuple(self.y.shape)}"
            )

    def __len__(self) -> int:
        return self.y.shape[0]

    def __repr__(self) -> str:
        return f"TensorData({len(self)} samples, x uint8 {tuple(self.x.shape)}, y int64)"

    def take(self, index: torch.Tensor) -> TensorData:
        """The samples at ``index`` (integer indices or a boolean mask), in that order."""
        return TensorData(self.x[index], self.y[index])

    def subset(self, classes: Sequence[int]) -> TensorData:
        """Samples whose label is in ``classes``, in their original order, relabelled ``classes[i] -> i``."""
        wanted = torch.as_tensor(list(classes), dtype=torch.int64)
        if wanted.unique().numel() != wanted.numel():
            raise UsageError(f"duplicate class ids in {list(classes)}")
        kept = self.take(torch.isin(self.y, wanted))
        sorted_ids, position = wanted.sort()
        new_labels = position[torch.searchsorted(sorted_ids, kept.y)]
        return TensorData(kept.x, new_labels)

    def one_vs_rest(self, target: int, seed: int) -> TensorData:
        """Class ``target``'s samples labelled 0 (in their order), then as many samples of the other classes
        (all of them when fewer) drawn at random with ``seed`` and labelled 1: SeaM's binary task
        (``extract_target_class(..., reorganize=True)`` in ``qibinhang/SeaM``)."""
        is_target = self.y == target
        own, others = is_target.nonzero().flatten(), (~is_target).nonzero().flatten()
        order = torch.randperm(len(others), generator=torch.Generator().manual_seed(seed))
        drawn = others[order[: len(own)]]
        labels = torch.cat([torch.zeros(len(own), dtype=torch.int64), torch.ones(len(drawn), dtype=torch.int64)])
        return TensorData(self.x[torch.cat([own, drawn])], labels)

    def class_counts(self, num_classes: int) -> torch.Tensor:
        """Number of samples per class, int64 (num_classes,)."""
        return torch.bincount(self.y, minlength=num_classes)


def stratified_split(data: TensorData, fraction: float, seed: int = 0) -> tuple[TensorData, TensorData]:
    """Split ``data`` into ``(rest, carved)``, where ``carved`` holds about ``fraction`` of every class.

    Deterministic in ``seed``. With ``fraction > 0`` a class of two or more samples gives at least one
    sample to each side; ``fraction == 0`` carves nothing. Both parts keep the original sample order.
    """
    if not 0.0 <= fraction < 1.0:
        raise UsageError(f"split fraction must be in [0, 1), got {fraction}")
    n = len(data)
    generator = torch.Generator().manual_seed(seed)
    shuffled = torch.randperm(n, generator=generator)
    # Group the shuffled indices by class (stable sort keeps the random order within each class).
    by_class = shuffled[torch.sort(data.y[shuffled], stable=True).indices]
    labels = data.y[by_class]
    counts = torch.bincount(labels)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(n) - starts[labels]  # position of each sample inside its class group

    carve = torch.round(counts.double() * fraction).long()
    if fraction > 0:
        carve = torch.where(counts >= 2, carve.clamp(1, None).minimum(counts - 1), torch.zeros_like(carve))
    carved = torch.zeros(n, dtype=torch.bool)
    carved[by_class[rank < carve[labels]]] = True
    return data.take(~carved), data.take(carved)


@dataclass
class DataBundle:
    """A dataset ready for a run: train / val (carved from train) / test splits plus normalisation."""

    name: str
    num_classes: int
    class_names: list[str]
    train: TensorData
    val: TensorData
    test: TensorData
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    augment: str  # "none" | "crop" | "crop_flip"

    def task(self, classes: Sequence[int]) -> DataBundle:
        """The sub-task on ``classes``: every split restricted to them and relabelled ``classes[i] -> i``."""
        ids = self._check_classes(classes)
        return dataclasses.replace(
            self,
            num_classes=len(ids),
            class_names=[self.class_names[c] for c in ids],
            train=self.train.subset(ids),
            val=self.val.subset(ids),
            test=self.test.subset(ids),
        )

    def one_vs_rest(self, target: int, seed: int) -> DataBundle:
        """The binary task "``target`` or not": in every split, the class's samples labelled 0 and as many of
        the others drawn with ``seed``, labelled 1 (``TensorData.one_vs_rest``)."""
        (c,) = self._check_classes([target])
        return dataclasses.replace(
            self,
            num_classes=2,
            class_names=[self.class_names[c], f"not {self.class_names[c]}"],
            train=self.train.one_vs_rest(c, seed),
            val=self.val.one_vs_rest(c, seed),
            test=self.test.one_vs_rest(c, seed),
        )

    def _check_classes(self, classes: Sequence[int]) -> list[int]:
        valid = f"classes 0..{self.num_classes - 1}"
        ids: list[int] = []
        for item in classes:
            try:
                c = operator.index(item)
            except TypeError:
                raise UsageError(f"class id {item!r} is not an integer ({self.name} has {valid})") from None
            if not 0 <= c < self.num_classes:
                raise UsageError(f"class id {c} is out of range for {self.name} ({valid})")
            if c in ids:
                raise UsageError(f"class id {c} is given twice for {self.name}")
            ids.append(c)
        if not ids:
            raise UsageError(f"a task needs at least one class of {self.name} ({valid})")
        return ids


def crop_windows(images: torch.Tensor, top: torch.Tensor, left: torch.Tensor, size: int) -> torch.Tensor:
    """Per-sample square windows, vectorised: ``out[i] = images[i, :, top[i]:top[i]+size, left[i]:left[i]+size]``.

    ``images`` (N,C,H,W), ``top``/``left`` int64 (N,) on the same device; returns (N,C,size,size).
    """
    n, c = images.shape[:2]
    device = images.device
    steps = torch.arange(size, device=device)
    rows = top[:, None] + steps  # (N, size)
    cols = left[:, None] + steps  # (N, size)
    return images[
        torch.arange(n, device=device)[:, None, None, None],
        torch.arange(c, device=device)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]


def derive_seed(*parts: object) -> int:
    """A 63-bit generator seed that depends only on ``parts`` (e.g. ``(seed, epoch)``), stable across runs."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class BatchLoader:
    """Normalised float batches on a device, reproducible from (seed, epoch).

    The uint8 images move to ``device`` once, at construction. Each epoch draws its sample order and
    augmentation parameters from a CPU ``torch.Generator`` seeded with ``(seed, epoch)``; augmentation
    runs on the device, vectorised over the batch:

    - ``"crop"``: a random 32x32 (input-size) window of the image zero-padded by 4 pixels on each side.
      Padding is 0 in uint8 space (black), so after normalisation it reads ``-mean/std`` — the same as
      torchvision's ``RandomCrop(32, padding=4)`` followed by ``Normalize``.
    - ``"crop_flip"``: the crop, then a horizontal flip of each sample with probability 0.5.

    Batches are ``(x, y)``: x float32 (B,3,H,W) equal to ``(x/255 - mean)/std``, y int64 (B,).
    ``set_epoch(e)`` selects the epoch; without it, each full pass advances an internal epoch counter.
    """

    def __init__(
        self,
        data: TensorData,
        batch_size: int,
        *,
        mean: Sequence[float],
        std: Sequence[float],
        device: torch.device | str = "cpu",
        shuffle: bool = False,
        augment: str = "none",
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        if batch_size < 1:
            raise UsageError(f"batch size must be at least 1, got {batch_size}")
        if augment not in AUGMENTATIONS:
            raise UsageError(f"unknown augmentation '{augment}' (choose from {', '.join(AUGMENTATIONS)})")
        if len(mean) != 3 or len(std) != 3:
            raise UsageError(f"mean and std need 3 values (one per channel), got {list(mean)} and {list(std)}")
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment
        self.seed = seed
        self.drop_last = drop_last
        self.x = data.x.to(self.device)
        self.y = data.y.to(self.device)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._epoch = 0

    def __len__(self) -> int:
        n = self.y.shape[0]
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass epoch ``epoch`` (its order and augmentation depend only on seed and epoch)."""
        self._epoch = epoch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = self._epoch
        n = self.y.shape[0]
        generator = torch.Generator().manual_seed(derive_seed(self.seed, epoch))
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        order = order.to(self.device)
        if self.augment != "none":
            # Random numbers come from the seeded CPU generator, one draw per position in the epoch.
            offsets = torch.randint(0, 2 * CROP_PADDING + 1, (n, 2), generator=generator).to(self.device)
            flips = (torch.rand(n, generator=generator) < 0.5).to(self.device)
        for batch in range(len(self)):
            positions = slice(batch * self.batch_size, (batch + 1) * self.batch_size)
            index = order[positions]
            images = self.x[index]
            if self.augment != "none":
                images = self._crop(images, offsets[positions])
            if self.augment == "crop_flip":
                images = torch.where(flips[positions, None, None, None], images.flip(3), images)
            yield (images.float() / 255 - self.mean) / self.std, self.y[index]
        self._epoch = epoch + 1

    def _crop(self, images: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        padded = F.pad(images, (CROP_PADDING,) * 4)  # zeros in uint8 space
        return crop_windows(padded, offsets[:, 0], offsets[:, 1], images.shape[-1])
