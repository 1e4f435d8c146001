"""Dispatchers: which idle worker starts which runnable trial (pure; no Ray).

Implementations register themselves in :data:`DISPATCHERS` and are imported lazily by name; see
:mod:`pbtune.engines.dispatch.base` for the contract.
"""

from __future__ import annotations

from pbtune.engines.dispatch.base import DISPATCHERS, Dispatcher, Runnable, create_dispatcher

__all__ = ["DISPATCHERS", "Dispatcher", "Runnable", "create_dispatcher"]
