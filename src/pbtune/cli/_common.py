"""Arguments and helpers shared by the commands that take a config."""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from typing import Any


def add_command(sub: Any, name: str, func: Any) -> argparse.ArgumentParser:
    """Add a subcommand whose help is ``func``'s docstring."""
    doc = func.__doc__ or name
    parser = sub.add_parser(name, help=doc.strip().splitlines()[0], description=doc)
    parser.set_defaults(func=func)
    return parser


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """CONFIG plus the override flags every config-taking command accepts."""
    parser.add_argument("config", nargs="?", help="YAML config (default: the quickstart preset)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override a config key (dotted), e.g. --set pbt.burn_in=4")
    parser.add_argument("--workload", help="workload name or path/to/file.py:ClassName")
    parser.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS or local)")
    parser.add_argument("--seed", type=int, help="seed for sampling and PBT decisions")
    parser.add_argument("--engine", choices=("native", "tune"),
                        help="native (default) or tune: Ray Tune's Tuner (docs/engines.md)")


def add_results_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results-dir", default=os.environ.get("PBTUNE_RESULTS_DIR", "results"),
                        help="results root (default ./results or $PBTUNE_RESULTS_DIR)")


def resolved_config(args: argparse.Namespace, extra: list[str] | None = None, *,
                    start_ray: bool = False) -> Any:
    """Load (file < env < --set) and resolve against the workload; raises UserError.

    ``start_ray`` (``pbtune run``): once the config itself is valid, Ray starts (or is joined)
    while the workload's module (torch, for most) is imported in a thread: both take seconds
    and neither needs the other (measured here: 3.8 s together against 4.1-5.0 s in turn). A
    config the workload then rejects is still a one-line error; Ray stops at exit.
    """
    from pbtune.config import load_config, resolve

    overrides = list(args.set or []) + list(extra or [])
    for flag, key in (("workload", "workload"), ("seed", "seed"), ("engine", "engine"),
                      ("address", "resources.address")):
        value = getattr(args, flag, None)
        if value is not None:  # a value, not YAML: a '#' in a path must not start a comment
            overrides.append(f"{key}={json.dumps(value)}")
    cfg = load_config(args.config, overrides)
    if start_ray:
        from pbtune.cluster import connect
        from pbtune.workloads.registry import imports_torch

        importing = threading.Thread(target=_import_quietly, args=(cfg.workload,), daemon=True)
        importing.start()
        # Workers of a torch workload import torch (and the torch._dynamo its optimisers pull
        # in) while they wait for work: ~1 s off the start of each here.
        torch = ("torch", "torch._dynamo") if imports_torch(cfg.workload) else ()
        connect(cfg.resources.address, preload=torch)
        importing.join()
    return resolve(cfg)


def _import_quietly(workload: str) -> None:
    """Import a workload's module ahead of :func:`resolve`, which reports any failure."""
    from pbtune.workloads.registry import get

    try:
        get(workload)
    except BaseException:  # resolve() raises it again, in the main thread, in one line
        pass


def stop_own_ray() -> bool:
    """Stop the local Ray instance this process started (True); a Ray never imported, joined
    or started by the caller is left alone (False)."""
    nodes = sys.modules.get("pbtune.cluster.nodes")  # not imported: pbtune started no Ray
    return nodes is not None and nodes.release()
