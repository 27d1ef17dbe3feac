#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Start a private single-node SLURM cluster (with accounting) on this machine.
#
#   bash slurm/up.sh [--restart]
#   source "${HARNESS_SLURM_DIR:-/tmp/harness-slurm}/env.sh"
#
# Everything lives in $HARNESS_SLURM_DIR (default /tmp/harness-slurm): config,
# munge key and socket, MariaDB datadir, spool, logs, PID files. Nothing under
# /etc is read or written, so a system SLURM/munge/MariaDB (running or merely
# installed and unconfigured) does not interfere.
#
# Idempotent: if the cluster recorded in the state folder is healthy it only
# prints the environment. Otherwise leftovers of an earlier run are stopped,
# the folder is wiped, and a fresh cluster is started. --restart forces that.
#
# Daemons are run in the foreground (-D/-F) under setsid with stdio on log
# files, so the PID recorded from $! is the daemon itself and a caller that
# captures our output (subprocess.run(capture_output=True)) is not kept
# waiting by a daemon holding its pipe open.
# -E: the ERR trap (set below) also fires inside functions.
set -Eeuo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
. "$HERE/lib.sh"

RESTART=0
for arg in "$@"; do
  case "$arg" in
    --restart) RESTART=1 ;;
    *) other_arg "$arg" ;;
  esac
done

T0=$SECONDS
take_lock

print_env() {
  cat "$ENV_FILE"
  log "cluster up ($((SECONDS - T0))s); use it with: source $ENV_FILE"
}

if ((!RESTART)) && cluster_healthy; then
  print_env
  exit 0
fi

# --- packages ---------------------------------------------------------------
# Checked by binary rather than dpkg status: what we need is the programs.
# Package postinst scripts start nothing without systemd, and we ignore the
# configs they would use anyway.
need_install=0
for bin in slurmctld slurmd slurmdbd sinfo sbatch sacct sacctmgr scontrol \
  munged mungekey mariadbd mariadb-install-db mariadb mariadb-admin; do
  command -v "$bin" >/dev/null 2>&1 || need_install=1
done
if ((need_install)); then
  log "installing Debian packages (slurm, munge, mariadb)"
  export DEBIAN_FRONTEND=noninteractive
  # A previous install that was interrupted leaves dpkg locked in a
  # half-configured state that makes every later apt-get fail.
  dpkg --configure -a >/dev/null 2>&1 || true
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends \
    slurmctld slurmd slurm-client munge slurmdbd mariadb-server >/dev/null
fi

# --- clean slate --------------------------------------------------------------
# Whatever is in the state folder is either unhealthy or being restarted:
# stop anything of ours still running (also finds daemons whose pidfile is
# gone), then wipe. Job IDs would restart, which is handled by FirstJobId.
if [[ -d "$SD" ]]; then
  log "stopping leftovers and wiping $SD"
  stop_all || true
  rm -rf "$SD"
fi

mkdir -p "$SD" "$PID_DIR" "$LOG_DIR" "$SD/spool/ctld" "$SD/spool/d" \
  "$SD/munge" "$SD/mariadb-run" "$SD/run"
# munged refuses a socket directory writable by group/other.
chmod 755 "$SD" "$SD/munge"
# Daemons inherit our working directory; the caller's (a pytest tmp dir, a
# CI checkout) may vanish while they run. Everything below uses absolute paths.
cd "$SD"

HOST="$(hostname -s)"

# --- helpers ---------------------------------------------------------------------

# start NAME CMD...: launch a foreground daemon detached from us, record PID.
start() {
  local name="$1"
  shift
  local pid i
  # 9>&-: the daemon must not inherit (and so hold forever) our lock.
  env "$MARKER_VAR=$SD" setsid "$@" </dev/null >>"$LOG_DIR/$name.out" 2>&1 9>&- &
  pid=$!
  echo "$pid" >"$PID_DIR/$name.pid"
  # Until the forked shell has exec'd env, /proc/$pid/environ lacks the
  # marker and is_ours would call the daemon dead: wait for the exec.
  for ((i = 0; i < 100; i++)); do
    is_ours "$pid" && return 0
    sleep 0.05
  done
  die_with_logs "$name" "$name (pid $pid) did not start"
}

# A half-started cluster is of no use to anyone: stop what we started, but
# keep the folder (logs) for inspection; the next up.sh wipes it.
abort() {
  trap - ERR
  stop_all >/dev/null 2>&1 || true
  log "daemons stopped; logs kept in $LOG_DIR"
  exit 1
}
trap 'log "ERROR: up.sh failed at line $LINENO"; abort' ERR

