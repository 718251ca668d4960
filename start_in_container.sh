#!/usr/bin/env bash
# Per-node start: read this node's rank from MPI / Slurm and hand over to accelerate launch.
#   bash start_in_container.sh mllm/pipeline/finetune.py config/x.py [args...]
# Env: MASTER_ADDR, MASTER_PORT, NNODES, GPUS_PER_NODE (default: all visible GPUs),
#      ACCELERATE_CONFIG (default accelerate_config/ddp.yaml).
set -euo pipefail
NODE_RANK=${PMI_RANK:-${OMPI_COMM_WORLD_RANK:-${SLURM_NODEID:-0}}}
NNODES=${NNODES:-1}
if [ -z "${GPUS_PER_NODE:-}" ]; then
  GPUS_PER_NODE=$(python -c 'import torch; print(max(torch.cuda.device_count(), 1))')
fi
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$HERE"
exec accelerate launch \
  --config_file "${ACCELERATE_CONFIG:-accelerate_config/ddp.yaml}" \
  --num_machines "$NNODES" --machine_rank "$NODE_RANK" \
  --num_processes $((NNODES * GPUS_PER_NODE)) \
  --main_process_ip "${MASTER_ADDR:-127.0.0.1}" --main_process_port "${MASTER_PORT:-29500}" \
  "$@"
