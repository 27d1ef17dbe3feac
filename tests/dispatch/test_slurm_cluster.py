"""End-to-end checks of the local SLURM cluster (slurm/up.sh) and of submitit on it.

These talk to real slurmctld/slurmd/slurmdbd daemons. The session fixture
starts the cluster if it is not up (a first run on a clean machine installs
the Debian packages, which takes a while) and leaves it running; stop it with
``bash slurm/down.sh``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

# tests/ is not a package; make the helper module importable whatever the
# rootdir/import mode.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import slurm_cluster  # noqa: E402

pytestmark = pytest.mark.slurm

# Terminal job states as sacct prints them ("CANCELLED by 0" is split off).
TERMINAL = {
    "COMPLETED",
    "CANCELLED",
    "FAILED",
    "TIMEOUT",
    "NODE_FAIL",
    "PREEMPTED",
    "OUT_OF_MEMORY",
    "BOOT_FAIL",
    "DEADLINE",
}
JOB_TIMEOUT_S = 60


@pytest.fixture(scope="session")
def slurm_env() -> dict[str, str]:
    if not slurm_cluster.cluster_available():
        pytest.skip("no SLURM cluster up and slurm/up.sh cannot start one here")
    return slurm_cluster.ensure_cluster()


@pytest.fixture(scope="session")
def partition(slurm_env: dict[str, str]) -> str:
    return slurm_env.get("HARNESS_SLURM_PARTITION", "debug")


# --- helpers -------------------------------------------------------------------


def run(*cmd: str) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, f"{cmd} failed: {proc.stderr}"
    return proc.stdout


def sbatch(*args: str) -> str:
    out = run("sbatch", "--parsable", *args).strip()
    return out.split(";")[0]  # "jobid" or "jobid;cluster"


def sacct_states(job_id: str) -> dict[str, str]:
    """JobID -> state for the job (one entry per array task once they exist)."""
    out = run("sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", job_id)
    states = {}
    for line in out.splitlines():
        jid, _, state = line.partition("|")
        states[jid] = state.split()[0] if state else ""
    return states


def wait_sacct(job_id: str, n_records: int = 1, timeout: float = JOB_TIMEOUT_S) -> dict[str, str]:
    """Poll sacct until ``n_records`` records of the job are in a terminal state.

    sacct lags the controller by a moment (records go to slurmdbd
    asynchronously), so even after ``sbatch --wait`` this has to poll.
    """
    deadline = time.monotonic() + timeout
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        states = sacct_states(job_id)
        if len(states) >= n_records and all(s in TERMINAL for s in states.values()):
            return states
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} not finished after {timeout}s: {states}")


def wait_running(job_id: str, timeout: float = JOB_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        state = run("squeue", "-h", "-o", "%T", "-j", job_id).strip()
        if state == "RUNNING":
            return
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} not RUNNING after {timeout}s (state {state!r})")


def wait_for_file(path: Path, content: str | None = None, timeout: float = JOB_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and (content is None or path.read_text().strip() == content):
            return
        time.sleep(0.3)
    raise AssertionError(f"{path} did not appear (with content {content!r}) within {timeout}s")


def submitit_result(job, timeout: float = JOB_TIMEOUT_S):
    """job.result() with a deadline: result() alone waits forever if the job is lost."""
    deadline = time.monotonic() + timeout
    while not job.done():
        if time.monotonic() > deadline:
            state = job.state
            job.cancel(check=False)
            raise AssertionError(
                f"submitit job {job.job_id} not done after {timeout}s (state {state});\n"
                f"stdout: {job.stdout()}\nstderr: {job.stderr()}"
            )
        time.sleep(0.5)
    return job.result()


# --- plain sbatch -----------------------------------------------------------------


@pytest.fixture(scope="module")
def finished_job(slurm_env, tmp_path_factory) -> tuple[str, Path]:
    out = tmp_path_factory.mktemp("sbatch") / "out.txt"
    # Not `sbatch --wait`: it polls with growing sleeps and adds seconds.
    job_id = sbatch("-o", "/dev/null", "--wrap", f"echo hello-$SLURM_JOB_ID > {out}")
    wait_sacct(job_id)
    return job_id, out


def test_sbatch_job_writes_file(finished_job):
    job_id, out = finished_job
    assert out.read_text().strip() == f"hello-{job_id}"


def test_sacct_reports_completed(finished_job):
    job_id, _ = finished_job
    assert wait_sacct(job_id) == {job_id: "COMPLETED"}


def test_job_array_all_tasks_complete(slurm_env, tmp_path):
    job_id = sbatch(
        "--array=0-2",
        "-o",
        "/dev/null",
        "--wrap",
        f"echo $SLURM_ARRAY_TASK_ID > {tmp_path}/task_$SLURM_ARRAY_TASK_ID",
    )
    states = wait_sacct(job_id, n_records=3)
    assert states == {f"{job_id}_{i}": "COMPLETED" for i in range(3)}
    for i in range(3):
        assert (tmp_path / f"task_{i}").read_text().strip() == str(i)


def test_scancel_ends_cancelled(slurm_env):
    job_id = sbatch("-o", "/dev/null", "--wrap", "sleep 300")
    wait_running(job_id)
    run("scancel", job_id)
    assert wait_sacct(job_id) == {job_id: "CANCELLED"}


# --- submitit ------------------------------------------------------------------------

import cloudpickle  # noqa: E402  (a submitit dependency)
import submitit  # noqa: E402 - a dependency of the harness: its absence is a failure, not a skip

# Jobs unpickle the submitted callables in a fresh interpreter that cannot
# import this test module (pytest put its folder on sys.path, the job has
# not), so ship its functions and classes by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def add(a: int, b: int) -> int:
    return a + b


class CountingCheckpointable(submitit.helpers.Checkpointable):
    """Counts its attempts in a file; the first attempt waits to be interrupted.

    Checkpointable.checkpoint() resubmits the callable itself (with its
    arguments), which is all the state this needs.
    """

    def __call__(self, counter: str) -> int:
        path = Path(counter)
        attempt = int(path.read_text()) + 1 if path.exists() else 1
        path.write_text(str(attempt))
        if attempt == 1:
            time.sleep(300)  # interrupted long before this ends
        return attempt


def make_executor(folder: Path, partition: str):
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    executor.update_parameters(slurm_partition=partition, timeout_min=10, cpus_per_task=1)
    return executor


def test_submitit_function_returns_value(slurm_env, partition, tmp_path):
    job = make_executor(tmp_path / "submitit", partition).submit(add, 2, 3)
    assert submitit_result(job) == 5


@pytest.mark.parametrize("timeout", [False, True], ids=["preemption", "timeout"])
def test_submitit_checkpointable_is_requeued(slurm_env, partition, tmp_path, timeout):
    counter = tmp_path / "attempts"
    job = make_executor(tmp_path / "submitit", partition).submit(CountingCheckpointable(), str(counter))
    # The signal handlers are installed before the callable runs, so once the
    # counter exists an interrupt is handled by submitit (checkpoint+requeue).
    wait_for_file(counter, "1")
    job._interrupt(timeout=timeout)
    assert submitit_result(job, timeout=90) == 2
    assert counter.read_text() == "2"
