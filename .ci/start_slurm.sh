#!/usr/bin/env bash
# Start a real single-node Slurm on this machine, for the backend tests.
#
#   .ci/start_slurm.sh        (as root; Debian/Ubuntu; no systemd needed)
#
# Installs Debian's slurm-wlm and munge (apt-get, non-interactive) unless
# already there, writes /etc/slurm/slurm.conf for one node named "localhost"
# with this machine's real CPU count and memory, makes a munge key if none
# exists, starts munged, slurmctld and slurmd as plain daemons and waits until
# sinfo shows the node idle. Re-running it restarts the daemons.
# .ci/stop_slurm.sh stops them again. Everything runs as root: it is a
# throw-away CI node, not a site set-up.
set -euo pipefail

log() { echo "$(date '+%F %T') start_slurm: $*" >&2; }
[ "$(id -u)" -eq 0 ] || { echo "start_slurm: ERROR: run as root (it installs packages and starts daemons)" >&2; exit 1; }

if ! command -v slurmctld > /dev/null || ! command -v munged > /dev/null; then
  log "installing slurm-wlm and munge"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends slurm-wlm munge > /dev/null
fi

# Daemons left over from an earlier start would hold the ports.
bash "$(dirname "$0")/stop_slurm.sh"

# munge: the key authenticates every Slurm message.
if [ ! -s /etc/munge/munge.key ]; then
  log "creating the munge key"
  mkdir -p /etc/munge
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
fi
install -d -o munge -g munge -m 0700 /etc/munge /var/log/munge /var/lib/munge
install -d -o munge -g munge -m 0755 /run/munge
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
runuser -u munge -- /usr/sbin/munged
for _ in $(seq 50); do munge -n > /dev/null 2>&1 && break; sleep 0.1; done
munge -n | unmunge > /dev/null || { echo "start_slurm: ERROR: munged does not answer (see /var/log/munge/munged.log)" >&2; exit 1; }

# slurm.conf: the node as slurmd itself measures it (CPUs, sockets, memory).
hw=$(slurmd -C | head -n 1 | sed 's/^NodeName=[^ ]* //')
cpus=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<< "${hw}")
mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<< "${hw}")
# Memory is a consumable resource; a job asking for none gets this much per
# CPU (not the whole node, which would run one job at a time).
defmem=$(( mem / cpus < 1024 ? mem / cpus : 1024 ))
install -d -m 0755 /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/slurm
cat > /etc/slurm/slurm.conf <<EOF
# Single-node Slurm for CI, written by .ci/start_slurm.sh
ClusterName=ci
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
# No cgroups or systemd here: track processes through /proc, bind no tasks.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=${defmem}
ReturnToService=2
SchedulerType=sched/backfill
# Short test jobs: schedule and forget them quickly.
SchedulerParameters=sched_interval=2
MinJobAge=60
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=localhost NodeAddr=127.0.0.1 ${hw} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
log "node: ${hw}"

slurmctld -i
slurmd -N localhost
for _ in $(seq 60); do
  state=$(sinfo -h -n localhost -o %T 2>/dev/null || true)
  if [ "${state}" = idle ]; then
    log "slurm is up: node localhost idle (${cpus} CPUs, ${mem} MB)"
    exit 0
  fi
  sleep 0.5
done
echo "start_slurm: ERROR: node not idle after 30 s (state: '${state:-none}');" \
     "see /var/log/slurm/slurmctld.log and slurmd.log" >&2
exit 1
