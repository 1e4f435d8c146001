"""Per-trial images at each trial's best iteration: ``plots/<name>_<trial>.png``.

Why: a generative model's score says little on its own; the guide this follows shows each
trial's generated samples. A workload may define ``artifacts()`` (name → image array, e.g. an
8×8 grid of a GAN's samples from fixed noise); the native engine hands them over after every
iteration and this callback keeps, per trial, the one of its best iteration so far, written
atomically (a crash never leaves half a PNG) with ``plots/artifacts.json`` saying which
iteration and score each image shows. On resume it starts from the bests in ``trials.csv``, so
an image is only replaced by a better iteration's.
"""

from __future__ import annotations

import io
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from pbtune.engines.base import Callback, Trial, is_better
from pbtune.store.checkpoints import atomic_write

INDEX = "artifacts.json"  # in plots/: trial → name → {"iteration", "metric", "file"}


class ArtifactWriter(Callback):
    """Writes the best iteration's artifacts of every trial into ``<run_dir>/plots/``."""

    def __init__(self, run_dir: Path, metric: str, mode: str) -> None:
        self.dir = Path(run_dir) / "plots"
        self.metric, self.mode = metric, mode
        self.best: dict[str, float] = _bests(Path(run_dir) / "trials.csv", metric, mode)
        self.index: dict[str, dict[str, Any]] = read_index(Path(run_dir))
        self._warned = False

    def on_artifacts(self, trial: Trial, row: dict[str, Any], artifacts: dict[str, Any]) -> None:
        value = float(row.get(self.metric, math.nan))
        if not is_better(value, self.best.get(trial.trial_id), self.mode):
            return
        self.best[trial.trial_id] = value
        self.dir.mkdir(parents=True, exist_ok=True)
        entry = self.index.setdefault(trial.trial_id, {})
        for name, image in artifacts.items():
            try:
                data = png_bytes(image)
            except ValueError as exc:  # the workload's mistake: say so once, keep training
                if not self._warned:
                    print(f"warning: artifact {name!r} of {trial.trial_id} not written: {exc}",
                          file=sys.stderr)
                    self._warned = True
                continue
            file = f"{name}_{trial.trial_id}.png"
            atomic_write(self.dir / file, data)
            entry[name] = {"iteration": int(row["iteration"]), "metric": value, "file": file}
        atomic_write(self.dir / INDEX, (json.dumps(self.index, indent=1) + "\n").encode())


def png_bytes(image: Any) -> bytes:
    """A PNG of ``image``: (H, W) grey or (H, W, 3|4) colour, uint8 or floats in [0, 1]
    (8-bit grey stays one channel: a 274×274 sample grid is ~30 KB, not ~90 KB as RGBA)."""
    from PIL import Image

    array = np.asarray(image)
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ValueError(f"expected an (H, W) or (H, W, 3) image, got shape {array.shape}")
    if array.dtype != np.uint8:
        unit = np.clip(np.nan_to_num(array.astype(np.float64)), 0.0, 1.0)
        array = np.round(unit * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="png")
    return buffer.getvalue()


def read_index(run_dir: Path) -> dict[str, dict[str, Any]]:
    """``plots/artifacts.json`` (empty when absent or damaged: the images are redrawn)."""
    try:
        index = json.loads((Path(run_dir) / "plots" / INDEX).read_text())
        return index if isinstance(index, dict) else {}
    except (OSError, ValueError):
        return {}


def _bests(path: Path, metric: str, mode: str) -> dict[str, float]:
    """Each trial's best ``metric`` in an existing ``trials.csv`` (resume), else {}."""
    if not path.is_file() or path.stat().st_size == 0:
        return {}
    import pandas as pd

    try:
        frame = pd.read_csv(path, usecols=["trial_id", metric], on_bad_lines="skip")
    except (ValueError, pd.errors.ParserError):
        return {}
    values = pd.to_numeric(frame[metric], errors="coerce")
    grouped = values.groupby(frame["trial_id"])
    best = grouped.max() if mode == "max" else grouped.min()
    return {str(k): float(v) for k, v in best.items() if math.isfinite(v)}
