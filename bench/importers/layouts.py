"""Where the MwT and NeMo authors' models keep their tensors, one layout per (source, model).

Facts read from the authors' public code (``qibinhang/MwT`` src/, ``XiaohanBi-Hub/NeMo`` src/):

- VGG16-BN (``models/vgg.py``, chenyaofo's CIFAR VGG): ``features`` is Conv2d, BatchNorm2d, ReLU per
  conv and MaxPool2d per 'M'; the classifier's Linears are ``classifier.0/.3/.6``. The masked form
  (MwT ``models/vgg_masked.py``, NeMo ``models/vgg_masked_contra.py``) keeps the first conv as is and
  makes every other conv one ``MaskConvBN`` (``.conv``, ``.bn``, ``.mask_generator.mask_generator``
  = Linear(no bias), ReLU, Linear) followed by a ReLU.
- ResNet18 (``models/resnet.py``): stem ``conv1``/``bn1``, blocks ``layer<l>.<b>`` with
  ``conv1``/``bn1``, ``conv2``/``bn2`` and ``downsample.0``/``downsample.1``; ``fc``. Masked
  (``models/resnet_masked.py``): the block convs and ``downsample.0`` are ``MaskConvBN``.
- SimCNN / ResCNN (MwT ``models_cnnsplitter/``, CNNSplitter's naming): convs ``conv_<i>``
  (ResCNN: ``conv_<i>.0``), no BatchNorm; Linears ``fc_13``, ``fc_14``, ``fc_15`` (ResCNN:
  ``classifier.2``). Masked: ``conv_0`` stays a plain conv without BN, the others are ``MaskConvBN``.
- ViT-S / DeiT-S (NeMo ``modular_trainer_Neur_contra.py``): Hugging Face
  ``ViTForImageClassification`` / ``DeiTForImageClassificationWithTeacher``; NeMo's
  ``replace_linear_vit`` turns the Linears of encoder layers 1..L-1 into ``NeuralMaskLinear``
  (same ``weight``/``bias``, generator at ``.mask_generator.mask_generator``: Linear, ReLU, Linear,
  both with bias). The MwT baselines on ViTs come from the NeMo code base, so they use this layout.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from bench.importers.keymap import ConvSource, KeyMap, cnn_map, vit_map

VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def masked(prefix: str) -> ConvSource:
    """The parts of an authors' ``MaskConvBN`` at ``prefix``."""
    return ConvSource(f"{prefix}.conv", f"{prefix}.bn", f"{prefix}.mask_generator.mask_generator")


def vgg16_convs(modular: bool) -> list[ConvSource]:
    """VGG16-BN's 13 convs: ``features.<i>`` (+ BN at ``<i+1>``), or MaskConvBN after the first."""
    convs: list[ConvSource] = []
    index = 0
    for item in VGG16_CFG:
        if item == "M":
            index += 1
        elif modular and convs:  # MaskConvBN, ReLU
            convs.append(masked(f"features.{index}"))
            index += 2
        else:  # Conv2d, BatchNorm2d, ReLU
            convs.append(ConvSource(f"features.{index}", f"features.{index + 1}"))
            index += 3
    return convs


def resnet18_convs(modular: bool) -> list[ConvSource]:
    """ResNet18's stem and, per block, conv1, conv2 and (first block of stages 2-4) the downsample conv."""
    convs = [ConvSource("conv1", "bn1")]
    for layer in range(1, 5):
        for block in range(2):
            prefix = f"layer{layer}.{block}"
            if modular:
                names = ["conv1", "conv2"] + (["downsample.0"] if layer > 1 and block == 0 else [])
                convs += [masked(f"{prefix}.{name}") for name in names]
                continue
            convs += [ConvSource(f"{prefix}.conv1", f"{prefix}.bn1"), ConvSource(f"{prefix}.conv2", f"{prefix}.bn2")]
            if layer > 1 and block == 0:
                convs.append(ConvSource(f"{prefix}.downsample.0", f"{prefix}.downsample.1"))
    return convs


def splitter_convs(count: int, suffix: str, modular: bool) -> list[ConvSource]:
    """CNNSplitter's ``conv_<i><suffix>``: plain convs, or a plain first conv and MaskConvBN after it."""
    return [masked(f"conv_{i}{suffix}") if modular and i > 0 else ConvSource(f"conv_{i}{suffix}")
            for i in range(count)]


@dataclass(frozen=True)
class CnnLayout:
    """An authors' CNN: its convolutions (standard or modular form) and classifier Linears, in order."""

    name: str
    files: str
    convs: Callable[[bool], list[ConvSource]]
    linears: tuple[str, ...]

    def key_map(self, zoo: nn.Module, modular: bool) -> KeyMap:
        """The key map of a standard (``modular`` False) or modular checkpoint onto ``zoo``."""
        return cnn_map(zoo, self.convs(modular), self.linears, f"the authors' {self.name}")


@dataclass(frozen=True)
class VitLayout:
    """An authors' Hugging Face ViT or DeiT: its base module name, classifier(s) and embedding tokens."""

    name: str
    files: str
    base: str
    heads: tuple[tuple[str, str], ...]
    tokens: tuple[tuple[str, str], ...]

    def key_map(self, zoo: nn.Module, modular: bool) -> KeyMap:
        """The key map onto ``zoo`` (masked or not, NeuralMaskLinear keeps the Linear's names)."""
        return vit_map(len(zoo.blocks), self.base, self.heads, self.tokens)


Layout = CnnLayout | VitLayout
VGG16 = CnnLayout("VGG16", "models/vgg.py, models/vgg_masked.py (NeMo: vgg_masked_contra.py)", vgg16_convs,
                  ("classifier.0", "classifier.3", "classifier.6"))
RESNET18 = CnnLayout("ResNet18", "models/resnet.py, models/resnet_masked.py", resnet18_convs, ("fc",))
SIMCNN = CnnLayout("SimCNN", "models_cnnsplitter/simcnn.py, simcnn_masked.py",
                   functools.partial(splitter_convs, 13, ""), ("fc_13", "fc_14", "fc_15"))
RESCNN = CnnLayout("ResCNN", "models_cnnsplitter/rescnn.py, rescnn_masked.py",
                   functools.partial(splitter_convs, 12, ".0"), ("classifier.2",))
VIT_S = VitLayout("ViT-S", "transformers ViTForImageClassification, utils/utils_mask_neural.py", "vit",
                  (("classifier", "head"),), (("cls_token", "cls_token"),))
DEIT_S = VitLayout("DeiT-S", "transformers DeiTForImageClassificationWithTeacher, utils/utils_mask_neural.py",
                   "deit", (("cls_classifier", "head"), ("distillation_classifier", "head_dist")),
                   (("cls_token", "cls_token"), ("distillation_token", "dist_token")))

LAYOUTS: dict[tuple[str, str], Layout] = {
    ("mwt", "vgg16"): VGG16, ("mwt", "resnet18"): RESNET18, ("mwt", "simcnn"): SIMCNN, ("mwt", "rescnn"): RESCNN,
    ("nemo", "vgg16"): VGG16, ("nemo", "resnet18"): RESNET18, ("nemo", "simcnn"): SIMCNN, ("nemo", "rescnn"): RESCNN,
    ("nemo", "vit_s"): VIT_S, ("nemo", "deit_s"): DEIT_S,
}
SOURCES = {"mwt": "qibinhang/MwT", "nemo": "XiaohanBi-Hub/NeMo"}
