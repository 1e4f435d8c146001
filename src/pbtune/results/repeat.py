"""``Running_Results.txt``: one block per ``pbtune run --exp-times N``, as the original tool wrote.

Why: PBT is noisy; a claim such as "0.95 accuracy in 15 s" needs repetitions with different
seeds and their spread. ``--exp-times N`` runs the experiment N times (seeds ``seed``,
``seed + 1``, ...) and appends to ``<results root>/Running_Results.txt`` one row per repetition as
soon as it ends (a crash keeps the rows already written), then a mean ± std line.

Format (tab-separated, so ``column -t -s $'\\t'`` aligns it and scripts split on tabs)::

    # pbtune --exp-times 3: experiment=quick workload=digits-cnn metric=accuracy mode=max ...
    rep  seed  runtime_s  best_metric  cpu_s  gpu_s  peak_rss_mb  slots  stop_reason  run_dir
    1    0     19.204     0.953300     24.11  0.00   512.3        2      max_iterations  results/...
    2    1     ...
    mean±std  -  19.210±0.120  0.951000±0.002000  24.05±0.10  0.00±0.00  515.0±3.1  2.0±0.0  -  -

Columns: ``runtime_s`` the repetition's end-to-end seconds, start-up (connecting, starting the
workers, loading the data) included, as the original tool measured it; ``best_metric`` the best
value of the ranking metric; ``cpu_s`` / ``gpu_s`` CPU- and GPU-seconds held by training
(``compute_s × resources.cpus_per_trial`` / ``gpus_per_trial``); ``peak_rss_mb`` the largest
worker resident memory (MiB) reported in ``trials.csv``; ``slots`` concurrent workers. The std
is the sample standard deviation (n − 1; 0 for one repetition). :func:`read_running_results`
parses the file back.
"""

from __future__ import annotations

import csv
import math
import statistics
from datetime import datetime
from pathlib import Path
from typing import Any

FILE_NAME = "Running_Results.txt"
COLUMNS = ("rep", "seed", "runtime_s", "best_metric", "cpu_s", "gpu_s", "peak_rss_mb", "slots",
           "stop_reason", "run_dir")
NUMERIC = ("runtime_s", "best_metric", "cpu_s", "gpu_s", "peak_rss_mb", "slots")
MEAN_LABEL = "mean±std"


def peak_rss_mb(run_dir: Path) -> float | None:
    """The largest ``worker_rss_mb`` in ``trials.csv`` (MiB), None when not recorded."""
    path = Path(run_dir) / "trials.csv"
    if not path.is_file():
        return None
    peak = None
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            try:
                value = float(row.get("worker_rss_mb") or "nan")
            except ValueError:
                continue
            if math.isfinite(value) and (peak is None or value > peak):
                peak = value
    return peak


def repetition_row(rep: int, cfg: Any, summary: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """One repetition's numbers (the columns of :data:`COLUMNS`)."""
    best = (summary.get("best") or {}).get("metric")
    runtime = summary.get("end_to_end_s")
    if runtime is None:  # start-up + the run's own wall time
        runtime = float(summary["wall_s"]) + float(summary.get("startup_s") or 0.0)
    gpus = float(getattr(cfg.resources, "gpus_per_trial", 0.0) or 0.0)
    return {"rep": rep, "seed": cfg.seed, "runtime_s": float(runtime),
            "best_metric": float(best) if best is not None else math.nan,
            "cpu_s": float(summary["compute_s"]) * float(cfg.resources.cpus_per_trial),
            "gpu_s": float(summary["compute_s"]) * gpus,
            "peak_rss_mb": peak_rss_mb(run_dir) or math.nan, "slots": int(summary["slots"]),
            "stop_reason": summary.get("stop_reason", "-"), "run_dir": str(run_dir)}


def _cell(name: str, value: Any) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            return "nan"
        return f"{value:.6f}" if name == "best_metric" else f"{value:.3f}"
    return str(value)


class RunningResults:
    """Appends one ``--exp-times`` block to ``<root>/Running_Results.txt``.

    Args:
        root: the results root (``--results-dir``).
        cfg: the experiment's resolved config (first repetition's seed).
        times: the number of repetitions N.
    """

    def __init__(self, root: str | Path, cfg: Any, times: int) -> None:
        self.path = Path(root).expanduser() / FILE_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rows: list[dict[str, Any]] = []
        self.means: dict[str, str] = {}  # column → "mean±std" after finish()
        stamp = datetime.now().isoformat(timespec="seconds")
        head = (f"# pbtune --exp-times {times}: experiment={cfg.name} workload={cfg.workload} "
                f"metric={cfg.metric} mode={cfg.mode} population={cfg.population} "
                f"max_iterations={cfg.stop.max_iterations} seeds={cfg.seed}..{cfg.seed + times - 1}"
                f" started={stamp}")
        self._write([head, "\t".join(COLUMNS)])

    def _write(self, lines: list[str]) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))

    def add(self, rep: int, cfg: Any, summary: dict[str, Any], run_dir: Path) -> dict[str, Any]:
        row = repetition_row(rep, cfg, summary, run_dir)
        self.rows.append(row)
        self._write(["\t".join(_cell(c, row[c]) for c in COLUMNS)])
        return row

    def finish(self) -> str:
        """Append the mean ± std line (and a blank separator line); returns the line."""
        cells = []
        for column in COLUMNS:
            if column not in NUMERIC:
                cells.append(MEAN_LABEL if column == "rep" else "-")
                continue
            values = [r[column] for r in self.rows if math.isfinite(r[column])]
            if not values:
                cells.append("nan")
                continue
            mean = statistics.fmean(values)
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{_cell(column, float(mean))}±{_cell(column, float(std))}")
        line = "\t".join(cells)
        self._write([line, ""])
        self.means = dict(zip(COLUMNS, cells, strict=True))
        return line

    def describe(self) -> str:
        """The mean ± std line in words, for the terminal."""
        means = self.means
        return (f"runtime {means.get('runtime_s')} s, best {means.get('best_metric')}, "
                f"cpu {means.get('cpu_s')} s, peak worker RSS {means.get('peak_rss_mb')} MiB")


def read_running_results(path: str | Path) -> list[dict[str, Any]]:
    """Parse ``Running_Results.txt`` into blocks: ``{"header", "rows", "mean", "std"}``.

    ``rows`` are dicts of :data:`COLUMNS` (numbers as floats); ``mean`` and ``std`` map each
    numeric column to a float (absent for a block whose run was cut short).
    """
    blocks: list[dict[str, Any]] = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            blocks.append({"header": line[1:].strip(), "rows": [], "mean": {}, "std": {}})
        elif not line.strip() or line.startswith("rep\t") or not blocks:
            continue
        elif line.startswith(MEAN_LABEL):
            for column, cell in zip(COLUMNS, line.split("\t"), strict=False):
                if column in NUMERIC and "±" in cell:
                    mean, std = cell.split("±")
                    blocks[-1]["mean"][column], blocks[-1]["std"][column] = float(mean), float(std)
        else:
            row: dict[str, Any] = dict(zip(COLUMNS, line.split("\t"), strict=False))
            for column in ("rep", "seed", *NUMERIC):
                row[column] = float(row[column])
            blocks[-1]["rows"].append(row)
    return blocks
