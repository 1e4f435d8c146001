"""Engines: the native PBT engine on Ray Core and the Ray Tune adapter.

Ray is imported lazily so that ``pbtune.engines.base`` stays importable without it.
"""

from __future__ import annotations

from typing import Any

from pbtune.engines.base import Callback, Trial

ENGINES = ("native", "tune")


def create_engine(cfg: Any, callbacks: list[Callback]) -> Any:
    """Build the engine named by ``cfg.engine``."""
    if cfg.engine == "native":
        from pbtune.engines.native.engine import NativeEngine

        return NativeEngine(cfg, callbacks)
    if cfg.engine == "tune":
        from pbtune.engines.tune.engine import TuneEngine

        return TuneEngine(cfg, callbacks)
    from pbtune.errors import UserError

    raise UserError(f"engine {cfg.engine!r} is not available; valid: {', '.join(ENGINES)}")


__all__ = ["ENGINES", "Callback", "Trial", "create_engine"]
