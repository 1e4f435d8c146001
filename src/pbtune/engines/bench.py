"""``pbtune bench``: one workload and budget through native PBT/PB2, Ray Tune's and random search.

Why in the package (not only ``bench/``): "is the native engine worth it on *my* workload?" should
be one command on the user's own config. Every method runs the same resolved config — the same
seeded initial population and trial seeds, the same mutations and PBT settings, the same
iterations per trial, the same cluster (a fresh Ray session per run) — and only the engine or
the search changes:

* ``native-pbt``: ``engine: native`` with ``pbt.policy: pbt``;
* ``native-pb2``: ``engine: native`` with ``pbt.policy: pb2`` (pbtune's PB2, a GP-bandit explore);
* ``tune-pbt``: ``engine: tune`` with ``tune.scheduler: pbt`` and Tune's default
  ``synch: false`` (asynchronous PBT, as most Tune users run it): a trial reaching a boundary is
  ranked against whatever the others last reported;
* ``tune-pbt-synch``: the same with ``synch: true`` (Tune's synchronous PBT): trials are ranked
  at equal progress, as the native engine ranks them — the like-for-like search comparison;
* ``tune-pb2``: ``engine: tune`` with ``tune.scheduler: pb2`` (Ray Tune's ``PB2``), otherwise as
  ``tune-pbt`` (asynchronous);
* ``random``: the native engine with ``pbt.enabled: false`` — the same population trained for the
  same budget without exploit/explore (the ablation PBT must beat);
* ``asha``: ``engine: tune`` with ``tune.scheduler: asha`` over the same sampled population
  (early stopping of unpromising trials, no weight copying);
* ``baseline``: one model with the workload's default hyperparameters, trained for the same
  number of iterations (the original notebook's fixed-hyperparameter baseline).

Without ``methods``, :data:`DEFAULT_METHODS` run (the PBT comparison); the PB2, ASHA and
baseline methods are asked for by name (``pbtune bench --methods ...``, ``pbtune.compare``).

Timing: each run gets a fresh Ray session, started before its clock starts; ``end_to_end_s`` is
measured around ``prepare()`` + ``run()`` for every method, so start-up cannot flatter either
engine; ``wall_s`` and ``efficiency`` are each engine's own definitions.
With ``seeds = N`` each method runs with seeds 0..N-1 and the table shows medians; the time
ratios are also given per seed (native and Tune ran back to back on the same machine state), as
their median, which load changes between seeds move less than a ratio of medians.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

METHODS = ("native-pbt", "native-pb2", "tune-pbt", "tune-pbt-synch", "tune-pb2", "random",
           "asha", "baseline")
DEFAULT_METHODS = ("native-pbt", "tune-pbt", "tune-pbt-synch", "random")
TUNE_METHODS = ("tune-pbt", "tune-pbt-synch", "tune-pb2")
# native method → the Tune methods it is compared with (time ratios, best-metric gaps)
_PAIRS = {"native-pbt": ("tune-pbt", "tune-pbt-synch"), "native-pb2": ("tune-pb2",)}


def method_config(cfg: Any, method: str, seed: int) -> Any:
    """``cfg`` for one method and seed (frozen pydantic models: copied, never mutated)."""
    update: dict[str, Any] = {"seed": seed, "engine": "native"}
    if method in TUNE_METHODS:
        update["engine"] = "tune"
        update["tune"] = cfg.tune.model_copy(update={
            "scheduler": "pb2" if method == "tune-pb2" else "pbt", "search": "random",
            "policy_file": None, "synch": method == "tune-pbt-synch"})
    elif method == "random":
        update["pbt"] = cfg.pbt.model_copy(update={"enabled": False})
    elif method == "asha":  # Ray Tune's ASHA over the same sampled population (early stopping)
        update["engine"] = "tune"
        update["tune"] = cfg.tune.model_copy(update={
            "scheduler": "asha", "search": "random", "policy_file": None, "synch": False})
    elif method == "baseline":  # one model with the workload's default hyperparameters
        from pbtune.workloads import get

        defaults = dict(get(cfg.workload).default_config)
        update["pbt"] = cfg.pbt.model_copy(update={"enabled": False})
        update["population"] = 1
        update["param_space"] = {k: defaults[k] for k in cfg.param_space if k in defaults}
    elif method in ("native-pbt", "native-pb2"):
        update["pbt"] = cfg.pbt.model_copy(update={"enabled": True, "policy": method[7:]})
    else:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    return cfg.model_copy(update=update)


def run_method(cfg: Any, method: str = "") -> dict[str, Any]:
    """One run (of ``method``), no result files; the summary's headline numbers plus
    ``end_to_end_s``."""
    from pbtune.engines import create_engine

    start = time.perf_counter()
    engine = create_engine(cfg, [])
    engine.prepare()
    summary = engine.run()
    return summary_row(cfg, summary, time.perf_counter() - start)


def summary_row(cfg: Any, summary: dict[str, Any], end_to_end_s: float) -> dict[str, Any]:
    """A run's row in the bench table, from its summary."""
    best = summary.get("best") or {}
    return {"seed": cfg.seed, "best": best.get("metric"), "wall_s": summary["wall_s"],
            "end_to_end_s": round(end_to_end_s, 3), "efficiency": summary["efficiency"],
            "exploits": summary["exploits"], "iterations": summary["iterations"],
            "slots": summary["slots"], "errors": len(summary.get("errors") or {}),
            "first_error": next(iter((summary.get("errors") or {}).values()), None)}


