"""The shipped SLURM scripts, unmodified, end to end: ``slurm/submit.sh`` submits the head and two
worker jobs through a stand-in ``sbatch`` (``tests/cluster/slurm_standin/sbatch``: each job is a
local process, one "node" each), and the jobs run the **real** ``ray`` and the **real** ``pbtune``:
a three-node Ray cluster on this machine (one node with a logical GPU), token authentication, one
PBT population on a GPU worker and two CPU workers, then every job shuts down.

A bystander Ray instance (another job of the same user on the node) runs throughout and must
survive: scripts that stop Ray with ``ray stop`` would take it down with them.
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STANDIN = Path(__file__).resolve().parent / "slurm_standin"
BIN = Path(sys.executable).parent  # the virtualenv's ray and pbtune
TOY = REPO / "tests" / "engines" / "toy_workload.py"
JOB_TIMEOUT_S = 240

pytestmark = [pytest.mark.ray, pytest.mark.slow]

CONFIG = f"""\
name: slurm-e2e
workload: {TOY}:Counter
population: 4
seed: 1
param_space: {{lr: {{uniform: [0.0, 1.0]}}}}
options: {{sleep: 0.1}}
stop: {{max_iterations: 6, metric_threshold: null}}
pbt: {{perturbation_interval: 2, quantile_fraction: 0.25}}
resources: {{gpus_per_trial: 1, precision: {{gpu: bf16}}}}
"""


def processes_mentioning(text: str) -> list[int]:
    """Pids whose command line contains ``text`` (Ray's processes name their session dir)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                    out.append(int(entry.name))
            except OSError:
                continue
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


@pytest.fixture
def short_tmp():
    """A short directory (Ray's socket paths must stay under 108 bytes); anything still running
    from it afterwards is killed, so a failing test leaves no Ray behind."""
    path = Path(tempfile.mkdtemp(prefix="pbt-slurm-", dir="/tmp"))
    yield path
    for pid in processes_mentioning(str(path)):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    for pidfile in (path / "jobs").glob("job-*.pid"):
        try:
            os.killpg(int(pidfile.read_text()), signal.SIGKILL)
        except (OSError, ValueError):
            pass
    shutil.rmtree(path, ignore_errors=True)


def start_bystander(tmp: Path, env: dict) -> subprocess.Popen:
    log = tmp / "bystander.log"
    proc = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", f"--port={free_port()}", "--num-cpus=0",
         f"--dashboard-agent-listen-port={free_port()}", "--include-dashboard=false",
         "--disable-usage-stats", "--block"],
        env={**env, "RAY_TMPDIR": str(tmp / "bystander"), "RAY_AUTH_MODE": "disabled",
             "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"},
        stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while "Ray runtime started" not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.2)
    return proc


def test_submit_runs_the_real_pbtune_on_a_real_ray_cluster_and_shuts_down(short_tmp):
    tmp = short_tmp
    (tmp / "ray").mkdir()
    (tmp / "cfg.yaml").write_text(CONFIG)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RAY_", "PBTUNE_")) and k != "PYTHONPATH"}
    env.update(PATH=f"{STANDIN}{os.pathsep}{BIN}{os.pathsep}{env['PATH']}",
               FAKE_SLURM=str(tmp / "jobs"), RAY_TMPDIR=str(tmp / "ray"),
               PBTUNE_SLURM_SHARED_DIR=str(tmp / "shared"), PBTUNE_SLURM_POLL_S="0.5",
               PBTUNE_SLURM_HEAD_SBATCH="--cpus-per-task=1")
    bystander = start_bystander(tmp, env)
    try:
        out = subprocess.run(
            ["bash", str(REPO / "slurm" / "submit.sh"), "cfg.yaml", "--cpus-per-task=1",
             "--cpus-per-task=1 --gpus=1"],
            cwd=tmp, env=env, capture_output=True, text=True, timeout=60, check=True).stdout
        assert "head job 1001" in out and "worker job 1003 (--cpus-per-task=1 --gpus=1)" in out
        jobs = tmp / "jobs"
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while not all((jobs / f"job-{i}.rc").exists() for i in (1001, 1002, 1003)):
            assert time.monotonic() < deadline, (jobs / "job-1001.out").read_text()[-3000:]
            time.sleep(0.5)
        head = (jobs / "job-1001.out").read_text()
        codes = {i: (jobs / f"job-{i}.rc").read_text().strip() for i in (1001, 1002, 1003)}
        assert codes == {1001: "0", 1002: "0", 1003: "0"}, head[-3000:]

        # The head: its times, the nodes it waited for, the plan and the run.
        assert "head job 1001 started 20" in head and "head job 1001 finished 20" in head
        assert "3 Ray node(s) up (wanted 3)" in head
        assert "3 worker slots, 3 concurrent trials: 1 GPU worker of 1 GPU + 1 CPU, " \
               "2 CPU workers of 1 CPU" in head
        assert "stopped: max_iterations" in head
        assert "; 2 x cpu:1, 1 x gpu:1/cpu:1" in head  # the status line counts both shapes
        shared = tmp / "shared"
        assert (shared / "ray_auth_mode").read_text().strip() == "token"
        assert (shared / "ray_auth_token").stat().st_mode & 0o777 == 0o600

        (run_dir,) = (tmp / "results" / "slurm-e2e").iterdir()
        with (run_dir / "trials.csv").open() as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == 4 * 6
        assert {r["worker"] for r in rows} == {"0", "1", "2"}  # every node trained
        assert {(r["worker_shape"], r["precision"]) for r in rows} == {
            ("gpu:1/cpu:1", "bf16"), ("cpu:1", "fp32")}

        # Every job's Ray processes are gone; the other job's Ray is untouched.
        deadline = time.monotonic() + 30
        while processes_mentioning(str(tmp / "ray")):
            assert time.monotonic() < deadline, processes_mentioning(str(tmp / "ray"))
            time.sleep(0.5)
        assert bystander.poll() is None, "the scripts stopped a Ray instance they did not start"
    finally:
        bystander.terminate()
        try:
            bystander.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(bystander.pid, signal.SIGKILL)
