"""The ``pbtune`` command line: parses arguments and calls library functions, nothing more.

Each command lives in its own module with a ``register(subparsers)`` function; the command's
docstring is its help text. Every user mistake surfaces as ``error: <one line>`` on stderr and exit
code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from pbtune import __version__
from pbtune.errors import UserError

#: Command modules, in the order ``pbtune --help`` lists them.
COMMANDS = ("run", "resume", "plan", "workloads", "runs", "report", "replay", "bench")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pbtune", description="Population-Based Training of PyTorch models on Ray."
    )
    parser.add_argument("--version", action="version", version=f"pbtune {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"pbtune.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pbtune`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    # SIGTERM (a batch scheduler's pre-emption, `kill`, `scancel`) stops a run the way Ctrl-C
    # does: running segments end, every trial is checkpointed, and `pbtune resume` continues it.
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return int(args.func(args))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())


def console() -> None:
    """The ``pbtune`` console script: :func:`main`, then an exit that does not wait for what
    nobody needs.

    Why: after a command, the interpreter's own teardown (Ray's exit hook, then freeing torch
    and every module) takes about a second more on a 2-core machine, for nothing the user
    sees. Everything a run writes is closed and synced by then; Ray is stopped here (the local
    instance pbtune started) or disconnected (a cluster it joined), logs are flushed, and only
    then does the process end at once. Any other thread still running: the normal exit.
    """
    from pbtune.cli._common import stop_own_ray

    code = main()
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized() and not stop_own_ray():
        ray.shutdown()  # a joined cluster: this driver disconnects, the cluster goes on
    if any(t.is_alive() and not t.daemon for t in threading.enumerate()
           if t is not threading.main_thread()):
        sys.exit(code)
    import logging

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
