#!/usr/bin/env bash
# Multi-node launch without MPI: srun starts one task per node of the Slurm allocation, each runs
# start_in_container.sh (rank from SLURM_PROCID), which execs `accelerate launch` for its node.
#   sbatch --nodes 4 launcher_srun.sh mllm/pipeline/finetune.py config/x.py [args...]
#   salloc --nodes 4 bash launcher_srun.sh mllm/pipeline/finetune.py config/x.py [args...]
# Submit from the repository root (sbatch runs a copy of this file) or set MLLM_ROOT. The port is checked
# here, once, and reaches every task through srun's environment (--export=ALL). A task that fails ends the
# others (--kill-on-bad-exit). MLLM_LAUNCH_DRY_RUN=1 prints the srun command instead.
# Environment variables (SRUN, SRUN_ARGS, CONTAINER_CMD, ...): README.md, "Multi-node launch" (how it works: docs/launching.md).
#SBATCH --job-name=mllm
#SBATCH --ntasks-per-node=1
#SBATCH --output=slurm-%j.out
set -euo pipefail

for d in "${MLLM_ROOT:-}" "$(dirname "${BASH_SOURCE[0]}")" "${SLURM_SUBMIT_DIR:-}" "$PWD"; do
  [ -n "$d" ] && [ -f "$d/start_in_container.sh" ] && break
done
if [ ! -f "$d/start_in_container.sh" ]; then
  echo "[launcher_srun.sh] error: cannot find start_in_container.sh: set MLLM_ROOT" >&2
  exit 2
fi
LOG_NAME=launcher_srun.sh
source "$d/start_in_container.sh"  # functions only
ROOT=$(find_root)

if [ -z "${SLURM_JOB_ID:-}" ] || [ -z "${SLURM_JOB_NODELIST:-}" ]; then
  die "not inside a Slurm allocation: sbatch --nodes N launcher_srun.sh ... (or salloc)"
fi
if [ -n "${NODELIST:-}" ]; then
  log "NODELIST is ignored: srun runs on the allocation ($SLURM_JOB_NODELIST)"
  unset NODELIST
fi
unset HOSTFILE
launch_setup
SRUN=${SRUN:-srun}
read -r -a EXTRA <<<"${SRUN_ARGS:-}"
read -r -a CONTAINER <<<"${CONTAINER_CMD:-}"
# srun does not inherit sbatch's --cpus-per-task: give each node's task the CPUs the job has there.
CPUS=${SLURM_CPUS_PER_TASK:-${SLURM_CPUS_ON_NODE:-}}

CMD=("$SRUN" --nodes="$NNODES" --ntasks="$NNODES" --ntasks-per-node=1 ${CPUS:+--cpus-per-task="$CPUS"}
  --kill-on-bad-exit=1 --export=ALL "${EXTRA[@]}" "${CONTAINER[@]}" bash "$ROOT/start_in_container.sh" "$@")

log "$NNODES node(s) from $NODES_FROM (${NODES[*]}), srun, master $MASTER_ADDR:$MASTER_PORT"
run_or_print launcher "${CMD[@]}"
