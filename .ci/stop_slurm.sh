#!/usr/bin/env bash
# Stop the Slurm daemons .ci/start_slurm.sh started (slurmd, slurmctld, munged),
# by the pids in their pid files; does nothing for those not running.
set -uo pipefail

stop_pidfile() {
  local name=$1 pidfile=$2 pid
  [ -s "${pidfile}" ] || return 0
  pid=$(cat "${pidfile}")
  if kill -0 "${pid}" 2> /dev/null; then
    kill "${pid}"
    for _ in $(seq 50); do kill -0 "${pid}" 2> /dev/null || break; sleep 0.1; done
    if kill -0 "${pid}" 2> /dev/null; then
      echo "stop_slurm: ${name} (pid ${pid}) still running after 5 s; killing it" >&2
      kill -9 "${pid}" 2> /dev/null
    fi
  fi
  rm -f "${pidfile}"
}

stop_pidfile slurmd /run/slurm/slurmd.pid
stop_pidfile slurmctld /run/slurm/slurmctld.pid
stop_pidfile munged /run/munge/munged.pid
exit 0
