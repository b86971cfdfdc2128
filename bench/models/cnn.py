"""The CNNs of the zoo (CIFAR-size inputs, 32x32x3), built from ``ConvUnit`` and ``Residual``.

Every CNN is ``features`` (units, pools, residual blocks) -> flatten -> ``classifier``, the one
shape that ``bench.extract`` knows how to shrink. ``width`` scales every channel count and the
hidden width of the classifier; ``bn=False`` gives the published no-BN SimCNN / ResCNN.
"""

from __future__ import annotations

import torch
from torch import nn

from bench.models.layers import ConvUnit, InvertedUnit, Residual
from bench.models.spec import check_width

VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
# MobileNetV2 for CIFAR (as in the widely used pytorch-cifar): (expansion, out channels, blocks, first stride);
# the second stage keeps stride 1 where the ImageNet network has 2, so a 32x32 input ends at 4x4
MOBILENETV2_LAYOUT = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                      (6, 320, 1, 1))
RESCNN_LAYOUT = (  # (out channels, max-pool after, residual pair starts here)
    (64, False), (128, True), "R", (256, True), (512, True), "R", (512, True), (512, True), "R",
)


def scaled(channels: int, width: float) -> int:
    """``channels`` times ``width``, rounded, at least 1 (ValueError for a width out of range)."""
    return max(1, round(channels * check_width(width)))


class CNN(nn.Module):
    """A zoo CNN: ``features`` -> flatten -> ``classifier``; ``family`` is 'cnn'.

    Without gradients (evaluation, CNNSplitter's search, latency) its convolutions compute in the
    channels-last layout: a width-0.25 SimCNN scored 144 images 1.8x faster that way on one CPU core.
    Training keeps the default layout: channels-last gradients of a strided 1x1 convolution with 8
    input channels and an odd batch crash oneDNN (torch 2.14, CPU).
    """

    family = "cnn"

    def __init__(self, features: nn.Sequential, classifier: nn.Sequential, num_classes: int) -> None:
        super().__init__()
        self.features = features
        self.classifier = classifier
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled():
            x = x.contiguous(memory_format=torch.channels_last)
        return self.classifier(torch.flatten(self.features(x), 1))


def _init_convs(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _plain_stack(layout: tuple, width: float, bn: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = 3
    for item in layout:
        if item == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            out = scaled(item, width)
            layers.append(ConvUnit(channels, out, bn=bn))
            channels = out
    return nn.Sequential(*layers)


def vgg16(num_classes: int, width: float = 1.0) -> CNN:
    """VGG16-BN, CIFAR variant: 13 convs with BN, 5 max-pools, classifier 512-512-n with dropout."""
    hidden = scaled(512, width)
    classifier = nn.Sequential(
        nn.Linear(scaled(512, width), hidden), nn.ReLU(), nn.Dropout(),
        nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(),
        nn.Linear(hidden, num_classes),
    )
    model = CNN(_plain_stack(VGG16_LAYOUT, width, bn=True), classifier, num_classes)
    _init_convs(model)  # the classifier keeps PyTorch's default init (N(0, 0.01) barely trains it)
    return model


def simcnn(num_classes: int, width: float = 1.0, bn: bool = True) -> CNN:
    """SimCNN (CNNSplitter): VGG16's 13 convs and 5 pools, classifier dropout-512-dropout-512-n."""
    hidden = scaled(512, width)
    classifier = nn.Sequential(
        nn.Dropout(), nn.Linear(scaled(512, width), hidden), nn.ReLU(),
        nn.Dropout(), nn.Linear(hidden, hidden), nn.ReLU(),
        nn.Linear(hidden, num_classes),
    )
    model = CNN(_plain_stack(VGG16_LAYOUT, width, bn=bn), classifier, num_classes)
    _init_convs(model)
    return model


def rescnn(num_classes: int, width: float = 1.0, bn: bool = True) -> CNN:
    """ResCNN (CNNSplitter): 12 convs, 5 max-pools, 3 residual pairs added after their ReLUs."""
    layers: list[nn.Module] = []
    channels = 3
    for item in RESCNN_LAYOUT:
        if item == "R":
            body = nn.Sequential(ConvUnit(channels, channels, bn=bn), ConvUnit(channels, channels, bn=bn))
            layers.append(Residual(body, shortcut=None, relu=False))
            continue
        out, pool = item
        out = scaled(out, width)
        layers.append(ConvUnit(channels, out, bn=bn))
        if pool:
            layers.append(nn.MaxPool2d(2))
        channels = out
    classifier = nn.Sequential(nn.Dropout(0.5 if bn else 0.4), nn.Linear(channels, num_classes))
    model = CNN(nn.Sequential(*layers), classifier, num_classes)
    _init_convs(model)
    return model


def _basic_block(cin: int, cout: int, stride: int) -> Residual:
    body = nn.Sequential(
        ConvUnit(cin, cout, stride=stride, bias=False),
        ConvUnit(cout, cout, bias=False, relu=False),
    )
    shortcut = None
    if stride != 1 or cin != cout:
        shortcut = ConvUnit(cin, cout, kernel_size=1, stride=stride, bias=False, relu=False)
    return Residual(body, shortcut, relu=True)


def resnet18(num_classes: int, width: float = 1.0) -> CNN:
    """ResNet18 with the CIFAR stem (3x3 conv, stride 1, no max-pool) and 1x1 downsample convs."""
    channels = scaled(64, width)
    layers: list[nn.Module] = [ConvUnit(3, channels, bias=False)]
    for stage, planes in enumerate((64, 128, 256, 512)):
        out = scaled(planes, width)
        for block in range(2):
            stride = 2 if stage > 0 and block == 0 else 1
            layers.append(_basic_block(channels, out, stride))
            channels = out
    layers.append(nn.AdaptiveAvgPool2d(1))
    model = CNN(nn.Sequential(*layers), nn.Sequential(nn.Linear(channels, num_classes)), num_classes)
    _init_convs(model)
    return model


def _inverted_block(cin: int, cout: int, expansion: int, stride: int) -> nn.Module:
    """Expansion (with its depthwise filter) -> linear 1x1 projection; at stride 1 a residual join with the
    input, through a 1x1 conv + BN shortcut when the width changes; at stride 2 no join."""
    body = nn.Sequential(InvertedUnit(cin, expansion * cin, stride),
                         ConvUnit(expansion * cin, cout, kernel_size=1, bias=False, relu=False))
    if stride != 1:
        return body
    shortcut = None if cin == cout else ConvUnit(cin, cout, kernel_size=1, bias=False, relu=False)
    return Residual(body, shortcut, relu=False)


def mobilenetv2(num_classes: int, width: float = 1.0) -> CNN:
    """MobileNetV2, CIFAR variant: 3x3 stem at stride 1, 17 inverted residual blocks (ReLU), 1x1 conv to
    1280 channels, global average pool, Linear."""
    channels = scaled(32, width)
    layers: list[nn.Module] = [ConvUnit(3, channels, bias=False)]
    for expansion, out, blocks, first_stride in MOBILENETV2_LAYOUT:
        out = scaled(out, width)
        for block in range(blocks):
            layers.append(_inverted_block(channels, out, expansion, first_stride if block == 0 else 1))
            channels = out
    head = scaled(1280, width)
    layers += [ConvUnit(channels, head, kernel_size=1, bias=False), nn.AdaptiveAvgPool2d(1)]
    model = CNN(nn.Sequential(*layers), nn.Sequential(nn.Linear(head, num_classes)), num_classes)
    _init_convs(model)
    return model
