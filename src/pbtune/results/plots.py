"""Plots of a finished (or crashed) run, read back from its run directory (pandas + matplotlib Agg).

Why: a PBT run is understood by looking at it — did the population converge, how did each
hyperparameter's schedule evolve, who copied whom and when, and did every worker stay busy. The
plots are drawn from the files a run writes (``trials.csv``, ``pbt_global.txt``,
``timeline.csv``), never from engine objects, so ``pbtune report`` can redraw any past run and a
crashed run still gets its plots. Every plot is always written (an empty one says "no data") so a
report can link all four unconditionally.

Files, in ``<run_dir>/plots/``:

- ``metric.png``: the ranking metric against iteration, one line per trial, exploits marked ``x``.
- ``hyperparameters.png``: one panel per hyperparameter, its value against iteration per trial.
- ``lineage.png``: one row per trial over iterations; an arrow from donor to target per exploit.
- ``timeline.png``: which trial ran on which worker (and node) when, in seconds since the start.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

if "ipykernel" not in sys.modules:  # Jupyter's inline backend is kept: figures show there
    matplotlib.use("Agg")  # files only: no display, safe in threads and on headless nodes

import matplotlib.pyplot as plt
import pandas as pd

from pbtune.errors import UserError

PLOTS = ("metric", "losses", "hyperparameters", "lineage", "timeline")
DPI = 90  # dots per inch: ~1 MB of PNG for the four plots of a 20-trial run at most


def read_trials(run_dir: Path) -> pd.DataFrame:
    """``trials.csv`` as a frame (empty when the run wrote no result yet)."""
    path = Path(run_dir) / "trials.csv"
    if not path.is_file() or path.stat().st_size == 0:
        return pd.DataFrame(columns=["trial_id", "iteration"])
    try:
        frame = pd.read_csv(path, on_bad_lines="skip")  # a torn last row is dropped
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise damaged(path, exc) from None
    if not {"trial_id", "iteration"} <= set(frame.columns):
        raise damaged(path, "no trial_id and iteration columns")
    frame["iteration"] = pd.to_numeric(frame["iteration"], errors="coerce")
    frame = frame.dropna(subset=["iteration"])
    frame["iteration"] = frame["iteration"].astype(int)
    return frame.sort_values(["trial_id", "iteration"], kind="stable").reset_index(drop=True)


def damaged(path: Path, why: Any) -> UserError:
    """The one-line error for a result file that cannot be read."""
    reason = why if isinstance(why, str) else f"{type(why).__name__}: {why}"
    first = (str(reason).strip().splitlines() or [""])[0]
    return UserError(f"{path} is damaged ({first}); restore it or rerun the experiment")


def read_decisions(path: Path) -> list[list[Any]]:
    """Rows of a PBT log (Ray Tune's ``[target, donor, t_iter, d_iter, old, new]``), or []."""
    path = Path(path)
    if not path.is_file():
        return []
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    rows = []
    for n, line in enumerate(lines):
        try:
            row = json.loads(line)
        except ValueError:
            if n == len(lines) - 1:  # a half-written last line: the run was killed writing it
                break
            raise damaged(path, f"line {n + 1} is not JSON") from None
        if not isinstance(row, list) or len(row) < 6:
            raise damaged(path, f"line {n + 1} is not a PBT log row")
        rows.append(row)
    return rows


def run_metric(run_dir: Path, frame: pd.DataFrame) -> str:
    """The ranking metric: from ``summary.json``, else ``config.yaml``, else the first metric."""
    import yaml

    for name, parse in (("summary.json", json.loads), ("config.yaml", yaml.safe_load)):
        path = Path(run_dir) / name
        if not path.is_file():
            continue
        try:  # a damaged file here only loses the hint; the frame still names the metrics
            data = parse(path.read_text())
        except (OSError, ValueError, yaml.YAMLError):
            continue
        if isinstance(data, dict) and data.get("metric"):
            return str(data["metric"])
    from pbtune.results.writer import META_COLUMNS

    skip = {"trial_id", "iteration", *META_COLUMNS}
    candidates = [c for c in frame.columns if c not in skip and not c.startswith("config/")]
    return candidates[0] if candidates else "metric"


def _empty(ax: Any, text: str = "no data") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_xticks([])
    ax.set_yticks([])


def _save(fig: Any, path: Path | None) -> Any:
    """Write the figure to ``path``; with no path, return the figure itself (the Python API:
    Jupyter shows it as a cell's value or with ``display``). Either way it leaves pyplot's list
    of open figures, so Jupyter's inline backend does not show it a second time at cell end and
    a long session does not accumulate figures."""
    fig.tight_layout()
    plt.close(fig)
    if path is None:
        return fig
    fig.savefig(path, dpi=DPI)
    return path


def plot_metric(frame: pd.DataFrame, metric: str, decisions: list[list[Any]],
                path: Path | None = None) -> Any:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    if frame.empty or metric not in frame:
        _empty(ax)
    else:
        for trial_id, rows in frame.groupby("trial_id"):
            (line,) = ax.plot(rows["iteration"], rows[metric], label=str(trial_id), lw=1.2)
            targets = {int(d[2]) + 1 for d in decisions if d[0] == trial_id}
            hits = rows[rows["iteration"].isin(targets)]
            ax.plot(hits["iteration"], hits[metric], "x", color=line.get_color(), ms=7)
        ax.set_xlabel("iteration")
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} per trial (x: first iteration after an exploit)")
        ax.grid(alpha=0.3)
        if frame["trial_id"].nunique() <= 20:
            ax.legend(fontsize=7, ncol=2, loc="best")
    return _save(fig, path)


