"""The SLURM scripts: syntax, and the head/worker handshake with stand-ins for ray and pbtune."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

SLURM = Path(__file__).resolve().parents[2] / "slurm"
SCRIPTS = sorted(SLURM.iterdir())

# `ray start ... --block` says it started, as Ray does, then runs until TERM (the scripts stop
# their own Ray that way, never with `ray stop`); calls are logged.
FAKE_RAY = """#!/usr/bin/env bash
echo "ray $*" >> "$FAKE_LOG"
case "$1" in
  start) if [[ " $* " == *" --block "* ]]; then
           echo "Ray runtime started."
           trap 'echo "ray stopped by TERM" >> "$FAKE_LOG"; exit 0' TERM
           sleep 30 & wait
         fi ;;
esac
"""
FAKE_PBTUNE = """#!/usr/bin/env bash
echo "pbtune $*" >> "$FAKE_LOG"
[[ "$1" != run ]] || cp "$PBTUNE_SLURM_SHARED_DIR/ray_head_address" "$FAKE_LOG.addr_during_run"
"""


def test_scripts_exist_and_parse():
    names = {p.name for p in SCRIPTS}
    assert {"pbtune-head.sbatch", "pbtune-worker.sbatch", "submit.sh"} <= names
    for script in SCRIPTS:
        subprocess.run(["bash", "-n", str(script)], check=True)
    head = (SLURM / "pbtune-head.sbatch").read_text()
    for var in ("PBTUNE_PARAM_SPACE__LR", "PBTUNE_PBT__HYPERPARAM_MUTATIONS__BATCH_SIZE",
                "PBTUNE_PBT__HYPERPARAM_MUTATIONS__WEIGHT_DECAY"):
        assert f"# export {var}=" in head


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_scripts_are_shellcheck_clean():
    subprocess.run(["shellcheck", "-s", "bash", *map(str, SCRIPTS)], check=True)


@pytest.fixture
def fake_env(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("ray", FAKE_RAY), ("pbtune", FAKE_PBTUNE)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
               FAKE_LOG=str(tmp_path / "log"), PBTUNE_SLURM_SHARED_DIR=str(tmp_path / "shared"),
               PBTUNE_SLURM_POLL_S="0.2", PBTUNE_SLURM_HEAD_IP="10.1.2.3", SLURM_CPUS_PER_TASK="3")
    return tmp_path, env


def test_head_publishes_address_runs_and_signals_shutdown(fake_env):
    tmp, env = fake_env
    subprocess.run(["bash", str(SLURM / "pbtune-head.sbatch"), "cfg.yaml", "--seed", "3"],
                   env=env, check=True, timeout=30, capture_output=True)
    log = (tmp / "log").read_text().splitlines()
    addr = (tmp / "log.addr_during_run").read_text().strip()
    host, port = addr.split(":")
    assert host == "10.1.2.3" and 0 < int(port) < 65536
    assert log[0].startswith(f"ray start --head --node-ip-address=10.1.2.3 --port={port} "
                             "--num-cpus=3 --num-gpus=0 --dashboard-agent-listen-port=")
    assert f"pbtune run cfg.yaml --address {addr} --seed 3" in log
    assert log[-1] == "ray stopped by TERM"  # its own Ray, not `ray stop` (every Ray of the user)
    shared = tmp / "shared"
    assert (shared / "ray_shutdown").read_text().strip() == addr
    assert not (shared / "ray_head_address").exists()


def test_worker_joins_and_leaves_only_on_its_heads_marker(fake_env):
    tmp, env = fake_env
    shared = tmp / "shared"
    shared.mkdir()
    (shared / "ray_shutdown").write_text("10.9.9.9:1\n")  # stale marker from an earlier run
    env["PBTUNE_SLURM_RAY_RESOURCES"] = '{"fast": 1}'
    proc = subprocess.Popen(["bash", str(SLURM / "pbtune-worker.sbatch")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        time.sleep(0.5)
        (shared / "ray_head_address").write_text("10.1.2.3:6380\n")
        time.sleep(1.5)  # several polls of the shared directory
        assert proc.poll() is None, "worker left on a stale shutdown marker"
        (shared / "ray_shutdown").write_text("10.1.2.3:6380\n")
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    log = (tmp / "log").read_text().splitlines()
    assert re.fullmatch(r'ray start --address=10\.1\.2\.3:6380 --num-cpus=3 --num-gpus=0 '
                        r'--disable-usage-stats --dashboard-agent-listen-port=\d+ '
                        r'--resources=\{"fast": 1\} --block', log[0])
    assert log[-1] == "ray stopped by TERM"


# A `pbtune run` that trains until it is stopped: on TERM it checkpoints and exits 130, as the
# real one does (tests/engines/test_resume.py checks that on the real pbtune).
FAKE_LONG_PBTUNE = """#!/usr/bin/env bash
echo "pbtune $*" >> "$FAKE_LOG"
if [[ "$1" == run ]]; then
  trap 'echo "pbtune checkpointed on TERM" >> "$FAKE_LOG"; exit 130' TERM
  while true; do sleep 0.05; done
