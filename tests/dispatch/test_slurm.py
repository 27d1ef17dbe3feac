"""The matrix on the real local SLURM cluster (slurm/up.sh): arrays, status from one
sacct call, collect into a real MLflow server, preemption with resume, failures,
cancellation, refusal of an invalid file.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from dispatch_helpers import smoke_dict, write_matrix

from harness.dispatch import render_status, status, submit, wait
from harness.dispatch.ledger import read_job, read_run
from harness.errors import ConfigError
from harness.matrix import load_matrix
from harness.result import load_result
from harness.tracking.collect import collect, render_collect

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

import slurm_cluster  # noqa: E402  (tests/ is on sys.path via conftest)


@pytest.fixture(scope="module")
def slurm_env():
    if not slurm_cluster.cluster_available():
        pytest.skip("no SLURM cluster up and slurm/up.sh cannot start one here")
    return slurm_cluster.ensure_cluster()


@pytest.fixture(scope="module")
def partition(slurm_env) -> str:
    return slurm_env.get("HARNESS_SLURM_PARTITION", "debug")


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """A real ``mlflow server`` on localhost (SQLite backend), stopped after the module."""
    root = tmp_path_factory.mktemp("mlflow")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mlflow = Path(sys.executable).parent / "mlflow"
    log = (root / "server.log").open("w")
    proc = subprocess.Popen(
        [
            str(mlflow),
            "server",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=root,
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
        time.sleep(0.5)
    yield uri
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def _slurm(data: dict, partition: str) -> dict:
    data["executor"].update(cluster="slurm", array_parallelism=3)
    data["resources"].update(partition=partition, mem_gb=None)
    return data


def _squeue(name: str) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-n", name, "-o", "%i"], capture_output=True, text=True, timeout=30)
    return out.stdout.split()


def test_invalid_matrix_reaches_no_queue(slurm_env, partition, tmp_path):
    data = _slurm(smoke_dict(tmp_path / "out", name="invalid-matrix-test"), partition)
    data["defaults"]["train"]["max_stepz"] = 3
    path = write_matrix(tmp_path / "bad.yaml", data)
    with pytest.raises(ConfigError) as info:
        submit(path)
    message = str(info.value)
    assert "unknown key 'train.max_stepz'" in message and "\n" not in message
    assert _squeue("harness-invalid-matrix-test") == []


def test_smoke_matrix_on_slurm_then_collect(slurm_env, partition, mlflow_server, tmp_path):
    from mlflow.tracking import MlflowClient

    data = _slurm(smoke_dict(tmp_path / "out", tracking={"uri": mlflow_server, "experiment": "smoke-slurm"}), partition)
    path = write_matrix(tmp_path / "smoke.yaml", data)
    report = submit(path)
    assert report.ok and report.executor == "slurm" and len(report.submitted) == 5
    assert all(re.fullmatch(r"\d+_\d", r.job_id) for r in report.submitted)  # one array
    assert len({r.array_job_id for r in report.submitted}) == 1

    final = wait(path, timeout_s=540, poll_s=3)
    assert final.counts() == {"success": 5, "excluded": 1}, render_status(final)
    assert len(final.scheduler_calls) <= 1

    first = collect(path)
    assert first.ok, render_collect(first)
    # cells logged live to the server; collect adopted them under the parent
    assert len(first.created) + len(first.updated) == 5

    again = submit(path)
    assert again.submitted == [] and again.skipped == {"already succeeded (--force reruns)": 5, "excluded": 1}
    second = collect(path)
    assert second.ok and second.created == [] and second.updated == [] and second.unchanged == 5

    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("smoke-slurm")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("harness.role") == "matrix"]
    children = [r for r in runs if "harness.cell_id" in r.data.tags]
    assert len(parents) == 1 and len(children) == 5 and len(runs) == 6
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    assert all("accuracy" in r.data.metrics and r.data.params["train.max_steps"] == "3" for r in children)


def _wait_for_step(log: Path, step: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if log.exists() and any(int(m) >= step for m in re.findall(r"step (\d+)/", log.read_text())):
            return
        time.sleep(0.5)
    raise TimeoutError(f"no step {step} in {log} after {timeout_s} s")


def test_preemption_failure_and_cancellation(slurm_env, partition, tmp_path):
    import submitit

    data = _slurm(smoke_dict(tmp_path / "out", name="faults", models=["tiny-bert", "tiny-llama"]), partition)
    data["exclude"] = [{"match": {"model": "tiny-llama", "method": "ia3"}, "reason": "not needed here"}]
    data["overrides"] += [
        {
            "match": {"model": "tiny-bert", "method": "lora"},
            "set": {"train": {"max_steps": 300, "log_every": 5, "checkpoint_every": 5}},
        },
        # bf16 passes the plan (the node decides) and fails on this CPU-only node
        {"match": {"model": "tiny-bert", "method": "ia3"}, "set": {"train": {"precision": "bf16"}}},
        {"match": {"model": "tiny-llama", "method": "lora"}, "set": {"train": {"max_steps": 100000, "log_every": 5}}},
    ]
    path = write_matrix(tmp_path / "faults.yaml", data)
    report = submit(path)
    assert report.ok and len(report.submitted) == 3
    cells = {(c.model, c.method): c for c in load_matrix(path).active}
    preempted, broken, cancelled = cells["tiny-bert", "lora"], cells["tiny-bert", "ia3"], cells["tiny-llama", "lora"]

    # preempt the running cell mid-training, the way SLURM does (SIGTERM, then USR2)
    _wait_for_step(preempted.folder / "log.txt", 20, timeout_s=300)
    job = read_job(preempted.folder)
    submitit.SlurmJob(folder=job.submitit_folder, job_id=job.job_id)._interrupt()
    # cancel the endless one once it trains
    _wait_for_step(cancelled.folder / "log.txt", 5, timeout_s=300)
    subprocess.run(["scancel", read_job(cancelled.folder).job_id], check=True, timeout=30)

    final = wait(path, timeout_s=540, poll_s=3)
    text = render_status(final)
    states = {(s.cell.model, s.cell.method): s for s in final.states}
    assert states["tiny-bert", "lora"].status == "success", text
    assert states["tiny-bert", "ia3"].status == "failed", text
    assert states["tiny-llama", "lora"].status == "cancelled", text

    run = read_run(preempted.folder)
    assert run.attempts == 2 and run.preemptions == 1, run
    result = load_result(preempted.folder)
    # a signal inside the optimizer step keeps the last periodic checkpoint (every 5 steps)
    assert result.efficiency.resumed_from_step and result.efficiency.resumed_from_step >= 15
    assert result.efficiency.train_steps == 300
    failed = load_result(broken.folder)
    assert failed.status == "failed" and "needs a GPU" in failed.error and "Traceback" in failed.traceback
    assert "needs a GPU" in states["tiny-bert", "ia3"].error
    assert states["tiny-llama", "lora"].scheduler_state.startswith("CANCELLED")


def test_sweep_stage_two_is_submitted_by_a_dependency_job(slurm_env, partition, tmp_path):
    """Stage 1 as one array; a follow-up job held with --dependency=afterany on it submits stage 2."""
    import json

    from harness.dispatch.stages import CONTINUATION_FILE
    from harness.names import FINAL_STAGE

    data = _slurm(
        smoke_dict(
            tmp_path / "out", name="sweep-slurm", models=["tiny-bert"], methods=["lora"], seeds=[0, 1], exclude=[]
        ),
        partition,
    )
    data["defaults"]["train"]["max_steps"] = 2
    data["sweep"] = [{"values": {"train.learning_rate": [1.0e-4, 3.0e-2]}}]
    path = write_matrix(tmp_path / "sweep.yaml", data)
    report = submit(path)
    assert report.ok and len(report.submitted) == 2
    record = json.loads((tmp_path / "out" / CONTINUATION_FILE).read_text())
    assert record["after"] == [report.submitted[0].array_job_id]
    dependency = subprocess.run(
        ["squeue", "-h", "-j", record["job_id"], "-o", "%E"], capture_output=True, text=True, timeout=30
    ).stdout.strip()
    assert dependency.startswith("afterany:" + record["after"][0]), dependency
    deadline = time.monotonic() + 540
    while True:
        final = status(path)
        if len(final.states) == 4 and all(s.status == "success" for s in final.states):
            break
        assert time.monotonic() < deadline, render_status(final)
        time.sleep(3)
    finals = [s for s in final.states if s.cell.stage == FINAL_STAGE]
    assert [s.cell.seed for s in finals] == [0, 1]
    assert len({s.job.array_job_id for s in finals}) == 1 and finals[0].job.array_job_id != record["after"][0]


def test_halving_rungs_are_submitted_by_dependency_jobs(slurm_env, partition, tmp_path):
    """A halving sweep on SLURM: rung 0 as one array, then a follow-up job held on it submits the
    survivor's rung (from its checkpoint), and the next one stage 2; nothing by hand."""
    from harness.names import FINAL_STAGE, SELECT_STAGE

    data = _slurm(
        smoke_dict(
            tmp_path / "out", name="halving-slurm", models=["tiny-bert"], methods=["lora"], seeds=[0, 1], exclude=[]
        ),
        partition,
    )
    data["defaults"]["train"]["max_steps"] = 3
    data["sweep"] = [{"values": {"train.learning_rate": [1.0e-4, 3.0e-3, 3.0e-2]}}]
    data["select"] = {"metric": "f1_macro", "split": "validation", "halving": {"eta": 3, "rungs": [1]}}
    path = write_matrix(tmp_path / "halving.yaml", data)
    report = submit(path)
    assert report.ok and len(report.submitted) == 3  # rung 0; the follow-up jobs do the rest
    deadline = time.monotonic() + 540
    while True:
        final = status(path)
        selection = final.matrix.selections[0]
        ended = all(s.status not in ("pending", "queued", "running") for s in final.states)
        if selection.state == "selected" and ended and len(final.states) == 5:
            break
        assert time.monotonic() < deadline, render_status(final)
        time.sleep(3)
    points = [s for s in final.states if s.cell.stage == SELECT_STAGE]
    assert sorted(s.status for s in points) == ["paused", "paused", "success"], render_status(final)
    (survivor,) = [s for s in points if s.status == "success"]
    result = load_result(survivor.cell.folder)
    assert [r.step for r in result.rungs] == [1] and result.efficiency.resumed_from_step == 1
    assert result.efficiency.train_steps == 3
    finals = [s for s in final.states if s.cell.stage == FINAL_STAGE]
    assert [s.status for s in finals] == ["success", "success"]
    # rung 0, the survivor's rung and stage 2: three arrays, each submitted by the one before
    arrays = {s.job.array_job_id for s in points} | {survivor.job.array_job_id} | {s.job.array_job_id for s in finals}
    assert len(arrays) >= 3


