#!/usr/bin/env bash
# Per-node start: find this node's rank and the node count, then exec `accelerate launch` for this node.
#   bash start_in_container.sh mllm/pipeline/finetune.py config/x.py [args...]
# Run once per node, normally by launcher_intelmpi.sh (mpirun) or launcher_srun.sh (srun); by hand:
#   NODELIST=a,b bash start_in_container.sh ...    (on a and on b: the rank is the host's place in the list)
# The rank comes from, in this order: NODE_RANK (+NNODES), OpenMPI (OMPI_COMM_WORLD_RANK/SIZE),
# Intel MPI / MPICH (PMI_RANK/SIZE), a Slurm step (SLURM_PROCID/SLURM_NTASKS), this host's place in
# NODELIST / SLURM_JOB_NODELIST, or a single node. Every argument goes to accelerate untouched.
# MLLM_LAUNCH_DRY_RUN=1 (or =node) prints the command (shell-quoted, after "mllm-launch-exec:") instead of running it.
# The launchers source this file for its functions (it returns before the per-node part then).
# Environment variables: README.md, "Multi-node launch" (how it works: docs/launching.md).
set -euo pipefail

LOG_NAME=${LOG_NAME:-start_in_container.sh}
log() { printf '[%s] %s\n' "$LOG_NAME" "$*" >&2; }
die() { log "error: $*"; exit 2; }

