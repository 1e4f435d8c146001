"""``pbtune.compare``: several search methods on one config and budget, as one table.

Why: the original FashionMNIST notebook compares a fixed-hyperparameter baseline, random search,
ASHA and PBT; ``pbtune bench`` already runs methods on identical seeded populations with a fresh
Ray session each, so this is its library face: the same runs, returned as a DataFrame.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pbtune.errors import ConfigError


def compare(config_or_path: Any = None, *,
            methods: Sequence[str] = ("baseline", "random", "asha", "native-pbt"),
            seeds: int = 1, workload: Any = None,
            overrides: Mapping[str, Any] | None = None, progress: bool = True,
            results_dir: str | Path | None = None) -> Any:
    """Run each method (× ``seeds``) and return one row per run as a pandas DataFrame.

    Methods are ``pbtune bench``'s (:data:`pbtune.engines.bench.METHODS`): ``native-pbt``,
    ``native-pb2``, ``tune-pbt``, ``tune-pbt-synch``, ``tune-pb2``, ``random``, ``asha``,
    ``baseline``. Columns: ``method``, ``seed``, ``best``, ``wall_s``, ``end_to_end_s``,
    ``efficiency``, ``exploits``, ``iterations``, ``errors``. The medians and ratios
    ``pbtune bench`` prints are in ``frame.attrs["median"]`` and ``frame.attrs["ratios"]``.

    With ``results_dir``, every run also writes its full result directory there (as
    :func:`pbtune.run`: trials.csv, PBT logs, checkpoints; experiment ``<name>-<method>``) and
    the frame gains a ``run_dir`` column, so ``pbtune.load(row.run_dir)`` gives each run's
    curves and schedules. Without it, runs write nothing (``pbtune bench``).
    """
    import pandas as pd

    from pbtune.api.experiment import experiment_config
    from pbtune.engines.bench import METHODS, run_bench, run_method

    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ConfigError(f"methods {list(methods)}: valid methods are {', '.join(METHODS)}")
    if seeds < 1:
        raise ConfigError(f"seeds={seeds} must be at least 1")
    cfg = experiment_config(config_or_path, workload=workload, overrides=overrides)
    out = run_bench(cfg, seeds, list(methods),
                    progress=print if progress else (lambda _line: None),
                    runner=_writing_runner(results_dir) if results_dir is not None else run_method)
    rows = [{"method": method, **{k: v for k, v in row.items() if k != "first_error"}}
            for method, runs in out["runs"].items() for row in runs]
    frame = pd.DataFrame(rows)
    frame.attrs.update(median=out["median"], ratios=out["ratios"], metric=out["metric"],
                       mode=out["mode"])
    return frame


def _writing_runner(results_dir: str | Path) -> Callable[[Any, str], dict[str, Any]]:
    """One method's run as :func:`pbtune.run` does it (files and all), quietly: its summary
    lines would repeat the table's row (``run_dir`` is in the row)."""
    import contextlib
    import io
    import time

    from pbtune.api.experiment import run_experiment
    from pbtune.engines.bench import summary_row

    def runner(cfg: Any, method: str) -> dict[str, Any]:
        cfg = cfg.model_copy(update={"name": f"{cfg.name}-{method}"})
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            summary, run_dir = run_experiment(cfg, results_dir, quiet=True, plots=False)
        return {**summary_row(cfg, summary, time.perf_counter() - start),
                "run_dir": str(run_dir)}

    return runner

