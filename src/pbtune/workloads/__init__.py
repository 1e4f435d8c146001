"""Workloads: model + data + train/eval step, engine-agnostic (no Ray here).

Importing this package registers the built-in workloads.
"""

from __future__ import annotations

from pbtune.workloads.base import Workload
from pbtune.workloads.registry import create, get, list_workloads, register, register_lazy

# Built-in workloads are registered by name and imported on first use, so a process pays only
# for what it runs: torch (about 1.6 s to import) for digits, torchvision too for the vision
# ones, numpy alone for the toy problem.
register_lazy("digits-cnn", "pbtune.workloads.digits")
for _name in ("resnet18-cifar10", "resnet50-cifar100", "mlp-fashionmnist"):
    register_lazy(_name, "pbtune.workloads.vision_presets")
register_lazy("pbt-toy", "pbtune.workloads.toy")
register_lazy("hf-qa", "pbtune.workloads.hf_qa")  # transformers extractive QA (SQuAD)
for _name in ("dcgan-digits", "dcgan-mnist"):  # DCGAN scored by the inception score
    register_lazy(_name, "pbtune.workloads.gan")  # Jaderberg et al.'s toy problem

__all__ = ["Workload", "create", "get", "list_workloads", "register"]
