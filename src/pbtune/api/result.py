"""A finished (or interrupted) run, read back from its directory: what ``pbtune.run`` returns.

Why a class over the run directory rather than over the engine's memory: the same object comes
from ``pbtune.run``, ``pbtune.resume`` and ``pbtune.load`` (a run from last week, or one another
process ran), so everything is read from the files the run wrote — ``trials.csv``,
``pbt_global.txt``, ``summary.json``, ``best_model.pt`` — the files the CLI and Ray Tune's tools
read too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pbtune.errors import UserError

_EXPLOIT_COLUMNS = ["target", "donor", "target_iteration", "donor_iteration", "old_config",
                    "new_config"]  # Ray Tune's pbt_global.txt row


class Result:
    """One run's results.

    Attributes:
        run_dir: the run directory.
        summary: ``summary.json`` (the engine's summary when it wrote none, e.g. interrupted
            before any result).
    """

    def __init__(self, run_dir: str | Path, summary: dict[str, Any] | None = None) -> None:
        self.run_dir = Path(run_dir)
        if not (self.run_dir / "config.yaml").is_file():
            raise UserError(f"{self.run_dir} is not a run directory (no config.yaml); pass the "
                            "directory a run printed (results/<experiment>/<run-id>)")
        path = self.run_dir / "summary.json"  # what load() reads too: one object either way
        self.summary = json.loads(path.read_text()) if path.is_file() else dict(summary or {})

    def __repr__(self) -> str:
        best = self.summary.get("best") or {}
        return (f"Result({str(self.run_dir)!r}, best {best.get('metric')} "
                f"({best.get('trial_id')} @ {best.get('iteration')}))")

    @property
    def metric(self) -> str:
        return self._metric(self.trials)

    def _metric(self, frame: Any) -> str:
        from pbtune.results.plots import run_metric

        return run_metric(self.run_dir, frame)

    @property
    def mode(self) -> str:
        import yaml

        cfg = yaml.safe_load((self.run_dir / "config.yaml").read_text()) or {}
        return str(cfg.get("mode") or "max")

    @property
    def trials(self) -> Any:
        """``trials.csv`` as a pandas DataFrame: one row per trial and iteration."""
        from pbtune.results.plots import read_trials

        return read_trials(self.run_dir)

    @property
    def exploits(self) -> Any:
        """``pbt_global.txt`` as a DataFrame, in Ray Tune's columns (one row per exploit)."""
        import pandas as pd

        from pbtune.results.plots import read_decisions

        rows = read_decisions(self.run_dir / "pbt_global.txt")
        return pd.DataFrame(rows, columns=_EXPLOIT_COLUMNS)

    def best(self, scope: str = "all") -> dict[str, Any]:
        """The best result: ``trial_id``, ``metric``, ``config``, ``iteration``.

        Args:
            scope: ``"all"``: the best value any trial reached at any iteration (what pbtune
                reports and checkpoints as ``best_model.pt``); ``"last"``: the best among each
                trial's final result (Ray Tune's default for ``get_best_result``).
        """
        if scope not in ("all", "last"):
            raise ValueError(f"scope={scope!r}; use 'all' or 'last'")
        frame = self.trials
        if frame.empty:
            raise UserError(f"{self.run_dir} has no results yet")
        metric, mode = self._metric(frame), self.mode  # trials.csv read once
        if scope == "last":
            frame = frame.sort_values("iteration").groupby("trial_id").tail(1)
        frame = frame.dropna(subset=[metric])
        if frame.empty:
            raise UserError(f"no finite {metric} in {self.run_dir}/trials.csv")
        row = frame.loc[frame[metric].idxmax() if mode == "max" else frame[metric].idxmin()]
        columns = [k for k in frame.columns if k.startswith("config/")]
        config = {k.removeprefix("config/"): v for k, v in zip(
            columns, _plain_values(self.run_dir / "trials.csv", columns, row), strict=True)}
        return {"trial_id": str(row["trial_id"]), "metric": float(row[metric]),
                "config": config, "iteration": int(row["iteration"])}

    def best_state(self) -> dict[str, Any]:
        """The best trial's full state at its best iteration (``best_model.pt``, CPU tensors)."""
        from pbtune.store.checkpoints import load_state

        path = self.run_dir / "best_model.pt"
        if not path.is_file():
            raise UserError(f"{path} does not exist (the run saved no best state yet)")
        return load_state(path)

    # -- figures (matplotlib; shown inline in Jupyter) ----------------------------------------
    def plot_metric(self) -> Any:
        """The metric per trial over iterations, exploits marked."""
        from pbtune.results.plots import plot_metric, read_decisions

        frame = self.trials
        return plot_metric(frame, self._metric(frame),
                           read_decisions(self.run_dir / "pbt_global.txt"))

    def plot_schedules(self) -> Any:
        """Each hyperparameter's schedule per trial."""
        from pbtune.results.plots import plot_hyperparameters

        return plot_hyperparameters(self.trials)

    def plot_lineage(self) -> Any:
        """Who copied whom, when (arrows donor to target)."""
        from pbtune.results.plots import plot_lineage, read_decisions

        return plot_lineage(self.trials, read_decisions(self.run_dir / "pbt_global.txt"))


def _plain_values(path: Path, columns: list[str], row: Any) -> list[Any]:
    """The row's values as plain Python: ``int`` where the column was written as integers.

    Why: pandas reads a column with one missing cell (a trial without that hyperparameter, a
    torn row) as float, so a batch size of 64 would come back as ``64.0`` (numpy's), which a
    user then passes to a DataLoader. The CSV's own text says which columns hold integers.
    """
    import pandas as pd

    raw = None  # the columns' text, read only if an integral float needs it (rare)
    out = []
    for column in columns:
        value = row[column]
        value = value.item() if hasattr(value, "item") else value
        if isinstance(value, float) and value.is_integer():
            if raw is None:
                raw = pd.read_csv(path, usecols=columns, dtype=str, on_bad_lines="skip")
            text = raw[column].dropna()
            if len(text) and text.str.fullmatch(r"-?\d+").all():
                value = int(value)
        out.append(value)
    return out
