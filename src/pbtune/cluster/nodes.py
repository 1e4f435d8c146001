"""Connecting to Ray and listing its nodes.

Why: every entry point (``pbtune run``, ``pbtune plan``, the engine) goes through :func:`connect`
so that "join a cluster" versus "start a local instance" is decided in one place, and a wrong
address ends in a one-line :class:`~pbtune.errors.UserError` within seconds instead of Ray's
minutes of GCS retries. :func:`cluster_nodes` turns ``ray.nodes()`` into the planner's
:class:`~pbtune.cluster.plan.NodeInfo` rows.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator, Sequence

import ray

from pbtune.cluster.plan import NodeInfo
from pbtune.errors import UserError

PROBE_TIMEOUT_S = 5.0  # seconds to wait for the head's GCS port before giving up
_HEAD_MARKER = "node:__internal_head__"  # resource Ray puts on the head node only
# Ray's built-in resources; everything else on a node is a user's custom resource.
_BUILTIN = frozenset({"CPU", "GPU", "memory", "object_store_memory"})
_BUILTIN_PREFIXES = ("node:", "accelerator_type:")


_OWNED = False  # connect() started the local Ray instance this process uses

def _fix(address: str) -> str:
    return (f"cannot connect to Ray at {address}: {{}}; start the head with ray start --head "
            "or unset RAY_ADDRESS")


def _probe(address: str) -> None:
    """Fail fast when nothing listens at ``host:port`` (Ray itself retries for minutes)."""
    target = address.split("://", 1)[-1]
    if target == "auto":
        return  # Ray looks up the local cluster file itself and fails quickly
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        raise UserError(_fix(address).format("expected host:port, e.g. 10.0.0.1:6379"))
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_TIMEOUT_S):
            pass
    except OSError as exc:
        raise UserError(_fix(address).format(exc.strerror or exc)) from None


def connect(address: str | None, *, num_cpus: int | None = None, num_gpus: int | None = None,
            log_to_driver: bool = True, preload: Sequence[str] = ()) -> str:
    """Join a running cluster, or start a private local instance; returns which it did.

    A no-op (``"already connected"``) if Ray is already initialised. Without an address a
    *private* local instance is started (``address="local"``), never whatever Ray cluster
    happens to run on the machine (another user's job): joining is explicit, by ``--address``
    (``auto`` for the cluster on this machine) or ``$RAY_ADDRESS``.

    Args:
        address: ``host:port`` of the head (or ``auto``/``ray://...``); None falls back to
            ``$RAY_ADDRESS``, and without either a local instance is started.
        num_cpus: CPUs for a *local* instance (default: all of them); ignored when joining,
            where the cluster's ``ray start`` settings decide.
        num_gpus: GPUs for a local instance (default: what Ray detects).
        log_to_driver: forward worker prints to this process (kept on so workload errors show).
        preload: modules a *local* instance's worker processes import as they start, before
            any work (Ray's ``preload_python_modules``): torch for a torch workload, so a
            worker's start overlaps the driver's instead of following it.

    Raises:
        UserError: the address is malformed or nothing Ray-like answers there.
    """
    global _OWNED
    if ray.is_initialized():
        return "already connected"
    address = address or os.environ.get("RAY_ADDRESS") or None
    quiet = {"include_dashboard": False, "log_to_driver": log_to_driver,
             "logging_level": logging.WARNING}
    _auth_mode(local=address is None)
    with _own_sigterm():
        if address is None:
            system = {"preload_python_modules": list(preload)} if preload else None
            ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus,
                     _system_config=system, **quiet)
            _OWNED = True
            return "started a private local Ray instance"
        if address != "auto":
            _probe(address)
        if not address.startswith("ray://"):
            _join_auth(address)
        try:
            ray.init(address=address, log_to_driver=log_to_driver, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise UserError(_fix(address).format(first)) from None
    return f"joined the Ray cluster at {address}"


def release() -> bool:
    """Stop the local Ray instance :func:`connect` started (True), else do nothing (False).

    Why: a command that is about to exit need not leave Ray's shutdown to the interpreter's
    exit, where nothing else can overlap it (``pbtune run`` draws its plots meanwhile). A
    cluster this process joined, or a Ray the caller started, is never stopped here.
    """
    global _OWNED
    if not _OWNED or not ray.is_initialized():
        return False
    # A Ctrl-C half-way through the shutdown left Ray's dashboard and runtime-env agents
    # running (measured: 2 processes, exit 1, SIGINT right after the summary): held until done.
    with _own_sigterm():
        ray.shutdown()
        _OWNED = False
    return True


def _auth_mode(local: bool) -> None:
    """Keep Ray's token-authentication notice out of a private local run.

    Why: Ray 2.60 enables token auth for a new local instance (generating a token) and warns
    about it on every run, a line that means nothing to someone running on their laptop. The
    behaviour is Ray's own; only the notice goes. A user's ``RAY_AUTH_MODE`` is left to Ray.
    Joining a token-authenticated head is documented in docs/cluster.md (``RAY_AUTH_MODE=token``).
    """
    if local and "RAY_AUTH_MODE" not in os.environ:
        logging.getLogger("ray._private.authentication.authentication_token_setup").addFilter(
            _QuietTokenNotice())


def _token_available() -> bool:
    """A Ray auth token is here: ``$RAY_AUTH_TOKEN``, ``$RAY_AUTH_TOKEN_PATH`` or the default."""
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.expanduser("~/.ray/auth_token")
    return bool(os.environ.get("RAY_AUTH_TOKEN")) or os.path.isfile(path)


def _join_auth(address: str) -> None:
    """Use token authentication exactly when the cluster asks for it.

    Why: a head started with ``ray start --head`` where a token file exists runs with token auth,
    but a process joining it does not pick that up unless ``RAY_AUTH_MODE=token`` is exported: Ray
    retries for half a minute and then reports an unrelated connection failure. One GCS call
    (a fraction of a second) tells: if the cluster refuses us for want of a token and a token is
    here, token mode is switched on for this process; if no token is here, a one-line error says
    where to put it. A user's own ``RAY_AUTH_MODE`` is always left alone.
    """
    if "RAY_AUTH_MODE" in os.environ:
        return
    from ray._raylet import GcsClient
    from ray.exceptions import AuthenticationError

    try:
        if address == "auto":
            from ray._private.services import canonicalize_bootstrap_address

            address = canonicalize_bootstrap_address("auto") or ""
            if not address:
                return  # no local cluster: ray.init says so
        with _native_stderr_silenced():  # Ray's C++ client logs the refusal itself
            GcsClient(address=address)
        return
    except AuthenticationError:
        pass
    except Exception:  # anything else: ray.init reports it in its own words
        return
    if not _token_available():
        raise UserError(
            f"the Ray cluster at {address} uses token authentication and no token is here: copy "
            "the head's ~/.ray/auth_token to this machine (or set RAY_AUTH_TOKEN_PATH) and "
            "export RAY_AUTH_MODE=token")
    from ray._private.authentication.authentication_token_setup import _enable_token_auth

    _enable_token_auth()  # RAY_AUTH_MODE=token for this process and the ones it starts


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for the block (native code logs past ``sys.stderr``)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class _QuietTokenNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Token authentication is enabled" not in record.getMessage()


@contextlib.contextmanager
def _own_sigterm() -> Iterator[None]:
    """Keep the process's SIGTERM handler across ``ray.init``, and hold SIGTERM and Ctrl-C
    that arrive during it until it has returned.

    Why: ``ray.init`` installs a handler that exits the driver at once, so a batch scheduler's
    pre-emption (SIGTERM) would skip pbtune's final checkpoint; the CLI's handler stops the run
    as Ctrl-C does, and must stay the one in force. And a signal that interrupts ``ray.init``
    half-way leaves the Ray processes it had started running with nobody to stop them
    (measured: gcs_server, raylet and workers left after a SIGTERM 2 s into ``pbtune run``).
    So while it runs, SIGTERM and SIGINT are only recorded (Ray's own SIGTERM handler is not
    installed); once it has returned, a recorded one is raised as ``KeyboardInterrupt``, and
    the caller stops the Ray it now knows it started.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    import ray._private.utils as ray_utils

    held: list[int] = []
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    ray_set = ray_utils.set_sigterm_handler
    ray_utils.set_sigterm_handler = lambda handler: None  # ours stays in force
    for sig in before:
        signal.signal(sig, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        ray_utils.set_sigterm_handler = ray_set
        for sig, handler in before.items():  # None: set outside Python; the default then
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
    if held:
        raise KeyboardInterrupt


def node_info(raw: dict) -> NodeInfo:
    """One ``ray.nodes()`` entry as a :class:`NodeInfo` (custom resources kept)."""
    res = raw.get("Resources", {}) or {}
    custom = {k: float(v) for k, v in res.items()
              if k not in _BUILTIN and not k.startswith(_BUILTIN_PREFIXES)}
    return NodeInfo(node_id=raw["NodeID"], ip=raw["NodeManagerAddress"],
                    cpus=float(res.get("CPU", 0.0)), gpus=float(res.get("GPU", 0.0)),
                    custom=custom, alive=bool(raw.get("Alive", False)),
                    is_head=_HEAD_MARKER in res)


def cluster_nodes() -> list[NodeInfo]:
    """The alive nodes of the connected cluster, head first, then by IP (call connect first)."""
    nodes = [node_info(raw) for raw in ray.nodes() if raw.get("Alive")]
    return sorted(nodes, key=lambda n: (not n.is_head, n.ip, n.node_id))
