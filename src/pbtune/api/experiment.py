"""``pbtune.run``, ``pbtune.resume``, ``pbtune.load``: the library entry points the CLI shells.

Why: Ray Tune and Optuna users work from Python and Jupyter; a run started from Python must be
the same run the CLI starts (same config layers, provenance, result files, resume), so the CLI's
``run`` and ``resume`` call :func:`run_experiment` here and
:func:`~pbtune.api.resuming.resume_run`, and the library functions add only the Python-side
conveniences: a config given as a mapping, overrides as a dict, a workload given as a class, and
a :class:`~pbtune.api.result.Result` back. Mistakes
raise :class:`~pbtune.errors.UserError` subclasses with the CLI's one-line messages.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pbtune.api.result import Result
from pbtune.errors import ConfigError, UserError


def _workload_spec(workload: Any) -> str:
    """A registry name or import spec; a class becomes ``module:Class`` (workers import it)."""
    if workload is None or isinstance(workload, str):
        return workload
    if isinstance(workload, type):
        module, name = workload.__module__, workload.__qualname__
        if module == "__main__" or "<locals>" in name:
            raise ConfigError(
                f"workload class {name} is defined in {module!r}; Ray's workers import a "
                "workload by module, so define it in a module (a .py file on the path) and pass "
                "the class from there, or pass 'path/to/file.py:ClassName'")
        return f"{module}:{name}"
    raise ConfigError(f"workload must be a name, 'file.py:Class' or a Workload class, not "
                      f"{type(workload).__name__}")


def experiment_config(config_or_path: Any = None, *, workload: Any = None,
                      engine: str | None = None,
                      overrides: Mapping[str, Any] | None = None) -> Any:
    """The resolved experiment config, as ``pbtune run`` would build it (file < env < overrides).

    ``config_or_path``: None (the quickstart preset), a YAML path, a mapping (as the YAML would
    hold), or an already built config.
    """
    from pbtune.config import load_config, resolve

    sets = [f"{k}={json.dumps(v)}" for k, v in dict(overrides or {}).items()]
    if workload is not None:
        sets.append(f"workload={json.dumps(_workload_spec(workload))}")
    if engine is not None:
        sets.append(f"engine={json.dumps(engine)}")
    if config_or_path is None or isinstance(config_or_path, str | Path):
        return resolve(load_config(config_or_path, sets))
    if hasattr(config_or_path, "model_dump"):  # an ExperimentConfig
        config_or_path = config_or_path.model_dump(mode="json")
    if not isinstance(config_or_path, Mapping):
        raise ConfigError(f"config must be a path, a mapping or an ExperimentConfig, not "
                          f"{type(config_or_path).__name__}")
    # A mapping is a YAML file's content: the same layers and checks as a file (not the preset).
    import tempfile

    import yaml

    with tempfile.TemporaryDirectory(prefix="pbtune-config-") as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(yaml.safe_dump(_plain(config_or_path), sort_keys=False))
        try:
            return resolve(load_config(path, sets))
        except UserError as exc:  # name what the user passed, not the temporary file
            raise type(exc)(str(exc).replace(f"config file {path}", "the config mapping")
                            .replace(str(path), "the config mapping")) from None


def _plain(value: Any) -> Any:
    """Tuples to lists (YAML without Python tags), recursively."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def run(config_or_path: Any = None, *, workload: Any = None, engine: str | None = None,
        overrides: Mapping[str, Any] | None = None, results_dir: str | Path = "results",
        progress: str | bool = "auto", plots: bool = True) -> Result:
    """Run an experiment; returns its :class:`Result` (also after Ctrl-C: resume it later).

    Args:
        config_or_path: see :func:`experiment_config`.
        workload: a registry name, ``file.py:Class``, or a Workload class from a module.
        engine: ``"native"`` or ``"tune"`` (default: the config's).
        overrides: dotted keys → values, e.g. ``{"population": 8, "pbt.quantile_fraction": 0.5}``.
        results_dir: results go to ``<results_dir>/<name>/<run-id>/``.
        progress: ``"auto"`` (a live table in a terminal or Jupyter, a plain log elsewhere),
            ``True``/``"log"`` (the plain log), ``False`` (silent).
        plots: draw ``plots/`` at the end.
    """
    cfg = experiment_config(config_or_path, workload=workload, engine=engine,
                            overrides=overrides)
    summary, run_dir = run_experiment(cfg, results_dir, quiet=progress is False,
                                      plots=plots, log=progress in (True, "log"))
    return Result(run_dir, summary)


