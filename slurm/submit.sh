#!/usr/bin/env bash
# Submit one pbtune run: a head job plus worker jobs that start once the head is running.
#
#   slurm/submit.sh [-W N] [-C CPUS] [-G GPUS] [--reserve-cpus CSYS] CONFIG [WORKER_SPEC ...]
#
# -W: workers (processes) per trial, a data-parallel gang; -C/-G: CPUs/GPUs per worker (Cw/Gw);
# --reserve-cpus: CPUs per node left to Ray (Csys). Passed to the head's pbtune plan and run
# (docs/cluster.md#gangs shows the arithmetic: Csys + Tnode*W*Cw <= Cnode, Tnode*W*Gw <= Gnode).
#   slurm/submit.sh -W 2 -C 4 -G 1 bloom.yaml "--cpus-per-task=20 --gpus=8 -p gpu"
#
# Each WORKER_SPEC is a quoted set of sbatch options for one worker node, so nodes may differ:
#   slurm/submit.sh exp.yaml "--cpus-per-task=16" "--cpus-per-task=8 --gpus=1 -p gpu"
# PBTUNE_SLURM_SHARED_DIR defaults to ./.pbtune-shared/<timestamp>; it must be on a shared filesystem.
# Extra options for the head job go in PBTUNE_SLURM_HEAD_SBATCH (e.g. "--cpus-per-task=4").
set -euo pipefail

usage="usage: submit.sh [-W N] [-C CPUS] [-G GPUS] [--reserve-cpus CSYS] CONFIG [WORKER_SBATCH_OPTIONS ...]"
number() {  # a flag's value must be a number (W: a whole one >= 1)
    [[ "$2" =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "submit.sh: $1 needs a number, got '$2'; $usage" >&2; exit 2; }
}
while (( $# )); do
    case "$1" in
        -W|--workers-per-trial)
            [[ "${2:-}" =~ ^[1-9][0-9]*$ ]] || { echo "submit.sh: $1 needs a whole number >= 1, got '${2:-}'; $usage" >&2; exit 2; }
            export PBTUNE_SLURM_WORKERS_PER_TRIAL=$2; shift 2 ;;
        -C|--cpus-per-worker) number "$1" "${2:-}"; export PBTUNE_SLURM_CPUS_PER_WORKER=$2; shift 2 ;;
        -G|--gpus-per-worker) number "$1" "${2:-}"; export PBTUNE_SLURM_GPUS_PER_WORKER=$2; shift 2 ;;
        --reserve-cpus) number "$1" "${2:-}"; export PBTUNE_SLURM_RESERVE_CPUS=$2; shift 2 ;;
        -h|--help) echo "$usage"; exit 0 ;;
        -*) echo "submit.sh: unknown option $1; $usage" >&2; exit 2 ;;
        *) break ;;
    esac
done
CONFIG=${1:?$usage}
shift
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export PBTUNE_SLURM_SHARED_DIR=${PBTUNE_SLURM_SHARED_DIR:-$PWD/.pbtune-shared/$(date +%Y%m%d-%H%M%S)}
export PBTUNE_SLURM_MIN_NODES=${PBTUNE_SLURM_MIN_NODES:-$(($# + 1))}
mkdir -p "$PBTUNE_SLURM_SHARED_DIR"

read -r -a head_opts <<< "${PBTUNE_SLURM_HEAD_SBATCH:-}"
head_job=$(sbatch --parsable --export=ALL ${head_opts[@]+"${head_opts[@]}"} \
    "$HERE/pbtune-head.sbatch" "$CONFIG")
echo "head job $head_job; shared dir $PBTUNE_SLURM_SHARED_DIR"
for spec in "$@"; do
    read -r -a opts <<< "$spec"
    job=$(sbatch --parsable --export=ALL --dependency="after:$head_job" ${opts[@]+"${opts[@]}"} \
        "$HERE/pbtune-worker.sbatch")
    echo "worker job $job ($spec)"
done
