"""pbtune: Population-Based Training of PyTorch models on Ray.

The package is layered inside out: :mod:`pbtune.pbt` (pure policy) →
:mod:`pbtune.workloads` (model + data) → :mod:`pbtune.engines` (Ray) →
:mod:`pbtune.cluster` → :mod:`pbtune.results` / :mod:`pbtune.reporting` → :mod:`pbtune.api`
→ :mod:`pbtune.cli`.
Only ``engines`` and ``cluster`` import Ray.
"""

from __future__ import annotations

from typing import Any

from pbtune.errors import ConfigError, UserError

__version__ = "0.1.0"

# Imported on first use (PEP 562): "import pbtune" stays light.
_API = {"run", "resume", "load", "experiment_config", "compare", "Result"}

__all__ = ["ConfigError", "Result", "TorchWorkload", "UserError", "__version__", "compare",
           "experiment_config", "load", "resume", "run"]


def __getattr__(name: str) -> Any:
    if name in _API:
        from pbtune import api

        return getattr(api, name)
    if name == "TorchWorkload":  # imports torch: only when asked for
        from pbtune.workloads.torch_workload import TorchWorkload

        return TorchWorkload
    raise AttributeError(f"module 'pbtune' has no attribute {name!r}")
