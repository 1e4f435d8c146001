"""Contract-test options for ``digits-cnn``: a narrow net, one epoch, one thread (seconds)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any


def _digits_options(tmp_path: Path) -> dict[str, Any]:
    # Data ships with scikit-learn, so tmp_path is unused.
    return {"width": 4, "epochs_per_iteration": 1, "threads": 1}


OPTIONS_FACTORIES: dict[str, Callable[[Path], dict[str, Any]]] = {"digits-cnn": _digits_options}