def test_ddp_cell_on_two_tasks_trains_as_one_process_and_resumes_on_both_ranks(slurm_env, partition, tmp_path):
    """Two tasks (srun, gloo on CPU) with the one-process cell's global batch: the same losses; then
    a preempted two-task cell resumes from rank 0's checkpoint on both ranks and finishes."""
    import submitit

    def matrix(name: str, tasks: int | None, steps: int) -> Path:
        data = _slurm(
            smoke_dict(tmp_path / name, name=name, models=["tiny-llama"], methods=["lora"], exclude=[]), partition
        )
        data["resources"].update(cpus=1, **({"tasks_per_node": tasks} if tasks else {}))
        data["defaults"]["train"].update(max_steps=steps, batch_size=4, log_every=5, checkpoint_every=5)
        data["defaults"]["method_args"] = {"lora_dropout": 0.0}
        data["defaults"]["data"]["max_train_samples"] = 64
        data["defaults"]["telemetry"] = {"enabled": False}
        return write_matrix(tmp_path / f"{name}.yaml", data)

    one, two = matrix("one", None, 120), matrix("two", 2, 120)
    assert submit(one).ok and submit(two).ok
    script = (tmp_path / "two" / ".submitit").glob("*_submission.sh")
    assert any("#SBATCH --ntasks-per-node=2" in p.read_text() for p in script)
    cell = load_matrix(two).active[0]
    _wait_for_step(cell.folder / "log.txt", 20, timeout_s=300)
    job = read_job(cell.folder)
    submitit.SlurmJob(folder=job.submitit_folder, job_id=job.job_id)._interrupt()  # preempt, as SLURM does
    for path in (one, two):
        final = wait(path, timeout_s=540, poll_s=3)
        assert final.counts() == {"success": 1}, render_status(final)
    single, ranks = load_result(load_matrix(one).active[0].folder), load_result(cell.folder)
    assert ranks.run.world_size == 2 and ranks.run.per_device_batch == 2
    assert read_run(cell.folder).preemptions == 1 and ranks.efficiency.resumed_from_step >= 15
    assert ranks.efficiency.train_steps == 120
    assert len(ranks.efficiency.loss_history) == 120
    worst = max(abs(a - b) for (_, a), (_, b) in zip(single.efficiency.loss_history, ranks.efficiency.loss_history))
    assert worst < 1e-5, worst
