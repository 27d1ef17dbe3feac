"""The local executor (no sbatch on the PATH): same folders and results as on SLURM,
checkpoint + requeue on preemption, a final time-out recorded as ``timeout``.

Each cell is a fresh process that imports torch & co (~10-20 s on 2 cores).
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest
from dispatch_helpers import smoke_dict, write_matrix

from harness.dispatch import render_status, status, submit, wait
from harness.dispatch.ledger import read_job, read_run
from harness.matrix import load_matrix
from harness.result import load_result

pytestmark = pytest.mark.slow


def _wait_for_step(log: Path, step: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if log.exists() and any(int(m) >= step for m in re.findall(r"step (\d+)/", log.read_text())):
            return
        time.sleep(0.2)
    raise TimeoutError(f"no step {step} in {log} after {timeout_s} s")


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("local")
    data = smoke_dict(
        tmp / "out",
        models=["tiny-bert", "tiny-llama"],
        exclude=[{"match": {"model": "tiny-llama", "method": "ia3"}, "reason": "not needed here"}],
    )
    data["executor"].update(cluster="slurm", array_parallelism=3, max_requeues=0)  # slurm: falls back to local
    data["overrides"] += [
        # long enough to be preempted mid-training
        {
            "match": {"model": "tiny-bert", "method": "lora"},
            "set": {"train": {"max_steps": 300, "log_every": 5, "checkpoint_every": 5}},
        },
        # never finishes within its 1-minute limit (warning 45 s before it)
        {
            "match": {"model": "tiny-bert", "method": "ia3"},
            "set": {"train": {"max_steps": 100000}},
            "resources": {"time_min": 1, "signal_delay_s": 45},
        },
    ]
    path = write_matrix(tmp / "smoke.yaml", data)
    matrix = load_matrix(path)
    cells = {(c.model, c.method): c for c in matrix.active}
    return path, cells


def test_local_run(local_run, no_sbatch_path):
    path, cells = local_run
    started = time.monotonic()
    report = submit(path)
    assert time.monotonic() - started < 15, "submit must return at once"
    assert report.ok and report.executor == "local" and len(report.submitted) == 3
    assert "sbatch not found on the PATH: running with the local executor" in report.notices
    assert submit(path).submitted == []  # queued/running cells are not submitted twice

    # preempt the long cell mid-training: checkpoint, requeue, resume, success
    lora = cells["tiny-bert", "lora"]
    _wait_for_step(lora.folder / "log.txt", 20, timeout_s=240)
    pid = read_run(lora.folder).pid
    os.kill(pid, signal.SIGUSR2)

    report = wait(path, timeout_s=420, poll_s=2)
    text = render_status(report)
    states = {(s.cell.model, s.cell.method): s for s in report.states}
    assert states["tiny-llama", "lora"].status == "success", text
    assert states["tiny-bert", "lora"].status == "success", text
    assert states["tiny-bert", "ia3"].status == "timeout", text

    run = read_run(lora.folder)
    assert run.attempts == 2 and run.preemptions == 1 and run.last_signal["kind"] == "preemption"
    result = load_result(lora.folder)
    # a signal inside the optimizer step keeps the last periodic checkpoint (every 5 steps)
    assert result.efficiency.resumed_from_step and result.efficiency.resumed_from_step >= 15
    assert result.efficiency.train_steps == 300  # the step counter continued

    timed_out = load_result(cells["tiny-bert", "ia3"].folder)
    assert "time limit (1 min) reached 1 times (max_requeues=0)" in timed_out.error
    assert states["tiny-bert", "ia3"].error.startswith("time limit")
    # same layout as on SLURM: job.json with the local job id, submitit logs beside the matrix
    job = read_job(lora.folder)
    assert job.executor == "local" and Path(job.stdout).exists()
    assert status(path).counts() == {"success": 2, "timeout": 1, "excluded": 1}
