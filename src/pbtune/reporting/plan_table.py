"""``pbtune plan``'s output: the capacity plan as a per-node table and as plain text.

Why apart from :mod:`pbtune.cluster.plan`: the plan is arithmetic (unit-tested, used by the
engines); how it is shown is reporting, and the same table serves the terminal and CI logs.
"""

from __future__ import annotations

import io

from rich import box
from rich.console import Console
from rich.table import Table

from pbtune.cluster.plan import NodePlan, Plan, quantity


def render_plan(plan: Plan) -> Table:
    """The per-node table for ``pbtune plan``, with a totals row."""
    dup = {p.ip for p in plan.nodes if sum(q.ip == p.ip for q in plan.nodes) > 1}
    gpu = sum(p.gpu_slots for p in plan.nodes)
    table = Table(title="pbtune capacity plan", title_justify="left", box=box.SIMPLE_HEAD)
    for name in ("node", "CPUs", "GPUs", "reserve", "cap CPUs", "cap GPUs", "slots", "workers",
                 "trials", "bound by"):
        table.add_column(name, justify="left" if name == "node" else "right", no_wrap=True)
    table.add_column("note", min_width=24)
    for i, p in enumerate(plan.nodes):
        label = p.ip + (f" ({p.node_id[:8]})" if p.ip in dup else "") + " head" * p.is_head
        table.add_row(label, f"{p.cpus:g}", f"{p.gpus:g}", f"{p.reserve:g}", f"{p.cap_cpus:g}",
                      f"{p.cap_gpus:g}", str(p.slots), _workers(p), str(p.trials_concurrent),
                      p.binding or "", p.reason or "",
                      end_section=i == len(plan.nodes) - 1)
    used = sum(1 for p in plan.nodes if p.slots)
    table.add_row("total", f"{sum(p.cpus for p in plan.nodes):g}",
                  f"{sum(p.gpus for p in plan.nodes):g}", "", "", "", str(plan.total_slots),
                  _kinds(gpu, plan.total_slots - gpu) if plan.workers_per_trial == 1 else
                  str(plan.total_slots * plan.workers_per_trial), str(plan.trials_concurrent), "",
                  f"{used}/{len(plan.nodes)} nodes used")
    return table


def _workers(p: NodePlan) -> str:
    """A node's worker processes: by kind (one per slot), or their count with gangs."""
    if p.ranks == 1:
        return _kinds(p.gpu_slots, p.slots - p.gpu_slots)
    return str(p.processes if p.processes is not None else p.slots * p.ranks)


def _kinds(gpu: int, cpu: int) -> str:
    """``2 GPU + 3 CPU``: how many workers of each kind (empty when none)."""
    return " + ".join(f"{n} {kind}" for n, kind in ((gpu, "GPU"), (cpu, "CPU")) if n)


def shapes_text(plan: Plan) -> str:
    """``4 GPU workers of 0.25 GPUs + 1 CPU, 9 CPU workers of 2 CPUs``: the plan's worker kinds."""
    gpu = sum(w.kind == "gpu" for w in plan.workers)
    cpu = plan.total_slots - gpu
    w = plan.workers_per_trial
    parts = []
    for n, kind, each in (
            (gpu, "GPU", f"{quantity(plan.gpus_per_trial, 'GPU')} + "
                         f"{quantity(plan.cpus_per_trial, 'CPU')}"),
            (cpu, "CPU", quantity(plan.cpus_per_cpu_trial if plan.gpus_per_trial
                                  else plan.cpus_per_trial, "CPU"))):
        if n and w == 1:
            parts.append(f"{n} {kind} worker{'s' * (n != 1)} of {each}")
        elif n:
            parts.append(f"{n} gang{'s' * (n != 1)} of {w} {kind} workers of {each}")
    return ", ".join(parts) or "no workers"


def plan_text(plan: Plan, width: int = 150) -> str:
    """The plan as plain text: the table, one totals line, then the problems (if any)."""
    console = Console(record=True, width=width, file=io.StringIO(), color_system=None)
    console.print(render_plan(plan))
    asked = f" (slots={plan.slots_asked} asked)" if plan.slots_asked is not None else ""
    lines = [line.rstrip() for line in console.export_text().splitlines()]
    w = plan.workers_per_trial
    gangs = f" (gangs of {w} workers: {plan.total_slots * w} worker processes)" if w > 1 else ""
    k = plan.members_per_worker
    gangs += f" ({k} trials per worker, fused: members_per_worker)" if k > 1 else ""
    lines.append(f"{plan.total_slots} worker slots{asked}, {plan.trials_concurrent} concurrent "
                 f"trials{gangs}: {shapes_text(plan)}")
    lines += [f"problem: {problem}" for problem in plan.problems]
    if not plan.can_run():
        lines.append("nothing can run: these trials would stay PENDING forever in Ray")
    return "\n".join(lines) + "\n"
