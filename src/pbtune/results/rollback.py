"""Roll a run directory's result files back to a resume point (no Ray imports).

Why: resume restarts every trial from its checkpoint in the last consistent cut, so iterations
after it will be trained — and reported — again. Rather than appending duplicates (or keeping rows
from a history the resumed run may not repeat), ``trials.csv`` keeps each trial's rows up to its
checkpoint iteration, ``pbt_global.txt`` keeps the decisions the restored PBT RNG already made, and
the ``pbt_policy_<trial>.txt`` lineages are rebuilt from it. Files are rewritten atomically, so a
crash during rollback leaves the old or the new version.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pbtune.engines.base import is_better
from pbtune.store.checkpoints import atomic_write


def _parse(text: str) -> Any:
    if text in ("True", "False"):
        return text == "True"
    try:
        return json.loads(text)
    except (json.JSONDecodeError, ValueError):
        return text


def _unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        parts = key.split(".")
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return nested


def rollback_trials_csv(run_dir: Path, keep_through: Mapping[str, int], metric: str,
                        mode: str) -> tuple[dict[str, int], dict[str, Any] | None]:
    """Keep each trial's rows with ``iteration <= keep_through[trial]`` (first copy only).

    Returns ``(rows kept per trial, best row)`` where the best row is ``{trial_id, metric, config,
    iteration}`` over the kept rows (the resumed run's "best so far").
    """
    path = Path(run_dir) / "trials.csv"
    counts = {tid: 0 for tid in keep_through}
    if not path.is_file():
        return counts, None
    text = path.read_text(encoding="utf-8", errors="replace")
    if text and not text.endswith("\n"):  # torn final row: the driver died while writing it
        text = text[: text.rfind("\n") + 1]
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None:
        return counts, None
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    col = {name: i for i, name in enumerate(header)}
    seen: set[tuple[str, int]] = set()
    best: dict[str, Any] | None = None
    for row in reader:
        if len(row) != len(header):
            continue
        tid = row[col["trial_id"]]
        try:
            iteration = int(row[col["iteration"]])
        except ValueError:
            continue
        if iteration > keep_through.get(tid, -1) or (tid, iteration) in seen:
            continue
        seen.add((tid, iteration))
        writer.writerow(row)
        counts[tid] += 1
        try:
            value = float(row[col[metric]]) if row[col[metric]] else math.nan
        except (KeyError, ValueError):
            value = math.nan
        if is_better(value, None if best is None else best["metric"], mode):
            config = _unflatten({k.removeprefix("config/"): _parse(row[i])
                                 for k, i in col.items() if k.startswith("config/")})
            best = {"trial_id": tid, "metric": value, "config": config, "iteration": iteration}
    atomic_write(path, out.getvalue().encode())
    return counts, best


def rollback_pbt_logs(run_dir: Path, decided_through: int) -> int:
    """Keep global decisions at iterations ``<= decided_through``; rebuild per-trial lineages.

    Returns the number of decisions kept (the restored exploit count).
    """
    run_dir = Path(run_dir)
    glob = run_dir / "pbt_global.txt"
    kept: list[list[Any]] = []
    if glob.is_file():
        for line in glob.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, list) and len(row) == 6 and int(row[2]) <= decided_through:
                kept.append(row)
    lines = [json.dumps(row) + "\n" for row in kept]
    atomic_write(glob, "".join(lines).encode())
    for old in run_dir.glob("pbt_policy_*.txt"):
        old.unlink()
    lineage: dict[str, list[str]] = {}
    for row, line in zip(kept, lines, strict=True):
        target, donor = str(row[0]), str(row[1])
        lineage[target] = [*lineage.get(donor, []), line]
    for target, rows in lineage.items():
        atomic_write(run_dir / f"pbt_policy_{target}.txt", "".join(rows).encode())
    return len(kept)