def plot_losses(frame: pd.DataFrame, path: Path | None = None) -> Any:
    """Every ``*loss*`` column per trial (a GAN's ``loss_g``/``loss_d``, training and
    validation losses), one panel each."""
    columns = [c for c in frame.columns if "loss" in c and not c.startswith("config/")
               and pd.api.types.is_numeric_dtype(frame[c])]
    fig, axes = plt.subplots(max(1, len(columns)), 1, figsize=(8, 2.4 * max(1, len(columns))),
                             squeeze=False)
    if frame.empty or not columns:
        _empty(axes[0][0], "no loss columns")
    for ax, column in zip(axes[:, 0], columns, strict=False):
        for trial_id, rows in frame.groupby("trial_id"):
            ax.plot(rows["iteration"], rows[column], lw=1.0, label=str(trial_id))
        ax.set_ylabel(column)
        ax.set_title(f"{column} per trial", fontsize=9)
        ax.grid(alpha=0.3)
    if columns and frame["trial_id"].nunique() <= 12:
        axes[0][0].legend(fontsize=7, ncol=4, loc="best")
    axes[-1][0].set_xlabel("iteration")
    return _save(fig, path)


def plot_hyperparameters(frame: pd.DataFrame, path: Path | None = None) -> Any:
    params = [c for c in frame.columns if c.startswith("config/")]
    fig, axes = plt.subplots(max(1, len(params)), 1, figsize=(8, 2.6 * max(1, len(params))),
                             squeeze=False)
    if frame.empty or not params:
        _empty(axes[0][0])
    for ax, column in zip(axes[:, 0], params, strict=False):
        values = frame[column]
        numeric = pd.api.types.is_numeric_dtype(values)
        if not numeric:  # categorical: plot category indices, label the ticks
            categories = sorted(values.astype(str).unique())
            ax.set_yticks(range(len(categories)), categories)
        for _trial_id, rows in frame.groupby("trial_id"):
            y = rows[column] if numeric else rows[column].astype(str).map(categories.index)
            ax.step(rows["iteration"], y, where="post", lw=1.1)
        name = column.removeprefix("config/")
        if numeric and (values > 0).all() and values.max() / max(values.min(), 1e-300) > 100:
            ax.set_yscale("log")
        ax.set_ylabel(name)
        ax.set_title(f"{name} schedule per trial", fontsize=9)
        ax.grid(alpha=0.3)
    axes[-1][0].set_xlabel("iteration")
    return _save(fig, path)


