"""Renaming a foreign state dict into a zoo model's: prefix pairs, built from the two layouts.

A ``KeyMap`` is a list of (source prefix, zoo prefix) pairs; a source key maps through the longest
source prefix it starts with (``features.3.conv.weight`` via ``features.3.conv`` ->
``features.1.conv`` gives ``features.1.conv.weight``). ``cnn_map`` pairs the convolutions of a
layout with the zoo model's conv units in order, ``vit_map`` pairs a Hugging Face ViT / DeiT with
the zoo's ViT block by block.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from torch import nn

from bench.errors import UsageError
from bench.models.layers import ConvUnit, units

GENERATOR = (("0", "fc1"), ("2", "fc2"))  # the authors' nn.Sequential(Linear, ReLU, Linear) -> MaskGenerator


@dataclass(frozen=True)
class ConvSource:
    """Where one convolution of a foreign layout keeps its tensors (None: it has no such part)."""

    conv: str
    bn: str | None = None
    generator: str | None = None  # the prefix of the generator's Sequential (``....mask_generator.mask_generator``)


@dataclass
class KeyMap:
    """Source-prefix -> zoo-prefix pairs, and the zoo BatchNorms the source has none for."""

    pairs: list[tuple[str, str]] = field(default_factory=list)
    missing_bn: list[str] = field(default_factory=list)  # zoo BN prefixes to fill with an identity

    def add(self, source: str, zoo: str) -> None:
        """Map ``source`` (a module prefix or a full key) onto ``zoo``."""
        self.pairs.append((source, zoo))

    def add_generator(self, source: str | None, zoo_unit: str) -> None:
        """Map an authors' generator Sequential at ``source`` onto ``<zoo_unit>.generator``."""
        if source is not None:
            for theirs, ours in GENERATOR:
                self.add(f"{source}.{theirs}", f"{zoo_unit}.generator.{ours}")

    def rename(self, key: str) -> str | None:
        """The zoo key of source key ``key`` (None when no pair covers it)."""
        best = max((p for p in self.pairs if key == p[0] or key.startswith(p[0] + ".")), key=lambda p: len(p[0]),
                   default=None)
        return None if best is None else best[1] + key[len(best[0]):]


def conv_units(zoo: nn.Module) -> list[tuple[str, ConvUnit]]:
    """The zoo model's conv units, in module order."""
    return [(name, unit) for name, unit in units(zoo) if isinstance(unit, ConvUnit)]


def classifier_linears(zoo: nn.Module) -> list[str]:
    """The prefixes of the zoo CNN's classifier Linears, in order."""
    return [f"classifier.{i}" for i, layer in enumerate(zoo.classifier) if isinstance(layer, nn.Linear)]


def cnn_map(zoo: nn.Module, convs: Sequence[ConvSource], linears: Sequence[str], layout: str) -> KeyMap:
    """Pair ``convs`` with the zoo's conv units and ``linears`` with its classifier Linears, in order."""
    zoo_convs, zoo_linears = conv_units(zoo), classifier_linears(zoo)
    if len(zoo_convs) != len(convs) or len(zoo_linears) != len(linears):
        raise UsageError(f"{layout} has {len(convs)} convolutions and {len(linears)} classifier layers; the zoo "
                         f"model has {len(zoo_convs)} and {len(zoo_linears)}")
    keymap = KeyMap()
    for source, (name, unit) in zip(convs, zoo_convs, strict=True):
        keymap.add(source.conv, f"{name}.conv")
        if source.bn is not None:
            keymap.add(source.bn, f"{name}.bn")
        elif unit.bn is not None:
            keymap.missing_bn.append(f"{name}.bn")
        keymap.add_generator(source.generator, name)
    for source, zoo_linear in zip(linears, zoo_linears, strict=True):
        keymap.add(source, zoo_linear)
    return keymap


HF_BLOCK = (  # Hugging Face ViTLayer / DeiTLayer module -> zoo Block module
    ("layernorm_before", "norm1"), ("attention.attention.query", "attn.q"), ("attention.attention.key", "attn.k"),
    ("attention.attention.value", "attn.v"), ("attention.output.dense", "attn.out"), ("layernorm_after", "norm2"),
    ("intermediate.dense", "mlp.fc1"), ("output.dense", "mlp.fc2"),
)
MASKED_LINEARS = ("attn.q", "attn.k", "attn.v", "attn.out", "mlp.fc1", "mlp.fc2")


def vit_map(depth: int, base: str, heads: Iterable[tuple[str, str]], tokens: Iterable[tuple[str, str]]) -> KeyMap:
    """A Hugging Face ``ViTForImageClassification`` (``base`` 'vit') or DeiT (``base`` 'deit') -> the zoo ViT.

    ``heads`` pairs the classifier(s), ``tokens`` the embedding tokens; the authors' ``NeuralMaskLinear``
    keeps the Linear's own weight and bias names, its generator sits at ``<linear>.mask_generator``.
    """
    keymap = KeyMap()
    keymap.add(f"{base}.embeddings.patch_embeddings.projection", "patch_embed")
    keymap.add(f"{base}.embeddings.position_embeddings", "pos_embed")
    for theirs, ours in tokens:
        keymap.add(f"{base}.embeddings.{theirs}", ours)
    for i in range(depth):
        for theirs, ours in HF_BLOCK:
            source, zoo = f"{base}.encoder.layer.{i}.{theirs}", f"blocks.{i}.{ours}"
            keymap.add(source, zoo)
            if ours in MASKED_LINEARS:
                keymap.add_generator(f"{source}.mask_generator.mask_generator", zoo)
    keymap.add(f"{base}.layernorm", "norm")
    for theirs, ours in heads:
        keymap.add(theirs, ours)
    return keymap
