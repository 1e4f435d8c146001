"""pbtune: Population-Based Training of PyTorch models on Ray.

The package is layered inside out: :mod:`pbtune.pbt` (pure policy) →
:mod:`pbtune.workloads` (model + data) → :mod:`pbtune.engines` (Ray) →
:mod:`pbtune.cluster` → :mod:`pbtune.results` / :mod:`pbtune.reporting` → :mod:`pbtune.cli`.
Only ``engines`` and ``cluster`` import Ray.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
