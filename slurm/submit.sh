#!/usr/bin/env bash
# Submit one pbtune run: a head job plus worker jobs that start once the head is running.
#
#   slurm/submit.sh CONFIG [WORKER_SPEC ...]
#
# Each WORKER_SPEC is a quoted set of sbatch options for one worker node, so nodes may differ:
#   slurm/submit.sh exp.yaml "--cpus-per-task=16" "--cpus-per-task=8 --gpus=1 -p gpu"
# PBTUNE_SLURM_SHARED_DIR defaults to ./.pbtune-shared/<timestamp>; it must be on a shared filesystem.
# Extra options for the head job go in PBTUNE_SLURM_HEAD_SBATCH (e.g. "--cpus-per-task=4").
set -euo pipefail

CONFIG=${1:?usage: submit.sh CONFIG [WORKER_SBATCH_OPTIONS ...]}
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