# Slurm host list -> one host a line: "a,b[01-03],rack[1-2]-n[1-2]" (also space separated). Pure bash, so
# it works inside a container without scontrol.
expand_hostlist() {
  local list=$1 cur='' depth=0 c i
  list=${list//[$' \t\n']/,}
  for ((i = 0; i < ${#list}; i++)); do
    c=${list:i:1}
    case $c in
      '[') depth=$((depth + 1)) ;;
      ']') depth=$((depth - 1)) ;;
    esac
    if [ "$c" = , ] && [ "$depth" -eq 0 ]; then
      [ -z "$cur" ] || expand_host "$cur"
      cur=''
    else
      cur+=$c
    fi
  done
  [ -z "$cur" ] || expand_host "$cur"
}
expand_host() {  # one pattern, any number of [..] groups
  local h=$1
  if [[ $h != *'['* ]]; then printf '%s\n' "$h"; return; fi
  local pre=${h%%'['*} rest=${h#*'['}
  local range=${rest%%']'*} post=${rest#*']'} part a b n
  local -a parts
  IFS=, read -r -a parts <<<"$range"
  for part in "${parts[@]}"; do
    if [[ $part =~ ^([0-9]+)-([0-9]+)$ ]]; then
      a=${BASH_REMATCH[1]} b=${BASH_REMATCH[2]}
      for ((n = 10#$a; n <= 10#$b; n++)); do expand_host "$pre$(printf '%0*d' "${#a}" "$n")$post"; done
    else
      expand_host "$pre$part$post"
    fi
  done
}

# The repository: MLLM_ROOT, this file's folder, or (sbatch runs a copy of the batch script) the submit dir / cwd.
find_root() {
  local d
  if [ -n "${MLLM_ROOT:-}" ]; then
    [ -f "$MLLM_ROOT/start_in_container.sh" ] || die "MLLM_ROOT=$MLLM_ROOT has no start_in_container.sh"
    (cd "$MLLM_ROOT" && pwd)
    return
  fi
  for d in "$(dirname "${BASH_SOURCE[0]}")" "${SLURM_SUBMIT_DIR:-}" "$PWD"; do
    if [ -n "$d" ] && [ -f "$d/start_in_container.sh" ] && [ -d "$d/mllm" ]; then (cd "$d" && pwd); return; fi
  done
  die "cannot find the repository (a folder with start_in_container.sh and mllm/): set MLLM_ROOT"
}

# True when $1 names this machine (a name, its short form, one of its addresses, or loopback).
is_this_host() {
  local names
  case $1 in localhost | 127.* | ::1) return 0 ;; esac
  names=" $(hostname) $(hostname -s 2>/dev/null || true) $(hostname -f 2>/dev/null || true)"
  names+=" $(hostname -I 2>/dev/null || true) "
  [[ $names == *" $1 "* || $names == *" ${1%%.*} "* ]]
}

# True when TCP port $1 can be bound on this machine (the check torch's rendezvous store needs to pass).
port_is_free() {
  if command -v "${PYTHON:-python3}" >/dev/null 2>&1; then
    "${PYTHON:-python3}" -c '
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("", int(sys.argv[1])))
except OSError:
    sys.exit(1)' "$1"
  elif (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then  # no python: at least nothing may listen on it
    return 1
  fi
}

# For the launchers (they run once, before mpirun / srun): the node list, NNODES, MASTER_ADDR and a free
# MASTER_PORT, exported for every node. Sets NODES (array) and NODES_FROM.
launch_setup() {
  if [ -n "${NODELIST:-}" ]; then
    mapfile -t NODES < <(expand_hostlist "$NODELIST"); NODES_FROM=NODELIST
  elif [ -n "${SLURM_JOB_NODELIST:-}" ]; then
    mapfile -t NODES < <(expand_hostlist "$SLURM_JOB_NODELIST"); NODES_FROM=SLURM_JOB_NODELIST
  elif [ -n "${HOSTFILE:-}" ]; then
    mapfile -t NODES < <(awk '!/^[[:space:]]*(#|$)/ && !seen[$1]++ {print $1}' "$HOSTFILE"); NODES_FROM=HOSTFILE
  else
    NODES=("$(hostname)"); NODES_FROM=hostname
  fi
  [ "${#NODES[@]}" -gt 0 ] || die "the node list ($NODES_FROM) is empty"
  if [ -n "${NNODES:-}" ] && [ "$NNODES" != "${#NODES[@]}" ]; then
    die "NNODES=$NNODES, but $NODES_FROM lists ${#NODES[@]} node(s): ${NODES[*]}"
  fi
  NNODES=${#NODES[@]}
  NODELIST=$(IFS=,; echo "${NODES[*]}")
  MASTER_ADDR=${MASTER_ADDR:-${NODES[0]}}
  local port=${MASTER_PORT:-29500} tries=0
  if is_this_host "$MASTER_ADDR"; then
    # The same start port on every run and the first free one after it: deterministic, and the chosen
    # port reaches every node through the environment mpirun / srun forward.
    while ! port_is_free "$port"; do
      tries=$((tries + 1))
      [ "$tries" -le 200 ] || die "no free port in ${MASTER_PORT:-29500}..$port on $MASTER_ADDR: set MASTER_PORT"
      port=$((port + 1))
    done
    [ "$tries" = 0 ] || log "port ${MASTER_PORT:-29500} is in use on $MASTER_ADDR: using $port"
  else
    log "the master $MASTER_ADDR is another machine: port $port not checked"
  fi
  MASTER_PORT=$port
  export NNODES NODELIST MASTER_ADDR MASTER_PORT MLLM_ROOT=$ROOT
}

# Exec the command, or print it (shell-quoted) when MLLM_LAUNCH_DRY_RUN asks: 1 in every script, "node" only
# on the nodes (the launcher runs mpirun / srun for real, each node prints its accelerate command).
run_or_print() {
  local level=$1
  shift
  if [ "${MLLM_LAUNCH_DRY_RUN:-0}" = 1 ] || [ "${MLLM_LAUNCH_DRY_RUN:-0}" = "$level" ]; then
    # one write for the whole line: the ranks of a dry mpirun print at the same time, and separate writes
    # interleave between them
    local line
    line=$(printf ' %q' "$@")
    printf 'mllm-launch-exec:%s\n' "$line"
    exit 0
  fi
  exec "$@"
}

if [[ ${BASH_SOURCE[0]} != "$0" ]]; then return 0; fi  # sourced by a launcher: functions only

# ---------------------------------------------------------------- per node
ROOT=$(find_root)
NODES=()
if [ -n "${NODELIST:-}" ]; then
  mapfile -t NODES < <(expand_hostlist "$NODELIST")
elif [ -n "${SLURM_JOB_NODELIST:-}" ]; then
  mapfile -t NODES < <(expand_hostlist "$SLURM_JOB_NODELIST")
fi

# This host's place in the node list: -1 when absent, -2 when listed more than once (one host, several "nodes").
host_index() {
  local found=-1 i
  for i in "${!NODES[@]}"; do
    if is_this_host "${NODES[i]}"; then
      [ "$found" -lt 0 ] || { echo -2; return; }
      found=$i
    fi
  done
  echo "$found"
}

# --- this node's rank and the number of nodes ---
if [ -n "${NODE_RANK:-}" ]; then
  RANK=$NODE_RANK SIZE=${NNODES:-${#NODES[@]}} FROM=NODE_RANK
elif [ -n "${OMPI_COMM_WORLD_RANK:-}" ]; then
  RANK=$OMPI_COMM_WORLD_RANK SIZE=${OMPI_COMM_WORLD_SIZE:-} FROM=OMPI_COMM_WORLD_RANK
elif [ -n "${PMI_RANK:-}" ]; then
  RANK=$PMI_RANK SIZE=${PMI_SIZE:-} FROM=PMI_RANK
elif [ -n "${SLURM_STEP_ID:-}" ] && [ -n "${SLURM_PROCID:-}" ]; then
  RANK=$SLURM_PROCID SIZE=${SLURM_STEP_NUM_TASKS:-${SLURM_NTASKS:-}} FROM=SLURM_PROCID
  [ "$SIZE" = "${SLURM_STEP_NUM_NODES:-$SIZE}" ] \
    || die "this Slurm step runs $SIZE tasks on $SLURM_STEP_NUM_NODES nodes: run one task per node" \
           "(srun --ntasks-per-node=1)"
elif [ "${#NODES[@]}" -gt 1 ]; then
  RANK=$(host_index) SIZE=${#NODES[@]} FROM="host index in the node list"
  [ "$RANK" != -2 ] || die "$(hostname) is in the node list (${NODES[*]}) more than once: set NODE_RANK" \
                           "or start with mpirun / srun"
  [ "$RANK" != -1 ] || die "$(hostname) is not in the node list (${NODES[*]}): set NODE_RANK or start with" \
                           "mpirun / srun"
elif [ "${SLURM_NNODES:-1}" -gt 1 ]; then
  die "a $SLURM_NNODES-node Slurm job but no per-node step: use launcher_srun.sh or srun --ntasks-per-node=1"
else
  RANK=0 SIZE=1 FROM="single node"
fi
[[ $RANK =~ ^[0-9]+$ && $SIZE =~ ^[0-9]+$ ]] || die "bad node rank '$RANK' / node count '$SIZE' (from $FROM)"
[ "$RANK" -lt "$SIZE" ] || die "node rank $RANK is not below the node count $SIZE (from $FROM)"
[ -z "${NNODES:-}" ] || [ "$NNODES" = "$SIZE" ] || die "NNODES=$NNODES, but $FROM says $SIZE nodes"
[ "${#NODES[@]}" = 0 ] || [ "${#NODES[@]}" = "$SIZE" ] \
  || die "the node list has ${#NODES[@]} hosts (${NODES[*]}), but $FROM says $SIZE nodes"

if [ -z "${MASTER_ADDR:-}" ] && [ -z "${NODES[0]:-}" ] && [ "$SIZE" -gt 1 ]; then
  log "warning: $SIZE nodes, but neither MASTER_ADDR nor a node list: every node looks for the master on 127.0.0.1"
fi
MASTER_ADDR=${MASTER_ADDR:-${NODES[0]:-127.0.0.1}}
MASTER_PORT=${MASTER_PORT:-29500}
# Node rank 0 hosts the rendezvous on MASTER_ADDR, the first listed node: check the MPI / Slurm placement
# (a rank placed elsewhere would wait for a master that never comes).
if [ "${#NODES[@]}" -gt 1 ] && [ "$MASTER_ADDR" = "${NODES[0]}" ] && [ "$FROM" != "host index in the node list" ]; then
  INDEX=$(host_index)
  [ "$INDEX" -lt 0 ] || [ "$INDEX" = "$RANK" ] \
    || die "$FROM=$RANK runs on $(hostname), node $INDEX of the node list (${NODES[*]}): start the ranks in" \
           "node-list order or set MASTER_ADDR"
fi

# --- processes on this node: one per GPU, or NPROC_PER_NODE (default 1) CPU processes ---
count_gpus() {
  if [ -n "${GPUS_PER_NODE:-}" ]; then echo "$GPUS_PER_NODE"; return; fi
  if [ -n "${CUDA_VISIBLE_DEVICES+x}" ]; then  # set: its entries up to the first "" or "-1" (CUDA's rule)
    local n=0 id
    local -a ids
    IFS=, read -r -a ids <<<"$CUDA_VISIBLE_DEVICES"
    for id in "${ids[@]}"; do
      if [ -z "$id" ] || [ "$id" = -1 ]; then break; fi
      n=$((n + 1))
    done
    echo "$n"
    return
  fi
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    nvidia-smi -L | grep -c '^GPU ' || true
    return
  fi
  "${PYTHON:-python3}" -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null || echo 0
}
GPUS=$(count_gpus)
[[ $GPUS =~ ^[0-9]+$ ]] || die "cannot read the GPU count ('$GPUS'): set GPUS_PER_NODE"
if [ "$GPUS" -gt 0 ]; then
  DEVICE=GPU NPROC=${NPROC_PER_NODE:-$GPUS}
  CONFIG=${ACCELERATE_CONFIG:-accelerate_config/ddp.yaml}
else
  # cpu.yaml (MULTI_GPU + use_cpu) starts NPROC gloo processes; accelerate's --cpu flag would start one.
  DEVICE=CPU NPROC=${NPROC_PER_NODE:-1}
  CONFIG=${ACCELERATE_CONFIG:-accelerate_config/cpu.yaml}
fi
[[ $NPROC =~ ^[1-9][0-9]*$ ]] || die "NPROC_PER_NODE must be a positive number, not '$NPROC'"

if command -v accelerate >/dev/null 2>&1; then
  ACCELERATE=(accelerate launch)
else
  ACCELERATE=("${PYTHON:-python3}" -m accelerate.commands.launch)
fi
log "node rank $RANK of $SIZE (from $FROM) on $(hostname): $NPROC $DEVICE process(es)," \
    "master $MASTER_ADDR:$MASTER_PORT${NODES[*]:+, nodes ${NODES[*]}}"
cd "$ROOT"
run_or_print node "${ACCELERATE[@]}" \
  --config_file "$CONFIG" \
  --num_machines "$SIZE" --machine_rank "$RANK" \
  --num_processes $((SIZE * NPROC)) \
  --main_process_ip "$MASTER_ADDR" --main_process_port "$MASTER_PORT" \
  "$@"
