#!/usr/bin/env bash
# Stop the slurmctld / slurmd that tools/ci/start_slurm.sh started (by their pid files), waiting until they exit.
#   bash tools/ci/stop_slurm.sh [STATE_DIR]        (default STATE_DIR: /tmp/mllm-slurm)
set -euo pipefail
STATE=${1:-/tmp/mllm-slurm}
for daemon in slurmctld slurmd; do
  pidfile=$STATE/$daemon.pid
  [ -f "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
done
