#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Stop the private SLURM cluster started by slurm/up.sh.
#
#   bash slurm/down.sh [--keep]
#
# Cancels all jobs first (so no job outlives the cluster as an orphan), then
# stops slurmd, slurmctld, slurmdbd, mariadbd and munged by their recorded
# PIDs, waits for them to exit, and removes $HARNESS_SLURM_DIR unless --keep
# (keep it to read the logs in $HARNESS_SLURM_DIR/log).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
. "$HERE/lib.sh"

KEEP=0
for arg in "$@"; do
  case "$arg" in
    --keep) KEEP=1 ;;
    *) other_arg "$arg" ;;
  esac
done

T0=$SECONDS
take_lock

if [[ ! -d "$SD" ]]; then
  log "no cluster state in $SD, nothing to do"
  exit 0
fi

# Only worth trying while slurmctld is ours and alive; otherwise the client
# commands would just time out.
ctld_pid="$(cat "$PID_DIR/slurmctld.pid" 2>/dev/null || true)"
if is_ours "$ctld_pid"; then
  jobs_left="$(sl timeout 10 squeue -h -o %A 2>/dev/null || true)"
  if [[ -n "$jobs_left" ]]; then
    log "cancelling jobs: $(tr '\n' ' ' <<<"$jobs_left")"
    # shellcheck disable=SC2086  # one argument per job id
    sl timeout 10 scancel $jobs_left 2>/dev/null || true
    # Give the jobs KillWait (5 s) plus slack to end; stragglers are killed
    # with the slurmstepds below.
    for ((i = 0; i < 100; i++)); do
      [[ -z "$(sl timeout 10 squeue -h -o %A 2>/dev/null || true)" ]] && break
      sleep 0.1
    done
  fi
fi

rc=0
stop_all || rc=1

if ((rc)); then
  log "some processes could not be stopped; keeping $SD"
  exit 1
fi
if ((KEEP)); then
  log "cluster stopped ($((SECONDS - T0))s); state kept in $SD"
else
  rm -rf "$SD"
  log "cluster stopped and $SD removed ($((SECONDS - T0))s)"
fi
