"""``pbtune plan``: the capacity plan per node, before launch."""

from __future__ import annotations

import argparse
from typing import Any

from pbtune.cli._common import add_command, add_config_args, resolved_config


def cmd_plan(args: argparse.Namespace) -> int:
    """Show, per node, the worker slots and concurrent trials the config would get.

    Checks Csys + T·W·Cw <= Cnode and T·W·Gw <= Gnode on every node and says why a request could
    not be placed (it would stay PENDING) and what to change. Exit code 2 when nothing fits.
    """
    from pbtune.cluster import cluster_nodes, connect, plan_for
    from pbtune.reporting.plan_table import plan_text

    cfg = resolved_config(args)
    res = cfg.resources
    print(f"cluster: {connect(res.address)}")
    plan = plan_for(cluster_nodes(), res)
    print(plan_text(plan))
    return 0 if plan.workers else 2


def register(sub: Any) -> None:
    add_config_args(add_command(sub, "plan", cmd_plan))