die_with_logs() {
  local name="$1" f
  log "ERROR: $2"
  # The daemon's own log if it got that far, else its stdout/stderr.
  f="$LOG_DIR/$name.log"
  [[ -s "$f" ]] || f="$LOG_DIR/$name.out"
  if [[ -s "$f" ]]; then
    log "--- tail of $f"
    tail -n 25 "$f" >&2
  fi
  abort
}

# wait_for NAME TIMEOUT_S CMD...: poll CMD until it succeeds; fail early
# (with the daemon's log) if the daemon died.
wait_for() {
  local name="$1" deadline=$((SECONDS + $2)) pid
  shift 2
  pid="$(<"$PID_DIR/$name.pid")"
  while ((SECONDS < deadline)); do
    "$@" >/dev/null 2>&1 && return 0
    is_ours "$pid" || die_with_logs "$name" "$name exited during startup"
    sleep 0.2
  done
  die_with_logs "$name" "$name not ready in time"
}

# --- munge ---------------------------------------------------------------------------
mungekey --create --keyfile="$SD/munge/munge.key" --force >/dev/null 2>&1 ||
  dd if=/dev/urandom of="$SD/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$SD/munge/munge.key"
# --force turns munged's refusals over an existing socket or file/directory
# permissions it deems insecure (which vary by machine, e.g. how /tmp is
# mounted) into warnings; the key is ours and the folder is private anyway.
start munged munged --foreground --force \
  --socket="$MUNGE_SOCKET" \
  --key-file="$SD/munge/munge.key" \
  --pid-file="$SD/run/munged.pid" \
  --seed-file="$SD/munge/munged.seed" \
  --log-file="$LOG_DIR/munged.log"
wait_for munged 10 bash -c "munge -n --socket='$MUNGE_SOCKET' | unmunge --socket='$MUNGE_SOCKET'"

# --- MariaDB (slurmdbd's storage) -----------------------------------------------------------
# --no-defaults keeps /etc/mysql/* out. Durability settings are relaxed: the
# database is thrown away with the state folder, and slurmdbd creates a lot
# of tables on first start, which is what dominates start-up time.
DB_PASS="$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
MARIADB_OPTS=(
  --no-defaults
  --datadir="$SD/mariadb"
  --socket="$MARIADB_SOCKET"
  --pid-file="$SD/run/mariadbd.pid"
  --user=root
  --bind-address=127.0.0.1
  --port="$MARIADB_PORT"
  --skip-name-resolve
  --innodb-buffer-pool-size=256M
  --innodb-log-file-size=64M
  --innodb-flush-log-at-trx-commit=0
  --innodb-doublewrite=0
  --innodb-lock-wait-timeout=900
  --sync-binlog=0
  --log-error="$LOG_DIR/mariadbd.log"
)
if ! mariadb-install-db --no-defaults --datadir="$SD/mariadb" --user=root \
  --auth-root-authentication-method=socket --skip-test-db \
  >"$LOG_DIR/mariadb-install-db.log" 2>&1; then
  die_with_logs mariadb-install-db "mariadb-install-db failed"
fi
start mariadbd mariadbd "${MARIADB_OPTS[@]}"
wait_for mariadbd 60 mariadb-admin --no-defaults --socket="$MARIADB_SOCKET" -uroot ping
# Over the unix socket root authenticates as the OS user; slurmdbd connects
# over TCP (its client library takes host+port, no socket path) as "slurm".
mariadb --no-defaults --socket="$MARIADB_SOCKET" -uroot <<SQL
CREATE DATABASE slurm_acct_db;
CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
CREATE USER 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
SQL

# --- config files ----------------------------------------------------------------------------
# Node definition from the hardware as slurmd sees it, with some memory held
# back: slurmd drains a node that reports less than RealMemory.
NODE_LINE="$(slurmd -C | head -n1)"
REAL_MEM="$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$NODE_LINE")"
RESERVED_MEM=$((REAL_MEM / 10 < 2048 ? REAL_MEM / 10 : 2048))
NODE_LINE="${NODE_LINE/RealMemory=$REAL_MEM/RealMemory=$((REAL_MEM - RESERVED_MEM))}"
CPUS="$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$NODE_LINE")"
DEF_MEM_PER_CPU=$(((REAL_MEM - RESERVED_MEM) / CPUS))
((DEF_MEM_PER_CPU > 2048)) && DEF_MEM_PER_CPU=2048

