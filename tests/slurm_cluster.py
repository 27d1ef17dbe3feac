"""Helpers for pytest fixtures that need the local SLURM cluster (slurm/up.sh).

Typical use in a test module or conftest::

    from slurm_cluster import ensure_cluster, cluster_available

    @pytest.fixture(scope="session")
    def slurm_env():
        if not cluster_available():
            pytest.skip("no SLURM cluster and slurm/up.sh cannot start one")
        return ensure_cluster()

``ensure_cluster()`` starts the cluster only when none is healthy, so many
fixtures (and a CI script that already ran ``slurm/up.sh``) can call it
cheaply. It never stops the cluster: ``bash slurm/down.sh`` does that.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
UP_SCRIPT = REPO_ROOT / "slurm" / "up.sh"
DOWN_SCRIPT = REPO_ROOT / "slurm" / "down.sh"

# Generous: a first run on a clean machine also apt-installs the packages.
UP_TIMEOUT_S = 900


def state_dir() -> Path:
    """The cluster's state folder (same default as slurm/lib.sh)."""
    return Path(os.environ.get("HARNESS_SLURM_DIR", "/tmp/harness-slurm")).resolve()


def env_file() -> Path:
    return state_dir() / "env.sh"


def read_env_file(path: Path | None = None) -> dict[str, str]:
    """Parse the ``export KEY=VALUE`` lines that slurm/up.sh writes."""
    path = path or env_file()
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line.startswith("export "):
            continue
        key, sep, value = line[len("export ") :].partition("=")
        if sep:
            # up.sh writes plain values; shlex also copes with quoted ones.
            parts = shlex.split(value)
            env[key.strip()] = parts[0] if parts else ""
    return env


def _cluster_responds(env: dict[str, str]) -> bool:
    """True if the cluster described by ``env`` has a usable node and sacct works."""
    if shutil.which("sinfo") is None or shutil.which("sacct") is None:
        return False
    full_env = {**os.environ, **env}
    try:
        sinfo = subprocess.run(
            ["sinfo", "-h", "-o", "%T"],
            env=full_env,
            capture_output=True,
            text=True,
            timeout=15,
        )
        states = sinfo.stdout.split()
        # Exact names: a suffix such as "idle*" (not responding) or
        # "drained" means the node cannot run jobs.
        usable = {"idle", "mixed", "allocated", "completing"}
        if sinfo.returncode != 0 or not any(s in usable for s in states):
            return False
        sacct = subprocess.run(
            ["sacct", "-n", "-X", "-o", "JobID"],
            env=full_env,
            capture_output=True,
            text=True,
            timeout=15,
        )
        return sacct.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


DAEMONS = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd")


def _daemons_alive() -> bool:
    """Cheap pre-check from the recorded PIDs (a dead slurmctld would make
    sinfo retry for ~10 s before failing). Zombies count as dead."""
    for name in DAEMONS:
        try:
            pid = int((state_dir() / "pids" / f"{name}.pid").read_text())
            stat = Path(f"/proc/{pid}/stat").read_text()
        except (OSError, ValueError):
            return False
        # Field 3 (after the parenthesised command name) is the state.
        if stat.rpartition(")")[2].split()[0] in {"Z", "X"}:
            return False
    return True


def cluster_up() -> bool:
    """True if a cluster started by slurm/up.sh is up and healthy right now."""
    path = env_file()
    if not path.is_file() or not _daemons_alive():
        return False
    try:
        env = read_env_file(path)
    except OSError:
        return False
    return "SLURM_CONF" in env and _cluster_responds(env)


def cluster_available() -> bool:
    """True if a cluster is up, or slurm/up.sh could plausibly start one.

    Starting one needs root (apt-get, daemons running as root) and either the
    SLURM/munge/MariaDB binaries or apt-get to install them. This does not
    start anything.
    """
    if cluster_up():
        return True
    if not UP_SCRIPT.is_file() or shutil.which("bash") is None:
        return False
    if os.geteuid() != 0:
        return False
    needed = ("slurmctld", "slurmd", "slurmdbd", "munged", "mariadbd", "sbatch")
    return all(shutil.which(b) for b in needed) or shutil.which("apt-get") is not None


def ensure_cluster() -> dict[str, str]:
    """Make sure the cluster is up; export and return its environment.

    Runs ``slurm/up.sh`` when no healthy cluster is found (up.sh itself is
    idempotent, so a race with another caller is harmless). The returned
    variables (at least SLURM_CONF, HARNESS_SLURM_DIR, HARNESS_SLURM_PARTITION)
    are also set in ``os.environ`` so that sbatch/sacct/submitit called from
    this process, and jobs it submits (sbatch exports the environment), talk
    to this cluster.
    """
    if not cluster_up():
        proc = subprocess.run(
            ["bash", str(UP_SCRIPT)],
            capture_output=True,
            text=True,
            timeout=UP_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"slurm/up.sh failed (exit {proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
            )
    env = read_env_file()
    os.environ.update(env)
    return env


def stop_cluster(keep: bool = False) -> None:
    """Run slurm/down.sh (for scripts; fixtures normally leave the cluster up)."""
    cmd = ["bash", str(DOWN_SCRIPT)] + (["--keep"] if keep else [])
    subprocess.run(cmd, check=True, capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
