"""TensorBoard scalars per trial (``pbtune run --tensorboard``), written with tensorboardX.

Why: users who already watch training in TensorBoard want the population there too — one run per
trial, so TensorBoard overlays them — without pbtune depending on TensorFlow. Each trial gets
``<run_dir>/tensorboard/<trial_id>/`` with every numeric metric, the node's CPU/GPU use, the
worker's RSS and every hyperparameter (as ``config/<name>``) at the row's iteration, so schedule
changes from exploits are visible next to the metric. ``tensorboard --logdir <run_dir>/tensorboard``
shows them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pbtune.engines.base import Callback, Trial
from pbtune.errors import UserError
from pbtune.results.writer import flatten

SKIP = {"trial_id", "iteration", "config", "worker", "node", "worker_shape", "precision",
        "timestamp"}


class TensorBoardLogger(Callback):
    """One tensorboardX ``SummaryWriter`` per trial, opened on the trial's first result."""

    def __init__(self, run_dir: str | Path) -> None:
        try:
            import tensorboardX  # noqa: F401
        except ImportError as exc:
            raise UserError("--tensorboard needs tensorboardX: pip install tensorboardX") from exc
        self.root = Path(run_dir) / "tensorboard"
        self.writers: dict[str, Any] = {}

    def _writer(self, trial_id: str) -> Any:
        writer = self.writers.get(trial_id)
        if writer is None:
            from tensorboardX import SummaryWriter

            writer = self.writers[trial_id] = SummaryWriter(str(self.root / trial_id))
        return writer

    def on_result(self, trial: Trial, row: dict[str, Any]) -> None:
        writer = self._writer(trial.trial_id)
        step = int(row["iteration"])
        scalars = {k: v for k, v in row.items() if k not in SKIP}
        scalars.update({f"config/{k}": v for k, v in flatten(row.get("config", {})).items()})
        for name, value in scalars.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue  # categorical hyperparameters are not scalars
            if math.isfinite(value):
                writer.add_scalar(name, float(value), step)
        writer.flush()

    def on_end(self, summary: dict[str, Any], best_state: dict[str, Any] | None) -> None:
        self.close()

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()