def run_experiment(cfg: Any, results_dir: str | Path, *, quiet: bool = False,
                   tensorboard: bool = False, plots: bool = True, log: bool = False,
                   release_ray: bool = False) -> tuple[dict[str, Any], Path]:
    """One experiment: prepare, write provenance, run with the status view, plot; returns
    ``(summary, run_dir)``. ``pbtune run`` and :func:`run` both come here. ``release_ray``
    (the command's last run): the local Ray instance pbtune started stops while the plots are
    drawn, instead of after them at the interpreter's exit."""
    from pbtune.api.finish import journal_header, print_summary
    from pbtune.config import dump_yaml
    from pbtune.engines import create_engine
    from pbtune.reporting import status_view
    from pbtune.results import ResultsWriter, create_run_dir, write_metadata
    from pbtune.results.artifacts import ArtifactWriter

    started = time.perf_counter()
    engine = create_engine(cfg, [])
    engine.prepare()  # connect, plan, load data: fails before anything is written
    run_dir = create_run_dir(results_dir, cfg.name)
    write_metadata(run_dir, dump_yaml(cfg), {"experiment": cfg.name})
    engine.enable_recovery(run_dir, header=journal_header(run_dir))  # checkpoints + journal
    engine.callbacks.append(ResultsWriter(run_dir))
    engine.callbacks.append(ArtifactWriter(run_dir, cfg.metric, cfg.mode))  # e.g. GAN samples
    if tensorboard:
        from pbtune.results.tensorboard import TensorBoardLogger

        engine.callbacks.append(TensorBoardLogger(run_dir))
    if not quiet:  # what the user wrote is what runs: show it before it does
        print(f"exploring ({cfg.pbt.policy if cfg.pbt.enabled else 'random search'}): "
              f"{json.dumps(dict(cfg.pbt.hyperparam_mutations)) if cfg.pbt.enabled else '-'}",
              flush=True)
    view = status_view(cfg, quiet=quiet, title=f"pbtune {cfg.name}: {run_dir}",
                       tty=False if log else None)
    if view is not None:
        engine.callbacks.append(view)
    try:
        summary = engine.run()
    finally:
        if view is not None:
            view.close()  # type: ignore[attr-defined]  # a failed run leaves the terminal usable
    print_summary(cfg, summary, run_dir)
    drawing = threading.Thread(target=write_plots, args=(run_dir,), name="pbtune-plots")
    if plots:
        drawing.start()  # matplotlib's Agg backend: safe off the main thread
    if release_ray:
        from pbtune.cluster import release

        release()
    if plots:
        drawing.join()
    summary["end_to_end_s"] = round(time.perf_counter() - started, 3)  # Running_Results.txt
    return summary, run_dir


def write_plots(run_dir: Path) -> None:
    """Draw ``plots/`` (a plotting failure is a warning: the results are already written)."""
    try:
        from pbtune.results.plots import make_plots

        make_plots(run_dir)
        print(f"plots: {run_dir / 'plots'} (pbtune report {run_dir} writes report.html)")
    except Exception as exc:  # never lose a finished run to matplotlib
        print(f"warning: plots not written: {type(exc).__name__}: {exc}", file=sys.stderr)


def resume(run_dir: str | Path, *, progress: str | bool = "auto") -> Result:
    """Continue a crashed or interrupted run in its directory; returns its :class:`Result`."""
    from pbtune.api.resuming import resume_run

    summary = resume_run(Path(run_dir).expanduser(), [], None, quiet=progress is False)
    return Result(run_dir, summary)


def load(run_dir: str | Path) -> Result:
    """The :class:`Result` of a run directory, finished or not (nothing is started)."""
    path = Path(run_dir).expanduser()
    if not path.is_dir():
        raise UserError(f"run directory {path} does not exist; pass the directory a run printed "
                        "(results/<experiment>/<run-id>)")
    return Result(path)
