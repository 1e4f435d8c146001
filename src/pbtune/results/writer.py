"""The results writer: ``trials.csv``, Ray-Tune-format PBT logs, timeline, summary, best model.

Why: users compare runs with pandas and with tools written for Ray Tune; the PBT logs therefore use
Ray Tune's exact row format — a JSON list ``[target, donor, target_iteration, donor_iteration,
old_config, new_config]`` per line, where ``old_config`` is the donor's config — in
``pbt_global.txt`` (every perturbation) and ``pbt_policy_<trial>.txt`` (the trial's lineage: on
exploit the donor's file is copied, then the row appended), so Ray's
``PopulationBasedTrainingReplay`` and pbtune's replay read them alike. Rows are appended and flushed
as they arrive, so a crash loses at most the line being written.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path
from typing import Any

from pbtune.engines.base import Callback, Trial
from pbtune.store.checkpoints import LazyState, atomic_write, link_or_copy, write_state_file

META_COLUMNS = ("time_this_iter_s", "worker", "node", "worker_shape", "precision", "timestamp",
                "node_cpu_percent", "node_gpu_percent", "worker_rss_mb")


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config → ``{"a.b": value}``."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    return str(value)


def _clean(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


class ResultsWriter(Callback):
    """Writes one run's result files into ``run_dir`` as the engine reports.

    Args:
        run_dir: the run's directory (already holding ``config.yaml`` and ``meta.json``).
        save_best_model: write ``best_model.pt`` (the best trial's state at its best iteration).
        append: continue the files of an existing run (``pbtune resume``): rows are appended under
            the existing ``trials.csv`` header.
    """

    def __init__(self, run_dir: Path, *, save_best_model: bool = True,
                 append: bool = False) -> None:
        self.run_dir = Path(run_dir)
        self.save_best_model = save_best_model
        self.append = append
        self._csv_file: Any = None
        self._csv: csv.DictWriter | None = None
        timeline = self.run_dir / "timeline.csv"
        fresh = not (append and timeline.is_file())
        self._timeline = timeline.open("w" if fresh else "a", newline="")
        self._timeline_csv = csv.writer(self._timeline)
        if fresh:
            self._timeline_csv.writerow(
                ["trial_id", "worker", "node", "start_s", "end_s", "iteration"])
        self._nodes: dict[int, str] = {}
        self.summary: dict[str, Any] | None = None

    # -- trials.csv --------------------------------------------------------------------------------
    def _open_csv(self, row: dict[str, Any]) -> csv.DictWriter:
        skip = {"trial_id", "iteration", "config", *META_COLUMNS}
        metrics = sorted(k for k in row if k not in skip)
        params = [f"config/{k}" for k in flatten(row["config"])]
        fields = ["trial_id", "iteration", *metrics, *params, *META_COLUMNS]
        path = self.run_dir / "trials.csv"
        if self.append and path.is_file() and path.stat().st_size > 0:
            with path.open(newline="") as f:
                fields = next(csv.reader(f))
            self._csv_file = path.open("a", newline="")
            return csv.DictWriter(self._csv_file, fieldnames=fields, extrasaction="ignore")
        self._csv_file = path.open("w", newline="")
        writer = csv.DictWriter(self._csv_file, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        return writer

    def on_start(self, info: dict[str, Any]) -> None:
        self.on_workers(info["workers"])

    def on_workers(self, workers: list[dict[str, Any]]) -> None:
        """``workers.json`` lists every worker the run had, with ``alive`` after nodes left."""
        self._nodes = {w["index"]: w["ip"] for w in workers}
        atomic_write(self.run_dir / "workers.json",
                     (json.dumps(workers, indent=2, default=str) + "\n").encode())

    def on_result(self, trial: Trial, row: dict[str, Any]) -> None:
        if self._csv is None:
            self._csv = self._open_csv(row)
        flat = {k: _clean(v) for k, v in row.items() if k != "config"}
        flat.update({f"config/{k}": v for k, v in flatten(row["config"]).items()})
        self._csv.writerow(flat)
        self._csv_file.flush()

    def on_segment(self, trial: Trial, worker: int, start_s: float, end_s: float) -> None:
        self._timeline_csv.writerow([trial.trial_id, worker, self._nodes.get(worker, ""),
                                     round(start_s, 4), round(end_s, 4), trial.iteration])
        self._timeline.flush()

    # -- PBT logs ----------------------------------------------------------------------------------
    def on_exploit(self, decision: Any) -> None:
        row = [decision.target, decision.donor, decision.target_iteration,
               decision.donor_iteration, decision.old_config, decision.new_config]
        line = json.dumps(row, default=_json_default) + "\n"
        with (self.run_dir / "pbt_global.txt").open("a") as f:
            f.write(line)
        target = self.run_dir / f"pbt_policy_{decision.target}.txt"
        donor = self.run_dir / f"pbt_policy_{decision.donor}.txt"
        if donor.exists():
            shutil.copyfile(donor, target)
        else:
            target.unlink(missing_ok=True)  # the new lineage starts at the donor's
        with target.open("a") as f:
            f.write(line)

    # -- the end -----------------------------------------------------------------------------------
    def on_end(self, summary: dict[str, Any], best_state: dict[str, Any] | None) -> None:
        for handle in (self._csv_file, self._timeline):
            if handle is not None:
                handle.close()
        if not (self.run_dir / "pbt_global.txt").exists():
            (self.run_dir / "pbt_global.txt").touch()  # present even when nothing was perturbed
        if best_state is not None and self.save_best_model:
            target = self.run_dir / "best_model.pt"
            if isinstance(best_state, LazyState):  # a held state's file: linked, never loaded
                link_or_copy(best_state.path, target)
            else:  # torch.save for torch workloads, a pickle for torch-free ones
                write_state_file(target, best_state)
            summary = {**summary, "best_model": "best_model.pt"}
        self.summary = summary
        text = json.dumps(summary, indent=2, default=_json_default) + "\n"
        (self.run_dir / "summary.json").write_text(text)
