"""Run directories and their provenance: ``<root>/<experiment>/<run-id>/``.

Why: a result without the exact config, package version and code revision that produced it cannot
be reproduced or compared. Every run writes ``config.yaml`` (resolved) and ``meta.json`` before it
trains, so even a crashed run says what it was.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pbtune import __version__
from pbtune.errors import UserError


def git_revision(path: Path | None = None) -> str:
    """The git commit of the source tree (``+dirty`` when modified), or ``"unknown"``."""
    where = path or Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=where, capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{rev}+dirty" if dirty else rev


def create_run_dir(root: str | Path, experiment: str) -> Path:
    """Create a fresh ``<root>/<experiment>/<YYYY-mm-dd_HH-MM-SS>[_N]`` directory.

    Raises:
        UserError: when the results root cannot be created or written.
    """
    base = Path(root).expanduser() / experiment
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    try:
        base.mkdir(parents=True, exist_ok=True)
        for n in range(1000):
            run_dir = base / (stamp if n == 0 else f"{stamp}_{n}")
            try:
                run_dir.mkdir()
                return run_dir
            except FileExistsError:
                continue
    except PermissionError as exc:
        raise UserError(f"results directory {base} is not writable ({exc.strerror}); "
                        "choose another with --results-dir") from exc
    except OSError as exc:
        raise UserError(f"cannot create results directory {base}: {exc.strerror}; "
                        "choose another with --results-dir") from exc
    raise UserError(f"too many runs started this second under {base}")


def package_versions() -> dict[str, str]:
    """Versions of the libraries that decide the numbers."""
    from importlib import metadata

    versions = {"pbtune": __version__, "python": platform.python_version()}
    for name in ("torch", "torchvision", "ray", "numpy"):
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = getattr(module, "__version__", "unknown")
            continue
        try:  # read from the installed package's metadata: importing torch here to ask would
            versions[name] = metadata.version(name)  # cost the driver ~2 s and ~300 MB
        except metadata.PackageNotFoundError:
            continue
    return versions


def write_metadata(run_dir: Path, config_yaml: str, extra: dict[str, Any] | None = None) -> None:
    """Write ``config.yaml`` and ``meta.json`` (version, git revision, host, command line)."""
    (run_dir / "config.yaml").write_text(config_yaml)
    meta = {
        "version": __version__,
        "git_revision": git_revision(),
        "versions": package_versions(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "argv": sys.argv,
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "started_unix": time.time(),
        **(extra or {}),
    }
    (run_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
