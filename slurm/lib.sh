# shellcheck shell=bash disable=SC2034  # variables are used by the sourcing scripts
# Shared by up.sh, down.sh and status.sh: paths of the private cluster and
# the logic that finds and stops its daemons. Source it; it defines no
# side effects beyond variables and functions.

HARNESS_SLURM_DIR="${HARNESS_SLURM_DIR:-/tmp/harness-slurm}"
# Absolute path: it ends up in config files and in process environments that
# we later compare against, so "./x" and "/abs/x" must not both occur.
case "$HARNESS_SLURM_DIR" in
  /*) ;;
  *) HARNESS_SLURM_DIR="$PWD/$HARNESS_SLURM_DIR" ;;
esac
export HARNESS_SLURM_DIR

SD="$HARNESS_SLURM_DIR"
PID_DIR="$SD/pids"
LOG_DIR="$SD/log"
ENV_FILE="$SD/env.sh"
SLURM_CONF_FILE="$SD/slurm.conf"
MUNGE_SOCKET="$SD/munge/munge.socket.2"
MARIADB_SOCKET="$SD/mariadb-run/mysqld.sock"

# Non-standard ports so that a system-wide SLURM or MariaDB on the default
# ports (6817-6819, 3306) cannot collide with ours.
PORT_BASE="${HARNESS_SLURM_PORT_BASE:-16817}"
SLURMCTLD_PORT="$PORT_BASE"
SLURMD_PORT="$((PORT_BASE + 1))"
SLURMDBD_PORT="$((PORT_BASE + 2))"
MARIADB_PORT="$((PORT_BASE + 3))"

CLUSTER_NAME="${HARNESS_SLURM_CLUSTER:-harness}"
PARTITION="${HARNESS_SLURM_PARTITION:-debug}"

# Every daemon (and, through inheritance, every slurmstepd that slurmd forks)
# is started with MARKER_VAR set to the state folder; every job step gets
# JOB_MARKER_VAR from our TaskProlog. Matching on these instead of on process
# names means we only ever signal processes of *this* cluster, never a system
# daemon, another cluster's or a recycled PID.
MARKER_VAR="HARNESS_SLURM_DAEMON_OF"
JOB_MARKER_VAR="HARNESS_SLURM_JOB_OF"

# Start order; stop order is the reverse (slurmctld talks to slurmdbd while
# shutting down, and everything talks to munged).
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)

log() { printf '[harness-slurm] %s\n' "$*" >&2; }

# The arguments every script's flag loop treats alike: -h/--help prints the script's header
# comment (after the shebang and shellcheck lines), anything else unknown is refused.
other_arg() {
  case "$1" in
    -h | --help)
      awk 'NR > 2 && /^#/ { sub(/^# ?/, ""); print; next } NR > 2 { exit }' "$0"
      exit 0
      ;;
    *)
      log "unknown argument: $1"
      exit 2
      ;;
  esac
}

# Serialise up.sh/down.sh on one state folder: concurrent callers (CI plus a
# pytest fixture, parallel test workers) would otherwise wipe each other's
# half-started cluster. The lock file sits beside the folder because the
# folder itself gets deleted. Held until the script exits.
take_lock() {
  exec 9>"$SD.lock"
  if ! flock -n 9; then
    log "waiting for another up.sh/down.sh on $SD"
    flock -w 900 9 || { log "ERROR: lock $SD.lock still held after 900s"; exit 1; }
  fi
}

# has_marker PID VAR: PID is alive and has VAR=$SD in its environment.
# A zombie (exited, not yet reaped: this VM's init reaps lazily) has an
# unreadable environ and counts as gone, which is what we want.
has_marker() {
  local pid="$1" var="$2" envs
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  # No pipe into grep -q here: under pipefail an early-exiting grep can turn
  # a match into a SIGPIPE failure.
  envs="$({ tr '\0' '\n' <"/proc/$pid/environ"; } 2>/dev/null)" || return 1
  [[ $'\n'"$envs"$'\n' == *$'\n'"$var=$SD"$'\n'* ]]
}

# True if PID is a live daemon (or slurmstepd) started by this cluster.
is_ours() { has_marker "$1" "$MARKER_VAR"; }

# True if PID is any live process of this cluster, daemon or job.
still_there() { has_marker "$1" "$MARKER_VAR" || has_marker "$1" "$JOB_MARKER_VAR"; }

# PIDs of every live process of this cluster: daemons, slurmstepds and job
# processes. Leaves out this shell and its ancestors, in case we are called
# from inside a job.
cluster_pids() {
  local p pid ancestors=" " a="$$"
  while [[ "$a" =~ ^[0-9]+$ && "$a" != 0 ]]; do
    ancestors+="$a "
    a="$(awk '/^PPid:/ { print $2 }' "/proc/$a/status" 2>/dev/null || true)"
  done
  for p in /proc/[0-9]*; do
    pid="${p#/proc/}"
    [[ "$ancestors" == *" $pid "* ]] && continue
    still_there "$pid" && echo "$pid"
  done
  return 0
}

# wait_gone TENTHS PID...: poll until every PID has exited, for at most about
# TENTHS tenths of a second; the survivors are left in the array STILL_ALIVE.
wait_gone() {
  local tenths="$1" i pid
  shift
  for ((i = 0; i <= tenths; i++)); do
    STILL_ALIVE=()
    for pid in "$@"; do
      still_there "$pid" && STILL_ALIVE+=("$pid")
    done
    ((${#STILL_ALIVE[@]})) || return 0
    sleep 0.1
  done
  return 1
}

# stop_pids GRACE PID...: SIGTERM all, wait up to GRACE seconds for them to
# go, SIGKILL the rest. Callers only pass PIDs of this cluster.
stop_pids() {
  local grace="$1"
  shift
  (($#)) || return 0
  kill -TERM "$@" 2>/dev/null || true
  wait_gone $((grace * 10)) "$@" && return 0
  log "pids ${STILL_ALIVE[*]} ignored SIGTERM for ${grace}s, sending SIGKILL"
  kill -KILL "${STILL_ALIVE[@]}" 2>/dev/null || true
  wait_gone 49 "${STILL_ALIVE[@]}" && return 0
  log "pids ${STILL_ALIVE[*]} survived SIGKILL"
  return 1
}

# Stop all daemons of the cluster in reverse start order, by recorded PID,
# then sweep up anything else of this cluster still running: job processes
# and slurmstepds orphaned by a crashed slurmd, or a daemon whose pidfile was
# lost.
stop_all() {
  local i name pid rc=0
  local -a leftovers
  for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
    name="${DAEMONS[i]}"
    [[ -f "$PID_DIR/$name.pid" ]] || continue
    pid="$(<"$PID_DIR/$name.pid")"
    if is_ours "$pid"; then
      log "stopping $name (pid $pid)"
      stop_pids 15 "$pid" || rc=1
    fi
    rm -f "$PID_DIR/$name.pid"
  done
  mapfile -t leftovers < <(cluster_pids)
  if ((${#leftovers[@]})); then
    for pid in "${leftovers[@]}"; do
      log "stopping leftover process $pid ($({ tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null || true))"
    done
    stop_pids 3 "${leftovers[@]}" || rc=1
  fi
  return "$rc"
}

# Run slurm client commands against our cluster without requiring the
# caller to have sourced env.sh.
sl() { SLURM_CONF="$SLURM_CONF_FILE" "$@"; }

# Healthy = node answers and is usable, and accounting answers.
cluster_healthy() {
  [[ -f "$ENV_FILE" && -f "$SLURM_CONF_FILE" ]] || return 1
  # Cheap check first: with a daemon dead, sinfo/sacct would only fail after
  # their own connect retries (~10 s).
  local name
  for name in "${DAEMONS[@]}"; do
    is_ours "$(cat "$PID_DIR/$name.pid" 2>/dev/null || true)" || return 1
  done
  local state
  state="$(sl timeout 10 sinfo -h -p "$PARTITION" -o '%T' 2>/dev/null | head -n1)" || return 1
  case "$state" in
    idle | mixed | allocated | completing) ;;
    *) return 1 ;;
  esac
  sl timeout 10 sacct -n -X -S now-1minutes -o JobID >/dev/null 2>&1
}
