"""Small re-implementations of the MwT and NeMo authors' models, for the importer tests.

Module names and forward passes follow the authors' public code (MwT ``src/models``,
``src/models_cnnsplitter``; NeMo ``src/models``, ``src/utils/utils_mask_neural.py`` and the
Hugging Face ViT / DeiT it builds on), so that ``state_dict()`` has their key layout and the
forward pass their arithmetic. ``width`` scales every channel count (the tests run small).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def scaled(channels: int, width: float) -> int:
    return max(1, round(channels * width))


class ConvGenerator(nn.Module):
    """MaskGenerator: average pool, Linear (no bias), ReLU, Linear, tanh, ReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        hidden = cout if cout < 128 else cout // 2
        self.mask_generator = nn.Sequential(nn.Linear(cin, hidden, bias=False), nn.ReLU(), nn.Linear(hidden, cout))
        nn.init.constant_(self.mask_generator[2].bias, 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(torch.tanh(self.mask_generator(x.mean(dim=(2, 3)))))


class MaskConvBN(nn.Module):
    """conv -> BN -> x the mask of the layer's input."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, bias: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=bias)
        self.bn = nn.BatchNorm2d(cout)
        self.mask_generator = ConvGenerator(cin, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x)) * self.mask_generator(x)[:, :, None, None]


def conv_bn(cin: int, cout: int, modular: bool, first: bool, kernel: int = 3, stride: int = 1,
            bias: bool = True) -> list[nn.Module]:
    """One conv of a VGG-like stack: [MaskConvBN] when masked, else [Conv2d, BatchNorm2d]."""
    if modular and not first:
        return [MaskConvBN(cin, cout, kernel, stride, bias)]
    return [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=bias), nn.BatchNorm2d(cout)]


class VGG16(nn.Module):
    """chenyaofo's CIFAR VGG16-BN (MwT models/vgg.py) and its masked form (models/vgg_masked.py)."""

    def __init__(self, num_classes: int, width: float, modular: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for item in VGG16_CFG:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            cout = scaled(item, width)
            layers += [*conv_bn(cin, cout, modular, first=cin == 3), nn.ReLU()]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Linear(cin, cin), nn.ReLU(), nn.Dropout(), nn.Linear(cin, cin), nn.ReLU(),
                                        nn.Dropout(), nn.Linear(cin, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class BasicBlock(nn.Module):
    """ResNet's basic block (models/resnet.py, models/resnet_masked.py)."""

    def __init__(self, cin: int, cout: int, stride: int, modular: bool) -> None:
        super().__init__()
        self.modular = modular
        if modular:
            self.conv1 = MaskConvBN(cin, cout, 3, stride, bias=False)
            self.conv2 = MaskConvBN(cout, cout, 3, 1, bias=False)
        else:
            self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
            self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(*conv_bn(cin, cout, modular, False, kernel=1, stride=stride, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.modular:
            out = self.conv2(torch.relu(self.conv1(x)))
        else:
            out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet18(nn.Module):
    """The CIFAR ResNet18 of both repositories: 3x3 stem, no max-pool, fc."""

    def __init__(self, num_classes: int, width: float, modular: bool) -> None:
        super().__init__()
        cin = scaled(64, width)
        self.conv1, self.bn1 = nn.Conv2d(3, cin, 3, 1, 1, bias=False), nn.BatchNorm2d(cin)
        for layer, planes in enumerate((64, 128, 256, 512), start=1):
            cout = scaled(planes, width)
            blocks = [BasicBlock(cin, cout, 2 if layer > 1 else 1, modular), BasicBlock(cout, cout, 1, modular)]
            setattr(self, f"layer{layer}", nn.Sequential(*blocks))
            cin = cout
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        for layer in range(1, 5):
            x = getattr(self, f"layer{layer}")(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def splitter_conv(cin: int, cout: int, modular: bool) -> nn.Module:
    """CNNSplitter's conv: a plain Conv2d, or (masked, after the first) a MaskConvBN."""
    return MaskConvBN(cin, cout) if modular and cin != 3 else nn.Conv2d(cin, cout, 3, padding=1)


class SimCNN(nn.Module):
    """CNNSplitter's SimCNN (MwT models_cnnsplitter/simcnn.py, simcnn_masked.py)."""

    POOL_AFTER = (1, 3, 6, 9, 12)

    def __init__(self, num_classes: int, width: float, modular: bool) -> None:
        super().__init__()
        channels = [3] + [scaled(c, width) for c in VGG16_CFG if c != "M"]
        for i in range(13):
            setattr(self, f"conv_{i}", splitter_conv(channels[i], channels[i + 1], modular))
        hidden = scaled(512, width)
        self.fc_13, self.fc_14 = nn.Linear(channels[-1], hidden), nn.Linear(hidden, hidden)
        self.fc_15 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(13):
            x = torch.relu(getattr(self, f"conv_{i}")(x))
            if i in self.POOL_AFTER:
                x = F.max_pool2d(x, 2)
        x = torch.relu(self.fc_14(torch.relu(self.fc_13(torch.flatten(x, 1)))))
        return self.fc_15(x)


class ResCNN(nn.Module):
    """CNNSplitter's ResCNN (models_cnnsplitter/rescnn.py, rescnn_masked.py): residual adds after 3, 7, 11."""

    CHANNELS = (3, 64, 128, 128, 128, 256, 512, 512, 512, 512, 512, 512, 512)
    POOL_AFTER = (1, 4, 5, 8, 9)

    def __init__(self, num_classes: int, width: float, modular: bool) -> None:
        super().__init__()
        c = [3] + [scaled(n, width) for n in self.CHANNELS[1:]]
        for i in range(12):
            setattr(self, f"conv_{i}", nn.Sequential(splitter_conv(c[i], c[i + 1], modular), nn.ReLU()))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(c[-1], num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = x
        for i in range(12):
            if i in (2, 6, 10):
                res = x
            x = getattr(self, f"conv_{i}")(x) + (res if i in (3, 7, 11) else 0)
            if i in self.POOL_AFTER:
                x = F.max_pool2d(x, 2)
        return self.classifier(x)


class NeuralMaskLinear(nn.Linear):
    """NeMo's masked Linear: the output times a mask from the token-averaged input (generator with biases)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(cin, cout)
        hidden = cout if cout < 3073 else cout // 2
        self.mask_generator = nn.Module()
        self.mask_generator.mask_generator = nn.Sequential(nn.Linear(cin, hidden), nn.ReLU(), nn.Linear(hidden, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = torch.relu(torch.tanh(self.mask_generator.mask_generator(x.mean(dim=1))))
        return super().forward(x) * mask[:, None, :]


def linear(cin: int, cout: int, masked: bool) -> nn.Linear:
    return NeuralMaskLinear(cin, cout) if masked else nn.Linear(cin, cout)


class HFLayer(nn.Module):
    """A Hugging Face ViTLayer / DeiTLayer (pre-norm, LayerNorm eps 1e-12, exact GELU)."""

    def __init__(self, dim: int, heads: int, mlp: int, masked: bool) -> None:
        super().__init__()
        self.heads = heads
        self.layernorm_before, self.layernorm_after = nn.LayerNorm(dim, eps=1e-12), nn.LayerNorm(dim, eps=1e-12)
        self.attention = nn.Module()
        self.attention.attention = nn.Module()
        for name in ("query", "key", "value"):
            setattr(self.attention.attention, name, linear(dim, dim, masked))
        self.attention.output = nn.Module()
        self.attention.output.dense = linear(dim, dim, masked)
        self.intermediate, self.output = nn.Module(), nn.Module()
        self.intermediate.dense, self.output.dense = linear(dim, mlp, masked), linear(mlp, dim, masked)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        h = self.layernorm_before(x)
        q, k, v = (getattr(self.attention.attention, name)(h).view(b, n, self.heads, -1).transpose(1, 2)
                   for name in ("query", "key", "value"))
        scores = torch.softmax(q @ k.transpose(-1, -2) / (d // self.heads) ** 0.5, dim=-1)
        x = x + self.attention.output.dense((scores @ v).transpose(1, 2).reshape(b, n, d))
        return x + self.output.dense(F.gelu(self.intermediate.dense(self.layernorm_after(x))))


class HFViT(nn.Module):
    """``ViTForImageClassification`` (or, ``distilled``, ``DeiTForImageClassificationWithTeacher``), patch 4,
    with NeMo's ``replace_linear_vit(model, replace_attention=True)`` applied when ``masked``."""

    def __init__(self, num_classes: int, dim: int, depth: int, heads: int, masked: bool, distilled: bool) -> None:
        super().__init__()
        self.distilled = distilled
        base = nn.Module()
        base.embeddings = nn.Module()
        base.embeddings.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        if distilled:
            base.embeddings.distillation_token = nn.Parameter(torch.randn(1, 1, dim))
        base.embeddings.position_embeddings = nn.Parameter(torch.randn(1, 64 + 1 + distilled, dim))
        base.embeddings.patch_embeddings = nn.Module()
        base.embeddings.patch_embeddings.projection = nn.Conv2d(3, dim, 4, 4)
        base.encoder = nn.Module()
        base.encoder.layer = nn.ModuleList(HFLayer(dim, heads, 4 * dim, masked and i > 0) for i in range(depth))
        base.layernorm = nn.LayerNorm(dim, eps=1e-12)
        setattr(self, "deit" if distilled else "vit", base)
        if distilled:
            self.cls_classifier, self.distillation_classifier = nn.Linear(dim, num_classes), nn.Linear(dim, num_classes)
        else:
            self.classifier = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = self.deit if self.distilled else self.vit
        e = base.embeddings
        x = e.patch_embeddings.projection(x).flatten(2).transpose(1, 2)
        tokens = [e.cls_token] + ([e.distillation_token] if self.distilled else [])
        x = torch.cat([t.expand(x.shape[0], -1, -1) for t in tokens] + [x], dim=1) + e.position_embeddings
        for layer in base.encoder.layer:
            x = layer(x)
        x = base.layernorm(x)
        if self.distilled:
            return (self.cls_classifier(x[:, 0]) + self.distillation_classifier(x[:, 1])) / 2
        return self.classifier(x[:, 0])
