#!/usr/bin/env bash
# Start a one-machine Slurm cluster (munged + slurmctld + slurmd on this host) for the launcher tests.
#   bash tools/ci/start_slurm.sh [STATE_DIR]        (default STATE_DIR: /tmp/mllm-slurm)
# Needs root and Debian's slurm-wlm + munge. Writes STATE_DIR/slurm.conf and prints it as the last line:
#   export SLURM_CONF=STATE_DIR/slurm.conf
# Idempotent: if the node already answers, nothing is restarted. Stop with tools/ci/stop_slurm.sh STATE_DIR.
# Used by tests/test_launchers.py (when MLLM_CI or MLLM_TEST_SLURM is set); munged is left running.
set -euo pipefail
STATE=${1:-/tmp/mllm-slurm}
PATH=$PATH:/usr/sbin:/sbin  # the daemons
mkdir -p "$STATE/state" "$STATE/spool" "$STATE/log"
CONF=$STATE/slurm.conf
export SLURM_CONF=$CONF
NODE=$(hostname -s)
CPUS=$(nproc)

if [ -f "$CONF" ] && sinfo -h -n "$NODE" -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
  echo "export SLURM_CONF=$CONF"
  exit 0
fi

# munge: the key comes with the Debian package; the daemon refuses root, so run it as the munge user.
if ! munge -n </dev/null >/dev/null 2>&1; then
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  [ -f /etc/munge/munge.key ] || { dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
                                   chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
  su -s /bin/sh munge -c /usr/sbin/munged || /usr/sbin/munged --force
  for _ in $(seq 50); do munge -n </dev/null >/dev/null 2>&1 && break; sleep 0.1; done
  munge -n </dev/null >/dev/null
fi

# No cgroups (containers rarely allow them): linuxproc process tracking, no task plugin, no accounting.
cat >"$CONF" <<EOF
ClusterName=mllm-ci
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
KillWait=5
InactiveLimit=0
MinJobAge=5
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS State=UNKNOWN
PartitionName=ci Nodes=$NODE Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
EOF

bash "$(dirname "$0")/stop_slurm.sh" "$STATE"  # daemons of an earlier start (other config)
slurmctld -f "$CONF" -i
slurmd -f "$CONF" -N "$NODE"
for _ in $(seq 100); do
  if sinfo -h -n "$NODE" -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
    echo "export SLURM_CONF=$CONF"
    exit 0
  fi
  sleep 0.2
done
echo "slurm did not come up; node state: $(sinfo -h -n "$NODE" -o '%t %E' 2>&1)" >&2
tail -n 20 "$STATE/log/slurmctld.log" "$STATE/log/slurmd.log" >&2 || true
exit 1