fi
"""


def test_shutdown_txt_stops_the_run_cleanly_and_the_head_logs_its_times(fake_env):
    """Issue 15: the original signals a stop with a file in the shared directory; the head log
    carries the job's start and finish times."""
    tmp, env = fake_env
    (tmp / "bin" / "pbtune").write_text(FAKE_LONG_PBTUNE)
    shared = tmp / "shared"
    proc = subprocess.Popen(["bash", str(SLURM / "pbtune-head.sbatch"), "cfg.yaml"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 20
        while "pbtune run" not in (tmp / "log").read_text() if (tmp / "log").exists() else True:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
        time.sleep(0.5)
        assert proc.poll() is None  # still training
        (shared / "shutdown.txt").write_text("stop\n")
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    log = (tmp / "log").read_text().splitlines()
    assert "pbtune checkpointed on TERM" in log and log[-1] == "ray stopped by TERM"
    assert "shutdown.txt found" in out
    assert "head job local started 20" in out and "head job local finished 20" in out
    assert (shared / "ray_shutdown").exists()  # the workers are told to leave too


def test_a_worker_whose_ray_cannot_start_fails_its_job(fake_env):
    """A node whose `ray start` fails (a port taken, the head gone) must not end its job with
    status 0 as if it had served the run: SLURM's accounting would hide the lost node."""
    tmp, env = fake_env
    (tmp / "bin" / "ray").write_text('#!/usr/bin/env bash\necho "raylet failed" >&2\nexit 3\n')
    shared = tmp / "shared"
    shared.mkdir()
    (shared / "ray_head_address").write_text("10.1.2.3:6380\n")
    proc = subprocess.run(["bash", str(SLURM / "pbtune-worker.sbatch")], env=env, timeout=30,
                          capture_output=True, text=True)
    assert proc.returncode == 3
    assert "raylet failed" in proc.stderr and "ended with status 3" in proc.stderr


def test_head_passes_gang_sizes_to_plan_and_run(fake_env):
    """Issue 20: W/Cw/Gw/Csys reach `pbtune plan` and `pbtune run` as config overrides."""
    tmp, env = fake_env
    env.update(PBTUNE_SLURM_WORKERS_PER_TRIAL="2", PBTUNE_SLURM_CPUS_PER_WORKER="4",
               PBTUNE_SLURM_GPUS_PER_WORKER="1", PBTUNE_SLURM_RESERVE_CPUS="1")
    subprocess.run(["bash", str(SLURM / "pbtune-head.sbatch"), "cfg.yaml", "--seed", "3"],
                   env=env, check=True, timeout=30, capture_output=True)
    log = (tmp / "log").read_text().splitlines()
    sets = ("--set resources.workers_per_trial=2 --set resources.cpus_per_worker=4 "
            "--set resources.gpus_per_worker=1 --set resources.reserve_cpus=1")
    addr = (tmp / "log.addr_during_run").read_text().strip()
    assert f"pbtune plan cfg.yaml --address {addr} {sets}" in log
    assert f"pbtune run cfg.yaml --address {addr} {sets} --seed 3" in log


FAKE_SBATCH = """#!/usr/bin/env bash
echo "sbatch W=${PBTUNE_SLURM_WORKERS_PER_TRIAL:-} C=${PBTUNE_SLURM_CPUS_PER_WORKER:-} \
G=${PBTUNE_SLURM_GPUS_PER_WORKER:-} $*" >> "$FAKE_LOG"
echo 42
"""


@pytest.mark.parametrize(("flags", "code", "logged"), [
    (["-W", "2", "-C", "4", "-G", "1"], 0, "sbatch W=2 C=4 G=1 --parsable"),
    (["--workers-per-trial", "3"], 0, "sbatch W=3 C= G= --parsable"),
    (["-W", "0"], 2, None), (["-W", "two"], 2, None), (["-C", "-1"], 2, None),
    (["--gpus", "1"], 2, None),
])
def test_submit_takes_gang_sizes_and_refuses_bad_ones(fake_env, flags, code, logged):
    tmp, env = fake_env
    (tmp / "bin" / "sbatch").write_text(FAKE_SBATCH)
    (tmp / "bin" / "sbatch").chmod(0o755)
    out = subprocess.run(["bash", str(SLURM / "submit.sh"), *flags, "cfg.yaml",
                          "--cpus-per-task=2"], env=env, timeout=30, capture_output=True,
                         text=True)
    assert out.returncode == code, out.stderr
    if logged is None:
        assert len(out.stderr.strip().splitlines()) == 1 and "usage" in out.stderr
        assert not (tmp / "log").exists()  # nothing submitted
    else:
        log = (tmp / "log").read_text().splitlines()
        assert log[0].startswith(logged) and log[0].endswith("pbtune-head.sbatch cfg.yaml")
        assert len(log) == 2 and "--cpus-per-task=2" in log[1]
