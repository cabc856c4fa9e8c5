# Job backends. run.sh sources this file; every job runs as
#   ${train_cmd} [--gpu N] [--mem 4G] [--num-threads N] [JOB=1:N] LOG COMMAND...
# with one log per job (a header, and an "# Ended (code N)" trailer).
#
# cmd_backend: local (utils/run.pl, the default). The cluster backends
# (slurm, sge) plug in here behind the same interface.
cmd_backend=${cmd_backend:-local}

case "${cmd_backend}" in
  local)
    export train_cmd="utils/run.pl"
    export decode_cmd="utils/run.pl"
    export cuda_cmd="utils/run.pl"
    ;;
  *)
    echo "cmd.sh: unknown cmd_backend '${cmd_backend}' (available: local)" >&2
    return 1 2>/dev/null || exit 1
    ;;
esac
