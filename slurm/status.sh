#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Show whether the private SLURM cluster is up: each daemon's recorded PID,
# the node state and the queue. Exit 0 if healthy, 1 otherwise.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
. "$HERE/lib.sh"

if [[ ! -d "$SD" ]]; then
  echo "no cluster state in $SD"
  exit 1
fi
for name in "${DAEMONS[@]}"; do
  pid="$(cat "$PID_DIR/$name.pid" 2>/dev/null || true)"
  if is_ours "$pid"; then
    printf '%-10s running (pid %s)\n' "$name" "$pid"
  else
    printf '%-10s DOWN\n' "$name"
  fi
done
echo
sl timeout 10 sinfo 2>&1 || true
echo
sl timeout 10 squeue 2>&1 || true
echo
if cluster_healthy; then
  echo "healthy; use it with: source $ENV_FILE"
else
  echo "NOT healthy (see $LOG_DIR)"
  exit 1
fi