def _median(values: Sequence[float | None]) -> float | None:
    kept = [float(v) for v in values if v is not None]
    return statistics.median(kept) if kept else None


def run_bench(cfg: Any, seeds: int, methods: Sequence[str] = DEFAULT_METHODS,
              progress: Callable[[str], None] = print,
              runner: Callable[[Any, str], dict[str, Any]] = run_method) -> dict[str, Any]:
    """Every method × seed; returns per-run rows, per-method medians and the ratios.

    ``runner(method_cfg, method) -> row`` runs one (default :func:`run_method`: no files;
    :func:`pbtune.compare` passes one that writes each run's result directory)."""
    import ray

    from pbtune.cluster import connect

    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    for seed in range(seeds):
        for method in methods:
            # A fresh Ray session per run, connected before the timing starts: no run inherits
            # another's leftovers (Tune's placement groups, object-store contents; a Tune run
            # was once seen to leave a CPU unreleased). Workers' output is not forwarded: the
            # table is the product, and Ray's actor teardown under Tune prints harmless
            # tracebacks; trial errors are counted in each row, the first one printed.
            connect(cfg.resources.address, log_to_driver=False)
            try:
                row = runner(method_config(cfg, method, seed), method)
            finally:
                ray.shutdown()
            runs[method].append(row)
            errors = (f", {row['errors']} trial(s) FAILED, first: {row['first_error']}"
                      if row["errors"] else "")
            progress(f"seed {seed} {method}: best {row['best']}, end-to-end "
                     f"{row['end_to_end_s']:.1f} s, exploits {row['exploits']}{errors}")
    medians = {m: {k: _median([r[k] for r in rows]) for k in
                   ("best", "wall_s", "end_to_end_s", "efficiency", "exploits")}
               for m, rows in runs.items()}
    return {"workload": cfg.workload, "metric": cfg.metric, "mode": cfg.mode,
            "population": cfg.population, "max_iterations": cfg.stop.max_iterations,
            "perturbation_interval": cfg.pbt.perturbation_interval, "seeds": seeds,
            "runs": runs, "median": medians, "ratios": ratios(medians, runs, cfg.mode)}


def _div(a: float | None, b: float | None) -> float | None:
    return round(a / b, 4) if a is not None and b else None


def ratios(medians: dict[str, dict[str, float | None]],
           runs: dict[str, list[dict[str, Any]]] | None = None,
           mode: str = "max") -> dict[str, float | None]:
    """Each native method vs its Tune counterparts: time ratios and best-metric gaps; each
    method vs random.

    Gaps are signed so that positive means "better" in the metric's ``mode``. With ``runs``,
    ``<native>_over_<tune>_end_to_end_per_seed`` is the median of the per-seed ratios. Native PBT
    keeps its historical key prefix ``native_`` (``native_over_tune-pbt_wall``); native PB2's is
    ``native-pb2_``.
    """
    sign = 1.0 if mode == "max" else -1.0

    def gap(a: dict, b: dict) -> float | None:
        if a.get("best") is None or b.get("best") is None:
            return None
        return round(sign * (a["best"] - b["best"]), 6)

    out: dict[str, float | None] = {}
    for native_method, tune_methods in _PAIRS.items():
        native = medians.get(native_method)
        prefix = "native" if native_method == "native-pbt" else native_method
        for tune_method in tune_methods:
            tune = medians.get(tune_method)
            if tune is None or not native:
                continue
            out[f"{prefix}_over_{tune_method}_end_to_end"] = _div(native.get("end_to_end_s"),
                                                                  tune.get("end_to_end_s"))
            out[f"{prefix}_over_{tune_method}_wall"] = _div(native.get("wall_s"),
                                                            tune.get("wall_s"))
            if runs is not None:
                per_seed = [_div(n["end_to_end_s"], t["end_to_end_s"])
                            for n, t in zip(runs[native_method], runs[tune_method], strict=True)]
                out[f"{prefix}_over_{tune_method}_end_to_end_per_seed"] = _median(per_seed)
            out[f"{prefix}_best_minus_{tune_method}"] = gap(native, tune)
    rand = medians.get("random", {})
    if rand:
        for method in METHODS:
            if method != "random" and method in medians:
                out[f"{method}_best_minus_random"] = gap(medians[method], rand)
    return out


def format_table(result: dict[str, Any]) -> str:
    """A Markdown table of the medians and the ratio lines (pasted into docs as is)."""
    metric = result["metric"]
    lines = [f"| method | median best {metric} | median end-to-end s | median engine wall s "
             "| median efficiency | median exploits |", "|---|---|---|---|---|---|"]
    for method, med in result["median"].items():
        def f(key: str, fmt: str, med: dict = med) -> str:
            return "–" if med[key] is None else format(med[key], fmt)
        lines.append(f"| {method} | {f('best', '.4f')} | {f('end_to_end_s', '.1f')} | "
                     f"{f('wall_s', '.1f')} | {f('efficiency', '.2f')} | {f('exploits', '.0f')} |")
    lines.append("")
    for key, value in result["ratios"].items():
        lines.append(f"- {key}: {'–' if value is None else value}")
    return "\n".join(lines)


def write_json(result: dict[str, Any], path: Path) -> None:
    Path(path).write_text(json.dumps(result, indent=2, default=str) + "\n")
