"""The population coordinator: every decision of a PBT run, as events in and commands out.

Why: the scheduler decides, the backend executes (Syne Tune). This class owns the population's
state — trials, the policy and its RNG, barriers, the best result, the workers it may use and
their measured speeds — and turns each event an executor reports (a segment finished or was lost,
workers changed, stop requested, time passed) into commands (run a segment, checkpoint, journal,
notify, stop). It has no Ray, no threads, no I/O and no clock of its own: the time is an argument,
so given the seed and the event sequence it is deterministic, and whole runs — heterogeneous
speeds, early release, worker loss, resume cuts — run against the simulated executor in
milliseconds (:mod:`pbtune.engines.simulated`).

Flow: trials run in segments up to the next barrier (an idle worker takes the runnable trial the
dispatcher chooses); once every live trial has reached it, the policy ranks them by their score
*at that iteration* and its decisions become :class:`Restore` values (see ``exploit.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pbtune.engines.base import (
    ERROR,
    LIVE,
    PAUSED,
    PENDING,
    RUNNING,
    TERMINATED,
    Trial,
    is_better,
)
from pbtune.engines.core import failures, intake
from pbtune.engines.core.barriers import Barriers
from pbtune.engines.core.cuts import CutTracker
from pbtune.engines.core.events import (
    CheckpointWritten,
    Command,
    Event,
    Journal,
    Notify,
    Restore,
    RunSegment,
    SaveBest,
    SegmentFinished,
    SegmentLost,
    StopRequested,
    StopSegments,
    WorkersChanged,
)
from pbtune.engines.core.exploit import apply_decisions
from pbtune.engines.core.index import PopulationIndex
from pbtune.engines.core.resume import ResumePoint
from pbtune.engines.core.settings import RunSettings
from pbtune.engines.core.state import Running, TrialState
from pbtune.engines.core.workers import WorkerTable


class PopulationCoordinator:
    """Decides a PBT run from events (see the module docstring).

    Args:
        settings: the run's settings (:class:`RunSettings`).
        trials: the initial population (public records; updated in place).
        policy: a :class:`~pbtune.pbt.Policy` (``random`` for no perturbation).
        dispatcher: a :class:`~pbtune.engines.dispatch.Dispatcher`.
    """

    def __init__(self, settings: RunSettings, trials: Sequence[Trial], policy: Any,
                 dispatcher: Any, resume: ResumePoint | None = None) -> None:
        self.s, self.policy, self.dispatcher = settings, policy, dispatcher
        self.bar = Barriers(settings.interval, settings.max_iter, settings.ckpt_interval,
                            policy.perturbs)
        self.cuts = CutTracker(settings.ckpt_interval) if settings.recovery else None
        self.trials = {t.trial_id: TrialState(t) for t in trials}
        self.best: dict[str, Any] | None = None  # trial_id, metric, config, iteration
        self.best_state: Any = None  # handle of the best result's state
        self.exploits, self.stop_reason = 0, "max_iterations"
        self.stopping = self.interrupted = self.finished = self._stop_sent = False
        self.last_barrier = 0  # the last barrier whose decisions were made
        self.barrier = self.bar.after(0)  # the barrier trials now run up to
        self.resumed_from: int | None = None
        self.compute_before_s = 0.0  # compute (s) restored trials carry from before a resume
        self.pool = WorkerTable()
        self.released: set[str] = set()  # trials released past the current barrier
        self.latest: dict[str, CheckpointWritten] = {}  # trial → its newest checkpoint on disk
        if resume is not None:
            self._resume(resume)
        self.index = PopulationIndex(self.trials, self.barrier)

    # -- the interface ---------------------------------------------------------------------------
    def start(self, workers: WorkersChanged, now_s: float = 0.0) -> list[Command]:
        """The first commands, given the workers that have started: the journal's start line
        (not on resume), on_trial_start, work."""
        out: list[Command] = self.pool.update(workers, notify=False)
        if self.resumed_from is None:
            out.append(Journal({"event": "start", "trials": [
                {"trial_id": t.trial_id, "config": t.config, "seed": t.record.seed}
                for t in self.trials.values()], "policy_state": self._policy_state()}, True))
        out += [Notify("on_trial_start", (t.record,)) for t in self.trials.values()]
        return out + self.step(now_s)

    def handle(self, event: Event, now_s: float) -> list[Command]:
        """Take one event at ``now_s`` (seconds since the run started): what it records.

        Decisions that follow from it come from :meth:`step`, called next: a driver that is
        interrupted while it carries out this batch (Ctrl-C in a callback) finishes the batch
        and never calls :meth:`step`, so no decision is made past the interruption.
        """
        out: list[Command] = []
        if isinstance(event, SegmentFinished):
            out += self._finished(event, now_s)
        elif isinstance(event, SegmentLost):
            self.pool.running.pop(event.worker, None)
            if not event.state_lost:
                self.pool.speeds.pop(event.worker, None)
            out += failures.worker_lost(self.trials[event.trial_id], event, self.trials,
                                        self.latest, max_failures=self.s.max_failures,
                                        recovery=self.s.recovery)
        elif isinstance(event, WorkersChanged):
            out += self.pool.update(event)
        elif isinstance(event, StopRequested):
            self.stopping, self.stop_reason = True, event.reason
            self.interrupted = self.interrupted or event.reason == "interrupted"
        elif isinstance(event, CheckpointWritten):
            self.latest[event.trial_id] = event
        return out

    def step(self, now_s: float) -> list[Command]:
        """Pass barriers, release, dispatch idle workers; sets :attr:`finished` when done."""
        out: list[Command] = []
        budget = self.s.time_budget_s
        while not self.finished:
            if not self.stopping and budget is not None and now_s >= budget:
                self.stopping, self.stop_reason = True, "time_budget"
            if self.stopping and not self._stop_sent:
                out.append(StopSegments())
                self._stop_sent = True
            if self.stop_reason == "time_budget" and now_s >= budget + self.s.grace_s:
                out += failures.abandon(self.trials, self.pool.running)
            if not self.stopping and self.barrier < self.s.max_iter and not self.index.behind:
                out += self._pass_barrier()  # all reached it (some went on)
                continue
            out += self._dispatch(now_s)
            if not self.pool.running:
                if self.stopping or not (self.index.counts[PENDING] + self.index.counts[PAUSED]):
                    self.finished = True
                    break
                if not self.pool.idle():
                    raise RuntimeError("every worker was lost and none could be recreated")
                out += self._pass_barrier()
                continue
            break
        return out

    def finish(self) -> list[Command]:
        """After the last segment (or Ctrl-C): rewind what must be redone, the final cut, and
        the end of every trial still live (not after Ctrl-C: they continue on resume)."""
        out: list[Command] = []
        if self.interrupted:
            for t in self.trials.values():  # its segment did not finish: redo it from its start
                if t.status == RUNNING:
                    t.status = PENDING if t.iteration == 0 else PAUSED
                    t.worker, t.pending = None, t.running_from
            self.pool.running.clear()
            out.append(Journal({"event": "stop", "reason": "interrupted"}, True))
            self.bar.rewind(self.trials, self.last_barrier)
        if self.cuts is not None:
            out += self.cuts.final_cut(self.trials, self._cut_extra(), final=not self.interrupted)
        if not self.interrupted:
            for t in self.trials.values():
                if t.status in LIVE:
                    t.status = TERMINATED
                    out.append(Notify("on_trial_end", (t.record,)))
        return out

    def _resume(self, r: ResumePoint) -> None:
        self.trials = {t.trial_id: t for t in r.trials}
        self.compute_before_s = sum(t.compute_s for t in r.trials)
        if self.policy.perturbs and r.policy_state:
            self.policy.set_state(r.policy_state)
        self.exploits, self.last_barrier = r.exploits, r.last_barrier
        self.barrier = self.bar.after(r.last_barrier)
        self.best, self.best_state, self.resumed_from = r.best, r.best_state, r.cut_iteration
        self.latest = dict(r.latest)

    # -- events ----------------------------------------------------------------------------------
    def _finished(self, ev: SegmentFinished, now_s: float) -> list[Command]:
        run = self.pool.running.pop(ev.worker)
        t = self.trials[ev.trial_id]
        t.running_from = None  # only a running segment is re-run from it (frees a donor copy)
        rows = ev.result["rows"]
        self.pool.record_speed(ev.worker, len(rows), ev.result["compute_s"])
        out = self._absorb(t, ev)
        out.append(Notify("on_segment", (t.record, ev.worker, run.started_s, now_s)))
        out.append(Journal({"event": "result", "trial": t.trial_id, "iteration": t.iteration,
                            "status": t.status, "worker": ev.worker, "rows": len(rows),
                            "score": t.scores.get(t.iteration)}))
        if self.cuts is not None:
            counts = self.index.counts
            out += self.cuts.assemble(self.trials, self._cut_extra(), spare=counts[TERMINATED]
                                      + counts[ERROR] + counts[PENDING])
        return out

    def _absorb(self, t: TrialState, ev: SegmentFinished) -> list[Command]:
        out, hit = intake.report_rows(t, ev, self.pool.columns(ev.worker), self.s)
        if hit and not self.stopping:
            self.stopping, self.stop_reason = True, "metric_threshold"
        best = intake.best_candidate(t, ev.result)
        if best and (self.best is None or is_better(best["metric"], self.best["metric"],
                                                     self.s.mode)):
            self.best, self.best_state = best, ev.best
            if self.s.recovery:
                out.append(SaveBest(ev.best, dict(best)))
        if ev.result["status"] == "error":
            return out + failures.trial_error(
                t, ev.result["error"], perturbs=self.policy.perturbs,
                max_failures=self.s.max_failures, recovery=self.s.recovery)
        out += intake.advance(t, ev, self.s, self.last_barrier)
        if self.cuts is not None:
            out += self.cuts.segment_end(t, final=t.status == TERMINATED)
        return out

    def _dispatch(self, now_s: float) -> list[Command]:
        """Idle workers take trials still to reach the barrier, then released ones (early
        release is decided only when a worker is left idle, the only time it can matter)."""
        if self.stopping:
            return []
        barrier, running, out = self.barrier, self.pool.busy(now_s), []
        for group in ("behind", "released"):
            idle = self.pool.idle()
            if not idle:
                break
            if group == "behind":
                if not self.index.runnable:
                    continue
                trials = self.index.candidates(len(idle)) if self.dispatcher.local \
                    else self.index.all_runnable()
            else:
                trials = self._released_runnable(barrier)
            if not trials:
                continue
            for worker, t in self.dispatcher.assign(
                    idle, trials, running, speeds=self.pool.estimated_speeds(), mode=self.s.mode,
                    length=lambda t: self.bar.end(t, barrier) - t.iteration):
                out.append(self._start(worker, t, now_s))
        return out

    def _released_runnable(self, barrier: int) -> list[TrialState]:
        if self.s.early_release and self.policy.perturbs and barrier < self.s.max_iter:
            self.released.update(t.trial_id for t in self.bar.release(
                self.trials, barrier, self.policy, self.s.mode, pending=len(self.index.behind)))
        return self.bar.may_go_on(self.trials[tid] for tid in sorted(self.released))

    def _start(self, worker: int, t: TrialState, now_s: float) -> RunSegment:
        restore, drop_from = t.pending, None
        if t.worker is not None and t.worker != worker:
            drop_from = t.worker  # the old holder's copy is obsolete (moved, or exploited)
            if restore is None:  # a plain move: the segment-end snapshot *is* the live state
                if t.snapshot is None:
                    raise RuntimeError(f"trial {t.trial_id} has no state to move")
                restore = Restore(t.snapshot)
        t.running_from, t.pending = t.resume_point(), None
        end = self.bar.end(t, self.barrier)
        pin = t.kept.state if t.kept is not None and t.kept.iteration == t.iteration else None
        t.status, t.worker = RUNNING, worker
        self.pool.running[worker] = Running(t.trial_id, now_s, end - t.iteration)
        return RunSegment(worker, t.trial_id, dict(t.config), t.record.seed, end, restore,
                          drop_from, None if self.best is None else self.best["metric"], pin)

    # -- boundaries ------------------------------------------------------------------------------
    def _pass_barrier(self) -> list[Command]:
        """Every trial has reached the barrier: decide there, forget the kept states, move on."""
        barrier = self.barrier
        out = self._perturb(barrier)
        for t in self.trials.values():
            if t.kept is not None and t.kept.iteration <= barrier:
                t.kept = None
        self.last_barrier = barrier
        self.barrier = self.bar.after(barrier)
        self.released.clear()
        self.index.set_barrier(self.barrier)
        return out

    def _perturb(self, iteration: int) -> list[Command]:
        if iteration >= self.s.max_iter or not self.policy.is_boundary(iteration):
            return []
        scores = self.bar.scores_at(self.trials, iteration)
        configs = {tid: self.trials[tid].config for tid in scores}
        decisions = self.policy.decide(iteration, scores, configs)
        out = apply_decisions(self.trials, self.bar, decisions, iteration, self._policy_state)
        self.exploits += sum(isinstance(c, Notify) for c in out)
        return out

    def _policy_state(self) -> dict[str, Any] | None:
        return self.policy.get_state() if self.policy.perturbs else None

    def _cut_extra(self) -> dict[str, Any]:
        return {"last_barrier": self.last_barrier, "exploits": self.exploits, "best": self.best,
                "policy_state": self._policy_state()}
