"""Model builders for the vision workloads: torchvision ResNets (CIFAR stem, any width) and an MLP.

Why: the presets must train the *standard* torchvision ResNet-18/50 (so results compare with the
literature and with the original Ray Tune experiments), while tests and benchmarks need the same
architecture at a tiny width to run in milliseconds on a shared CPU. torchvision's ``ResNet``
hard-codes a base width of 64 (``width_per_group`` only widens Bottleneck internals and is
rejected by BasicBlock), so a narrow net is built from torchvision's own blocks and its
``_make_layer`` with every stage scaled; at the default width 64 the model *is*
``torchvision.models.resnet18/50(weights=None)``, only the stem and classifier are replaced.

The CIFAR stem (3×3 stride-1 first conv, no max-pool) keeps 32×32 inputs at 32×32 into stage 1;
the ImageNet stem would shrink them to 8×8 before any residual block and cost ~10 points of
accuracy.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torchvision.models import resnet as tv_resnet

__all__ = [
    "build_mlp", "build_model", "build_resnet", "count_parameters", "list_architectures",
    "to_device",
]

#: architecture name → (block class, blocks per stage)
_RESNETS: dict[str, tuple[type[nn.Module], list[int]]] = {
    "resnet18": (tv_resnet.BasicBlock, [2, 2, 2, 2]),
    "resnet50": (tv_resnet.Bottleneck, [3, 4, 6, 3]),
}
_STANDARD_WIDTH = 64  # channels of the stem and stage 1 in torchvision's ResNets


def _init_like_torchvision(module: nn.Module) -> None:
    """The initialisation torchvision's ResNet applies in ``__init__`` (kaiming fan-out, BN 1/0)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


class _NarrowResNet(tv_resnet.ResNet):
    """torchvision's ResNet with the stem and stage widths scaled to ``width`` (stage i: width·2^i).

    ``forward`` and ``_make_layer`` are torchvision's; only ``__init__`` differs, because the
    upstream one fixes the stem at 64 channels.
    """

    def __init__(
        self, block: type[nn.Module], layers: list[int], num_classes: int, width: int
    ) -> None:
        nn.Module.__init__(self)
        self._norm_layer: Callable[..., nn.Module] = nn.BatchNorm2d
        self.inplanes = width
        self.dilation = 1
        self.groups = 1
        self.base_width = 64  # Bottleneck's inner width = planes (scaled through `planes` here)
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = self._make_layer(block, width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(block, width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(block, width * 8, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width * 8 * block.expansion, num_classes)  # type: ignore[attr-defined]
        _init_like_torchvision(self)


def build_resnet(
    arch: str, num_classes: int, *, width: int = _STANDARD_WIDTH, cifar_stem: bool = True
) -> nn.Module:
    """A torchvision ResNet (random init) for ``num_classes`` classes.

    Args:
        arch: ``"resnet18"`` or ``"resnet50"``.
        num_classes: size of the replaced classifier.
        width: channels of the stem and stage 1 (64 = the standard network; 8 for tests).
        cifar_stem: 3×3 stride-1 first conv and no max-pool (for 32×32 inputs).
    """
    if arch not in _RESNETS:
        raise ValueError(f"unknown architecture {arch!r}; valid: {list_architectures()}")
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    block, layers = _RESNETS[arch]
    if width == _STANDARD_WIDTH:
        model: tv_resnet.ResNet = getattr(tv_resnet, arch)(weights=None, num_classes=num_classes)
    else:
        model = _NarrowResNet(block, layers, num_classes, width)
    if cifar_stem:
        model.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
        model.maxpool = nn.Identity()  # type: ignore[assignment]
    return model


def build_mlp(
    in_features: int = 784, num_classes: int = 10, *, width: int = 256
) -> nn.Module:
    """``in → width → width/2 → classes`` with ReLU (784-256-128-10 at the default width)."""
    if width < 2:
        raise ValueError(f"width must be >= 2, got {width}")
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(in_features, width),
        nn.ReLU(inplace=True),
        nn.Linear(width, width // 2),
        nn.ReLU(inplace=True),
        nn.Linear(width // 2, num_classes),
    )


def list_architectures() -> list[str]:
    """Architecture names :func:`build_model` accepts."""
    return [*sorted(_RESNETS), "mlp"]


def build_model(
    arch: str,
    num_classes: int,
    *,
    in_shape: tuple[int, int, int],
    width: int | None = None,
    cifar_stem: bool = True,
) -> nn.Module:
    """Build ``arch`` for inputs of shape ``in_shape`` (C, H, W); ``width=None`` = standard."""
    if arch == "mlp":
        c, h, w = in_shape
        return build_mlp(c * h * w, num_classes, width=256 if width is None else int(width))
    return build_resnet(
        arch, num_classes,
        width=_STANDARD_WIDTH if width is None else int(width),
        cifar_stem=cifar_stem,
    )


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (for logs and tests)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def to_device(model: nn.Module, device: str | torch.device, channels_last: bool) -> nn.Module:
    """Move a model to ``device``, in channels-last layout for 4-D weights when asked (CUDA)."""
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return model
