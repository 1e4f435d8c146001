"""Contract-test options for ``pbt-toy``: its defaults (no data, microseconds per iteration)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any


def _toy_options(tmp_path: Path) -> dict[str, Any]:
    return {"steps_per_iteration": 2}


OPTIONS_FACTORIES: dict[str, Callable[[Path], dict[str, Any]]] = {"pbt-toy": _toy_options}
