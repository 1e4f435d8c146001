"""Restoring a native engine from a journal cut (``pbtune resume``).

Why apart from the engine: the engine's loop does not care how it got its trials; rebuilding them
from checkpoints, the policy's RNG state and the best result's file is the resume path's business
(see docs/fault-tolerance.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ray

from pbtune.engines.native.recovery import BEST_NAME, restore_trials


def restore_engine(engine: Any, cut: dict[str, Any], counts: dict[str, int],
                   best: dict[str, Any] | None, exploits: int) -> None:
    """Put ``engine`` at a journal cut (after its ``prepare`` and ``enable_recovery``).

    The trials come back from their checkpoints, the policy's RNG from the cut, and the best
    result's state from ``checkpoints/best.pt`` when it still matches ``best``. ``counts`` (rows
    kept per trial), ``best`` and ``exploits`` come from the rolled-back result files, so the
    summary counts every iteration exactly once.
    """
    assert engine.recovery is not None and engine.pool is not None
    engine.trials = restore_trials(cut, engine.recovery.store)
    for tid, trial in engine.trials.items():
        trial.results = counts.get(tid, 0)
    engine.compute_before_s = sum(t.compute_s for t in engine.trials.values())
    if engine.policy is not None and cut.get("policy_state"):
        engine.policy.set_state(cut["policy_state"])
    engine.exploits, engine.last_barrier = exploits, int(cut.get("last_barrier", 0))
    engine.best, engine.resumed_from = best, int(cut["iteration"])
    best_file = engine.recovery.run_dir / "checkpoints" / BEST_NAME
    meta = next((e for e in reversed(_events(engine.recovery.run_dir)) if e["event"] == "best"),
                None)
    if best and meta and best_file.is_file() and (meta["trial_id"], meta["iteration"]) == (
            best["trial_id"], best["iteration"]):
        try:
            engine.best_ref = ray.put(engine.recovery.store.load(meta))
        except ValueError:
            engine.best_ref = None
    engine.recovery.seed(cut)
    engine._journal({"event": "resume", "cut": engine.resumed_from, "exploits": exploits}, True)


def _events(run_dir: Path) -> list[dict[str, Any]]:
    from pbtune.store.journal import read_journal

    return read_journal(run_dir)[1]
