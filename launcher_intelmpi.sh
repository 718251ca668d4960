#!/usr/bin/env bash
# Multi-node launch: sbatch -> mpirun (one rank per node) -> start_in_container.sh -> accelerate launch.
#   sbatch --nodes 4 launcher_intelmpi.sh mllm/pipeline/finetune.py config/x.py [args...]
# Nothing here names a cluster path: set GPUS_PER_NODE / MASTER_PORT / CONTAINER_CMD in the environment.
#SBATCH --job-name=mllm
#SBATCH --ntasks-per-node=1
#SBATCH --output=slurm-%j.out
set -euo pipefail
NNODES=${SLURM_JOB_NUM_NODES:-${NNODES:-1}}
MASTER_ADDR=${MASTER_ADDR:-$(scontrol show hostnames "${SLURM_JOB_NODELIST:-$(hostname)}" 2>/dev/null | head -n 1 || hostname)}
export MASTER_ADDR MASTER_PORT=${MASTER_PORT:-29500} NNODES
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
exec mpirun -np "$NNODES" -ppn 1 ${CONTAINER_CMD:-} bash "$HERE/start_in_container.sh" "$@"