def plot_lineage(frame: pd.DataFrame, decisions: list[list[Any]],
                 path: Path | None = None) -> Any:
    trials = sorted(set(frame["trial_id"]) | {d[0] for d in decisions} | {d[1] for d in decisions})
    fig, ax = plt.subplots(figsize=(8, max(2.5, 0.35 * len(trials) + 1.2)))
    if not trials:
        _empty(ax)
        return _save(fig, path)
    y = {t: i for i, t in enumerate(trials)}
    for trial_id, rows in frame.groupby("trial_id"):
        ax.hlines(y[trial_id], rows["iteration"].min(), rows["iteration"].max(), color="lightgrey",
                  lw=4)
    for target, donor, t_iter, d_iter, *_ in decisions:
        ax.annotate("", xy=(t_iter, y[target]), xytext=(d_iter, y[donor]),
                    arrowprops={"arrowstyle": "->", "color": "tab:red", "lw": 1.2,
                                "connectionstyle": "arc3,rad=0.15"})
        ax.plot([t_iter], [y[target]], "o", color="tab:red", ms=4)
    ax.set_yticks(range(len(trials)), trials)
    ax.set_xlabel("iteration")
    ax.set_title(f"exploit lineage: {len(decisions)} exploits (arrow: donor -> target)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_ylim(-0.7, len(trials) - 0.3)
    return _save(fig, path)


def plot_timeline(timeline: pd.DataFrame, path: Path | None = None) -> Any:
    fig, ax = plt.subplots(figsize=(9, max(2.5, 0.45 * timeline["worker"].nunique() + 1.5)
                                    if not timeline.empty else 2.5))
    if timeline.empty:
        _empty(ax, "no segments")
        return _save(fig, path)
    trials = sorted(timeline["trial_id"].unique())
    colours = plt.get_cmap("tab20")
    workers = sorted(timeline["worker"].unique())
    labels = []
    for row_y, worker in enumerate(workers):
        rows = timeline[timeline["worker"] == worker]
        labels.append(f"w{worker} @ {rows['node'].iloc[0]}")
        for _, seg in rows.iterrows():
            width = seg["end_s"] - seg["start_s"]
            colour = colours(trials.index(seg["trial_id"]) % 20)
            ax.barh(row_y, width, left=seg["start_s"], color=colour, edgecolor="white", height=0.7)
            if width > 0.06 * timeline["end_s"].max():
                ax.text(seg["start_s"] + width / 2, row_y, str(seg["trial_id"]), ha="center",
                        va="center", fontsize=7)
    ax.set_yticks(range(len(workers)), labels)
    ax.set_xlabel("seconds since start")
    ax.set_title("timeline: trial segments per worker (node)")
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def make_plots(run_dir: str | Path) -> dict[str, Path]:
    """Write the plots (:data:`PLOTS`) into ``<run_dir>/plots/``; returns name → path.

    Raises:
        UserError: ``run_dir`` is not a run directory (no ``trials.csv`` nor ``config.yaml``).
    """
    run_dir = Path(run_dir)
    if not (run_dir / "trials.csv").is_file() and not (run_dir / "config.yaml").is_file():
        raise UserError(f"{run_dir} is not a run directory (no trials.csv or config.yaml); pass "
                        "the directory printed by `pbtune run` (results/<experiment>/<run-id>)")
    out = run_dir / "plots"
    out.mkdir(exist_ok=True)
    frame = read_trials(run_dir)
    decisions = read_decisions(run_dir / "pbt_global.txt")
    timeline_path = run_dir / "timeline.csv"
    timeline = (pd.read_csv(timeline_path) if timeline_path.is_file()
                and timeline_path.stat().st_size > 0 else pd.DataFrame(columns=["worker"]))
    return {
        "metric": plot_metric(frame, run_metric(run_dir, frame), decisions, out / "metric.png"),
        "losses": plot_losses(frame, out / "losses.png"),
        "hyperparameters": plot_hyperparameters(frame, out / "hyperparameters.png"),
        "lineage": plot_lineage(frame, decisions, out / "lineage.png"),
        "timeline": plot_timeline(timeline, out / "timeline.png"),
    }
