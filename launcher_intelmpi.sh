#!/usr/bin/env bash
# Multi-node launch through MPI: mpirun starts one rank per node, each runs start_in_container.sh, which
# execs `accelerate launch` for its node. Works with Open MPI and with Intel MPI / MPICH (Hydra).
#   sbatch --nodes 4 launcher_intelmpi.sh mllm/pipeline/finetune.py config/x.py [args...]     (Slurm)
#   NODELIST=host1,host2 bash launcher_intelmpi.sh mllm/pipeline/finetune.py config/x.py ...  (no Slurm)
# Submit from the repository root (sbatch runs a copy of this file) or set MLLM_ROOT. The node list comes
# from NODELIST, SLURM_JOB_NODELIST, HOSTFILE or this host; the port is checked here, once, and sent to every
# rank with mpirun's environment forwarding. MLLM_LAUNCH_DRY_RUN=1 prints the mpirun command instead.
# Environment variables (MPIRUN, MPIRUN_ARGS, CONTAINER_CMD, ...): README.md, "Multi-node launch" (how it works: docs/launching.md).
#SBATCH --job-name=mllm
#SBATCH --ntasks-per-node=1
#SBATCH --output=slurm-%j.out
set -euo pipefail

for d in "${MLLM_ROOT:-}" "$(dirname "${BASH_SOURCE[0]}")" "${SLURM_SUBMIT_DIR:-}" "$PWD"; do
  [ -n "$d" ] && [ -f "$d/start_in_container.sh" ] && break
done
if [ ! -f "$d/start_in_container.sh" ]; then
  echo "[launcher_intelmpi.sh] error: cannot find start_in_container.sh: set MLLM_ROOT" >&2
  exit 2
fi
LOG_NAME=launcher_intelmpi.sh
source "$d/start_in_container.sh"  # functions only
ROOT=$(find_root)

MPIRUN=${MPIRUN:-mpirun}
command -v "$MPIRUN" >/dev/null 2>&1 \
  || die "no '$MPIRUN' on PATH: load an MPI, set MPIRUN=/path/to/mpirun, or use launcher_srun.sh"
if [ -z "${MPI_FLAVOUR:-}" ]; then
  VERSION=$("$MPIRUN" --version 2>&1 || true)
  case $VERSION in
    *"Open MPI"* | *OpenRTE* | *PRRTE*) MPI_FLAVOUR=openmpi ;;
    *HYDRA* | *"Intel(R) MPI"* | *MPICH*) MPI_FLAVOUR=hydra ;;
    *) die "'$MPIRUN --version' names neither Open MPI nor HYDRA (Intel MPI / MPICH):" \
         "set MPI_FLAVOUR=openmpi or hydra. It said: ${VERSION:0:200}" ;;
  esac
fi

launch_setup
# A host listed more than once (several "nodes" on one machine, for tests): one rank per listed entry.
UNIQUE=$(printf '%s\n' "${NODES[@]}" | sort -u | wc -l)
read -r -a EXTRA <<<"${MPIRUN_ARGS:-}"
read -r -a CONTAINER <<<"${CONTAINER_CMD:-}"
LAUNCH_VARS=(NNODES NODELIST MASTER_ADDR MASTER_PORT MLLM_ROOT)
# Also sent to every rank when set (Intel MPI / MPICH forward the whole environment anyway).
PASS='PATH|LD_LIBRARY_PATH|PYTHONPATH|PYTHON|VIRTUAL_ENV|CONDA_PREFIX|ACCELERATE_CONFIG|NPROC_PER_NODE|GPUS_PER_NODE'
PASS+='|OMP_NUM_THREADS|TOKENIZERS_PARALLELISM|(HF|TRANSFORMERS|NCCL|TORCH|WANDB|MLLM)_[A-Za-z0-9_]*'
PASS_VARS=$(compgen -e | grep -xE "$PASS" | grep -vx MLLM_ROOT || true)

CMD=("$MPIRUN")
case $MPI_FLAVOUR in
  openmpi)
    CMD+=(-np "$NNODES")
    if [ "$UNIQUE" -lt "$NNODES" ]; then CMD+=(--map-by slot); else CMD+=(--map-by ppr:1:node); fi
    CMD+=(--bind-to none)  # each rank starts a whole node's workers: no pinning to one core
    [ "$(id -u)" != 0 ] || CMD+=(--allow-run-as-root)
    [ "$NODES_FROM" = SLURM_JOB_NODELIST ] || CMD+=(--host "$NODELIST")
    for v in "${LAUNCH_VARS[@]}"; do CMD+=(-x "$v=${!v}"); done
    for v in $PASS_VARS; do CMD+=(-x "$v"); done
    ;;
  hydra)
    CMD+=(-n "$NNODES")
    if [ "$UNIQUE" -lt "$NNODES" ]; then
      # host:count for each host, in first-seen order
      CMD+=(-hosts "$(printf '%s\n' "${NODES[@]}" | awk '!n[$1]++ {order[++k] = $1}
        END {for (i = 1; i <= k; i++) printf "%s%s:%d", (i > 1 ? "," : ""), order[i], n[order[i]]}')")
    else
      CMD+=(-ppn 1)
      [ "$NODES_FROM" = SLURM_JOB_NODELIST ] || CMD+=(-hosts "$NODELIST")
    fi
    CMD+=(-genvall)
    for v in "${LAUNCH_VARS[@]}"; do CMD+=(-genv "$v" "${!v}"); done
    ;;
  *) die "MPI_FLAVOUR must be openmpi or hydra, not '$MPI_FLAVOUR'" ;;
esac
CMD+=("${EXTRA[@]}" "${CONTAINER[@]}" bash "$ROOT/start_in_container.sh" "$@")

log "$NNODES node(s) from $NODES_FROM (${NODES[*]}), $MPI_FLAVOUR mpirun '$MPIRUN', master $MASTER_ADDR:$MASTER_PORT"
run_or_print launcher "${CMD[@]}"
