# shellcheck shell=bash
# Job backends. run.sh sources this file; every job runs as
#   ${train_cmd} [--gpu N] [--mem 4G] [--num-threads N] [--time T] [JOB=1:N] LOG COMMAND...
# with one log per job (a header, and an "# Ended (code N)" trailer), and the
# call fails naming the logs of failed jobs, whichever backend runs them.
#
# cmd_backend (set it here or in the environment: cmd_backend=slurm bash run.sh):
#   local  utils/run.pl: jobs run on this machine (the default)
#   slurm  utils/slurm.pl: sbatch job arrays; options -> flags in conf/slurm.conf
#   sge    utils/queue.pl: Grid Engine (qsub) arrays; options -> flags in conf/queue.conf
# A site adapts conf/slurm.conf or conf/queue.conf (partitions, memory,
# GPU resources), not these lines.
cmd_backend=${cmd_backend:-local}

case "${cmd_backend}" in
  local)
    export train_cmd="utils/run.pl"
    export decode_cmd="utils/run.pl"
    export cuda_cmd="utils/run.pl"
    ;;
  slurm)
    export train_cmd="utils/slurm.pl"
    export decode_cmd="utils/slurm.pl"
    export cuda_cmd="utils/slurm.pl --gpu 1"
    ;;
  sge)
    export train_cmd="utils/queue.pl"
    export decode_cmd="utils/queue.pl"
    export cuda_cmd="utils/queue.pl --gpu 1"
    ;;
  *)
    echo "cmd.sh: unknown cmd_backend '${cmd_backend}' (available: local, slurm, sge)" >&2
    return 1 2>/dev/null || exit 1
    ;;
esac