# Job IDs restart at FirstJobId on every fresh cluster; submitit keys result
# files by job ID, so a restarted cluster handing out the same IDs again
# would let a job "find" an old result. Deriving the start from the clock
# (10 IDs per second elapsed, wrapping after ~69 days, below MaxJobId
# 67043328) keeps successive clusters apart.
FIRST_JOB_ID=$(($(date +%s) % 6000000 * 10 + 1000))

# AuthInfo: our munge socket, and cred_expire=10 because a requeued job may
# not start again before its old credential expires (default 120 s + slack).
AUTH_INFO="socket=$MUNGE_SOCKET,cred_expire=10"

cat >"$SLURM_CONF_FILE" <<EOF
# Generated by slurm/up.sh: private single-node cluster, do not edit.
ClusterName=$CLUSTER_NAME
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$SLURMCTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=$AUTH_INFO
StateSaveLocation=$SD/spool/ctld
SlurmdSpoolDir=$SD/spool/d
SlurmctldPidFile=$SD/run/slurmctld.pid
SlurmdPidFile=$SD/run/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
PlugStackConfig=$SD/plugstack.conf
# Tags every job's processes so that down.sh can find them even when a
# crashed slurmd/slurmstepd left them behind.
TaskProlog=$SD/task_prolog.sh
# No cgroups in containers: track processes via /proc, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
MailProg=/bin/true
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without a default every job would claim the whole node's memory and jobs
# (e.g. array tasks) could not run side by side.
DefMemPerCPU=$DEF_MEM_PER_CPU
SchedulerType=sched/backfill
# React to submissions at once instead of batching them (tests wait less).
SchedulerParameters=batch_sched_delay=0,sched_interval=5
JobRequeue=1
ReturnToService=2
FirstJobId=$FIRST_JOB_ID
KillWait=5
MinJobAge=300
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=60
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$SLURMDBD_PORT
# For accounting_storage/slurmdbd this names the munge socket to use.
AccountingStoragePass=$MUNGE_SOCKET
NodeName=${NODE_LINE#NodeName=} NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
# An empty plugstack keeps /etc/slurm/plugstack.conf.d (SPANK plugins of a
# system install) out of our jobs.
: >"$SD/plugstack.conf"
# Lines "export NAME=VALUE" printed by a TaskProlog end up in the task's
# environment.
cat >"$SD/task_prolog.sh" <<EOF
#!/bin/sh
echo "export $JOB_MARKER_VAR=$SD"
EOF
chmod 755 "$SD/task_prolog.sh"

# slurmdbd finds slurmdbd.conf next to $SLURM_CONF; it must be 600 and owned
# by SlurmUser because it holds the database password.
cat >"$SD/slurmdbd.conf" <<EOF
# Generated by slurm/up.sh, do not edit.
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$SLURMDBD_PORT
SlurmUser=root
PidFile=$SD/run/slurmdbd.pid
LogFile=$LOG_DIR/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$MARIADB_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
chmod 600 "$SD/slurmdbd.conf"

cat >"$ENV_FILE" <<EOF
# Generated by slurm/up.sh: source this to use the harness SLURM cluster.
export SLURM_CONF=$SLURM_CONF_FILE
export HARNESS_SLURM_DIR=$SD
export HARNESS_SLURM_PARTITION=$PARTITION
export HARNESS_SLURM_CLUSTER=$CLUSTER_NAME
EOF

export SLURM_CONF="$SLURM_CONF_FILE"

# --- slurmdbd, then register the cluster before slurmctld starts ----------------------------
start slurmdbd slurmdbd -D
wait_for slurmdbd 60 sacctmgr -n list cluster
sacctmgr -i add cluster "$CLUSTER_NAME" >/dev/null

# --- slurmctld, slurmd --------------------------------------------------------------------------
start slurmctld slurmctld -D -f "$SLURM_CONF_FILE"
wait_for slurmctld 30 scontrol ping
start slurmd slurmd -D -f "$SLURM_CONF_FILE"
wait_for slurmd 30 bash -c "sinfo -h -p '$PARTITION' -o %T | grep -qx idle"
# slurmctld registers with slurmdbd asynchronously; sacct is the last thing
# users (and submitit) need working.
wait_for slurmctld 30 sacct -n -X -o JobID

print_env
