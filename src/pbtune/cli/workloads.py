"""``pbtune workloads``: list the registered workloads."""

from __future__ import annotations

import argparse
from typing import Any

from pbtune.cli._common import add_command


def cmd_workloads(args: argparse.Namespace) -> int:
    """List the registered workloads with their metrics and hyperparameters."""
    from pbtune.workloads import get, list_workloads

    for name in list_workloads():
        cls = get(name)
        metrics = ", ".join(f"{m} ({mode})" for m, mode in cls.metrics.items())
        print(f"{name}: metrics {metrics}; hyperparameters {', '.join(cls.hyperparameters)}")
    return 0


def register(sub: Any) -> None:
    add_command(sub, "workloads", cmd_workloads)
