"""The registered vision workloads: the original systems' three experiments.

Why apart from :mod:`pbtune.workloads.vision`: that module is the training machinery (data path,
augmentation, precision, state); these are the named configurations users run, each one class.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pbtune.workloads.registry import register
from pbtune.workloads.vision import VisionWorkload


@register()
class ResNet18CIFAR10(VisionWorkload):
    """torchvision ResNet-18 (CIFAR stem) on CIFAR-10: 45,000 train / 5,000 val / 10,000 test."""

    name: ClassVar[str] = "resnet18-cifar10"
    dataset: ClassVar[str] = "cifar10"
    arch: ClassVar[str] = "resnet18"


@register()
class ResNet50CIFAR100(VisionWorkload):
    """torchvision ResNet-50 (CIFAR stem) on CIFAR-100: 45,000 train / 5,000 val / 10,000 test."""

    name: ClassVar[str] = "resnet50-cifar100"
    dataset: ClassVar[str] = "cifar100"
    arch: ClassVar[str] = "resnet50"


@register()
class MLPFashionMNIST(VisionWorkload):
    """784-256-128-10 MLP on FashionMNIST: 55,000 train / 5,000 val / 10,000 test; no augmentation
    by default."""

    name: ClassVar[str] = "mlp-fashionmnist"
    dataset: ClassVar[str] = "fashion_mnist"
    arch: ClassVar[str] = "mlp"
    default_options: ClassVar[Mapping[str, Any]] = {
        **{k: v for k, v in VisionWorkload.default_options.items()
           if k not in ("cifar_stem", "channels_last")},  # meaningless for an MLP
        "width": 256,  # first hidden layer; the second has width // 2
        "augment": False,
    }
