"""Resuming a run: validate its directory, restore the engine at the newest verifiable cut, go on.

Why in the library: ``pbtune resume`` and :func:`pbtune.resume` must resume identically; the CLI
parses arguments and prints the exit status, nothing else.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

from pbtune.api.finish import print_summary
from pbtune.errors import UserError


def load_run(run_dir: Path, overrides: list[str], address: str | None) -> tuple[Any, dict, list]:
    """Validate a run directory and return ``(stored config, journal header, events)``.

    Everything a user can get wrong is checked here, before Ray starts or a file changes: the
    directory, the journal (present, pbtune's, this version), ``config.yaml`` unchanged since the
    run started, and overrides that would change the experiment.
    """
    from pbtune.config import dump_yaml, load_config, resolve
    from pbtune.store.journal import JOURNAL_NAME, read_journal

    if not run_dir.exists():
        raise UserError(f"run directory {run_dir} does not exist; pass the directory printed by "
                        "`pbtune run` (results/<experiment>/<run-id>)")
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is not a directory; pass a run directory "
                        "(results/<experiment>/<run-id>)")
    cfg_path = run_dir / "config.yaml"
    if not (run_dir / JOURNAL_NAME).exists() and _engine_of(cfg_path) == "tune":
        raise UserError(f"{run_dir} ran with engine: tune, and pbtune resume supports the native "
                        f"engine only (Ray Tune's experiment restore is not wired in); run it "
                        f"again with `pbtune run {cfg_path}`")
    if not (run_dir / JOURNAL_NAME).exists() and cfg_path.is_file() and (
            run_dir / "meta.json").is_file():
        # Killed after its folder was made but before training began: start it over there.
        from pbtune.api.finish import journal_header
        from pbtune.store.journal import Journal

        print(f"{run_dir} has no journal: the run never started training; starting it over "
              "from its config.yaml", file=sys.stderr)
        Journal(run_dir, journal_header(run_dir)).close()
    header, events = read_journal(run_dir)
    if not cfg_path.is_file():
        raise UserError(f"{cfg_path} is missing; a run cannot be resumed without the config it "
                        "started with")
    digest = hashlib.sha256(cfg_path.read_bytes()).hexdigest()
    if header.get("config_sha256") not in (None, digest):
        raise UserError(f"{cfg_path} was edited after the run started (its sha256 differs from the "
                        "journal's); restore it — resume always continues the experiment as it "
                        "started (change settings in a new run)")
    extra = [f"resources.address={address}"] if address else []
    stored = resolve(load_config(str(cfg_path), extra, env={}))
    if overrides:
        wanted = resolve(load_config(str(cfg_path), [*extra, *overrides], env={}))
        if dump_yaml(wanted) != dump_yaml(stored):
            raise UserError(f"overrides {' '.join(overrides)} change the experiment stored in "
                            f"{cfg_path}; resume uses the stored config — drop the overrides, or "
                            "start a new run with them")
    return stored, header, events


def _engine_of(cfg_path: Path) -> str | None:
    """The ``engine:`` a stored config names (None when unreadable: the usual checks report it)."""
    import yaml

    try:
        data = yaml.safe_load(cfg_path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    return data.get("engine") if isinstance(data, dict) else None


def resume_run(run_dir: Path, overrides: list[str], address: str | None, *,
               quiet: bool = False) -> dict[str, Any] | None:
    """Resume ``run_dir``; its summary, or None when it had already finished (``pbtune resume``
    and :func:`pbtune.resume` both come here)."""
    from pbtune.engines import create_engine
    from pbtune.reporting.progress import ProgressPrinter
    from pbtune.results import ResultsWriter
    from pbtune.results.artifacts import ArtifactWriter
    from pbtune.store.journal import read_journal
    from pbtune.store.lock import lock_run

    cfg, _header, _events = load_run(run_dir, overrides, address)
    lock = lock_run(run_dir)  # another run or resume of this directory: a one-line error
    try:
        _header, events = read_journal(run_dir)  # as it is now that nobody else writes it
        if any(e.get("event") == "end" for e in events):
            print(f"run {run_dir} already finished; nothing to resume (see summary.json)")
            return None
        engine = create_engine(cfg, [])
        cut, counts = restore_run(engine, run_dir, cfg, events)
        print(f"resuming {run_dir} from iteration {cut['iteration']} "
              f"({sum(counts.values())} results kept)")
        engine.callbacks.append(ResultsWriter(run_dir, append=True))
        engine.callbacks.append(ArtifactWriter(run_dir, cfg.metric, cfg.mode))
        if not quiet:
            engine.callbacks.append(ProgressPrinter(cfg.population * cfg.stop.max_iterations,
                                                    cfg.metric, cfg.mode,
                                                    interval_s=min(cfg.report_interval, 5)))
        summary = engine.run()
    finally:
        lock.release()
    print_summary(cfg, summary, run_dir)
    return summary


def restore_run(engine: Any, run_dir: Path, cfg: Any,
                events: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, int]]:
    """Put ``engine`` at the run's newest verifiable cut; returns ``(cut, rows kept per trial)``.

    The engine is prepared (workers started) before any result file is rewritten; then
    ``trials.csv`` and the PBT logs are rolled back to the cut, and the engine continues from it
    in the same directory.
    """
    from pbtune.store.lock import lock_run

    lock = lock_run(run_dir)  # before any file is read for the resume point or rolled back
    try:
        return _restore(engine, run_dir, cfg, events)
    finally:
        lock.release()  # the engine's writer holds it from enable_recovery on


def _restore(engine: Any, run_dir: Path, cfg: Any,
             events: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, int]]:
    from pbtune.results.rollback import rollback_pbt_logs, rollback_trials_csv
    from pbtune.store.checkpoints import CheckpointStore
    from pbtune.store.journal import find_resume_point

    if not any(e.get("event") == "start" for e in events):  # never trained: from the start
        engine.prepare()
        engine.enable_recovery(run_dir)
        return {"iteration": 0}, {}
    store = CheckpointStore(run_dir)
    cut, messages = find_resume_point(run_dir, events, store.verify)
    for message in messages:
        print(f"warning: {message}", file=sys.stderr)
    engine.prepare()  # connect and start workers before any result file is rewritten
    keep = {tid: rec["iteration"] if rec["status"] not in ("TERMINATED", "ERROR")
            else rec.get("recorded", rec["iteration"]) for tid, rec in cut["trials"].items()}
    counts, best = rollback_trials_csv(run_dir, keep, cfg.metric, cfg.mode)
    exploits = rollback_pbt_logs(run_dir, int(cut.get("last_barrier", 0)))
    engine.enable_recovery(run_dir)
    engine.restore(cut, counts, best, exploits)
    return cut, counts


