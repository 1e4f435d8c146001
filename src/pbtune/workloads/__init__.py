"""Workloads: model + data + train/eval step, engine-agnostic (no Ray here).

Importing this package registers the built-in workloads.
"""

from __future__ import annotations

from pbtune.workloads.base import Workload
from pbtune.workloads.registry import create, get, list_workloads, register

# Built-in workloads register themselves on import.
from pbtune.workloads import digits  # noqa: F401  isort: skip
from pbtune.workloads.registry import register_lazy  # isort: skip

# The vision workloads import torchvision: registered by name, imported on first use.
for _name in ("resnet18-cifar10", "resnet50-cifar100", "mlp-fashionmnist"):
    register_lazy(_name, "pbtune.workloads.vision")
register_lazy("pbt-toy", "pbtune.workloads.toy")  # Jaderberg et al.'s toy problem

__all__ = ["Workload", "create", "get", "list_workloads", "register"]
