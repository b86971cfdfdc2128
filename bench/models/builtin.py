"""The built-in model zoo, registered through the plugin API like any third-party model."""

from __future__ import annotations

from typing import Any

from bench.hookspecs import hookimpl
from bench.models.cnn import mobilenetv2, rescnn, resnet18, simcnn, vgg16
from bench.models.spec import ModelSpec
from bench.models.vit import deit_s, vit_s


def _bn_recipe(args: dict[str, Any]) -> str:
    return "cnn" if args.get("bn", True) else "cnn_nobn"


@hookimpl
def register_models(register: Any) -> None:
    """The seven zoo models (32x32 inputs)."""
    register(ModelSpec("simcnn", "cnn", simcnn, "SimCNN: 13 convs, FC 512-512-n (BN by default; bn=false: published)",
                       recipe=_bn_recipe))
    register(ModelSpec("rescnn", "cnn", rescnn,
                       "ResCNN: 12 convs, 3 residual adds (BN by default; bn=false: published)", recipe=_bn_recipe))
    register(ModelSpec("vgg16", "cnn", vgg16, "VGG16-BN, CIFAR variant, FC 512-512-n"))
    register(ModelSpec("resnet18", "cnn", resnet18, "ResNet18, CIFAR stem (3x3 conv, no max-pool)"))
    register(ModelSpec("mobilenetv2", "cnn", mobilenetv2,
                       "MobileNetV2, CIFAR variant: stride-1 stem, 17 inverted residual blocks, 1280-channel head"))
    register(ModelSpec("vit_s", "vit", vit_s, "ViT-s: patch 4, hidden 384, 12 blocks, 12 heads, MLP 1536",
                       aliases=("vit",)))
    register(ModelSpec("deit_s", "vit", deit_s, "DeiT-s: ViT-s with 6 heads and a distillation token",
                       aliases=("deit",), teacher="resnet18"))
