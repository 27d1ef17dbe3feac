"""Ctrl-C (SIGINT) or SIGTERM on a local ``harness matrix --wait``: its cells end ``cancelled``
with their last checkpoint kept, nothing is left running, and ``--retry-failed`` resumes them.

Each run starts a real cell process (torch & co: ~10-20 s on 2 cores)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from dispatch_helpers import REPO, smoke_dict, write_matrix

from harness.cell.train import CHECKPOINT_DIR
from harness.dispatch import status
from harness.dispatch.ledger import JOB_FILE
from harness.matrix import load_matrix
from harness.result import load_result
from harness.train.checkpoint import PREFIX

pytestmark = pytest.mark.slow


def _long_matrix(tmp_path: Path, seeds: int = 1) -> Path:
    data = smoke_dict(tmp_path / "out", models=["tiny-bert"], methods=["lora"], exclude=[], seeds=list(range(seeds)))
    data["executor"]["array_parallelism"] = 1
    # long enough to be stopped mid-training, a checkpoint every few steps
    data["defaults"]["train"].update(max_steps=400, log_every=5, checkpoint_every=5)
    return write_matrix(tmp_path / "long.yaml", data)


def _start(path: Path, *more: str) -> subprocess.Popen[str]:
    # a session of its own: its process group is what a terminal's Ctrl-C reaches
    return subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "matrix", str(path), "--executor", "local", *more],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _wait_for_checkpoint(folder: Path, process: subprocess.Popen[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any((folder / CHECKPOINT_DIR).glob(f"{PREFIX}*")):
            return
        assert process.poll() is None, process.communicate()[0]
        time.sleep(0.1)
    raise TimeoutError(f"no checkpoint in {folder} after {timeout_s} s")


def _group(pgid: int) -> list[psutil.Process]:
    out = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE:
                out.append(process)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return out


def _stop(process: subprocess.Popen[str], send) -> tuple[str, float]:
    """Send the signal, wait for the command and every process of its group to be gone."""
    started = time.monotonic()
    send()
    output, _ = process.communicate(timeout=60)
    while _group(process.pid) and time.monotonic() - started < 60:
        time.sleep(0.1)
    assert not _group(process.pid), f"left running: {_group(process.pid)}"
    return output, time.monotonic() - started


def test_ctrl_c_cancels_the_cells_keeps_the_checkpoint_and_retry_resumes(tmp_path, no_sbatch_path):
    path = _long_matrix(tmp_path)
    (cell,) = load_matrix(path).active
    process = _start(path, "--wait")
    _wait_for_checkpoint(cell.folder, process, timeout_s=120)
    output, took = _stop(process, lambda: os.killpg(process.pid, signal.SIGINT))  # what Ctrl-C sends
    assert took < 15, f"stopping took {took:.1f} s"
    assert process.returncode == 130, output
    assert (
        f"1 cell(s) cancelled, their last checkpoints kept; resume with `harness matrix {path} --retry-failed --wait`"
        in output
    )

    result = load_result(cell.folder)
    assert result.status == "cancelled" and "cancelled by SIGINT; last checkpoint at step" in result.error, result.error
    steps = sorted(int(p.name.removeprefix(PREFIX)) for p in (cell.folder / CHECKPOINT_DIR).glob(f"{PREFIX}*"))
    assert steps and steps[-1] >= 5
    assert status(path).counts() == {"cancelled": 1}

    retry = subprocess.run(
        [sys.executable, "-m", "harness.cli", "matrix", str(path), "--executor", "local", "--retry-failed", "--wait"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert retry.returncode == 0, retry.stdout + retry.stderr
    assert "cells 1/1 done, 0 running, 0 pending, 0 failed" in retry.stdout  # the progress line, not a tty
    resumed = load_result(cell.folder)
    assert resumed.status == "success"
    assert resumed.efficiency.resumed_from_step == steps[-1]
    assert resumed.efficiency.train_steps == 400


def test_sigterm_to_the_waiting_command_cancels_its_cells_running_or_waiting_for_a_slot(tmp_path, no_sbatch_path):
    path = _long_matrix(tmp_path, seeds=2)  # one cell at a time: the other waits for the slot
    process = _start(path, "--wait")
    folders = [cell.folder for cell in load_matrix(path).active]
    deadline = time.monotonic() + 120
    while not any(any((f / CHECKPOINT_DIR).glob(f"{PREFIX}*")) for f in folders):
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.1)
    output, took = _stop(process, lambda: process.send_signal(signal.SIGTERM))  # `kill PID`: the command only
    assert took < 15, f"stopping took {took:.1f} s"
    assert process.returncode == 130, output
    assert "2 cell(s) cancelled" in output, output
    assert [load_result(folder).status for folder in folders] == ["cancelled", "cancelled"]
    running, waiting = sorted(
        (load_result(folder).error or "" for folder in folders), key=lambda e: "last checkpoint" not in e
    )
    assert running.startswith("cancelled by SIGTERM; last checkpoint at step"), running
    # the cell waiting for its slot: its worker ended it, or (still importing torch when the
    # signal came) the command recorded it
    assert waiting in (
        "cancelled by SIGTERM; no checkpoint taken",
        "cancelled before the cell started; no checkpoint taken",
    )


def test_a_sigterm_while_the_workers_still_start_cancels_their_cells(tmp_path, no_sbatch_path):
    """Stopped right after submission, the workers are still importing torch (no handler of the
    harness's yet: the signal's default action ends them, leaving no word): the command, which
    stopped them, records their cells cancelled rather than failed."""
    path = _long_matrix(tmp_path, seeds=2)
    process = _start(path, "--wait")
    folders = [cell.folder for cell in load_matrix(path).active]
    deadline = time.monotonic() + 60
    while not all((f / JOB_FILE).exists() for f in folders):  # both submitted, neither started its cell
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    output, took = _stop(process, lambda: process.send_signal(signal.SIGTERM))
    assert process.returncode == 130, output
    assert "2 cell(s) cancelled" in output, output
    assert [load_result(folder).status for folder in folders] == ["cancelled", "cancelled"]
    assert status(path).counts() == {"cancelled": 2}


# the real command, with a SIGTERM sent to itself right after its first job array was submitted
# and recorded, before submission returns (where a signal once killed the command and orphaned
# the workers it had started)
_SIGTERM_DURING_SUBMISSION = """
import importlib, os, signal, sys
from harness.cli import main

submit = importlib.import_module("harness.dispatch.submit")

record = submit.append_ledger
def record_then_sigterm(*args, **kwargs):
    record(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGTERM)
submit.append_ledger = record_then_sigterm
sys.exit(main(sys.argv[1:]))
"""


def test_a_sigterm_during_submission_cancels_the_cells_already_submitted(tmp_path, no_sbatch_path):
    path = _long_matrix(tmp_path, seeds=2)
    command = ["matrix", str(path), "--executor", "local", "--wait"]
    process = subprocess.Popen(
        [sys.executable, "-c", _SIGTERM_DURING_SUBMISSION, *command],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output, _ = _stop(process, lambda: None)
    assert process.returncode == 130, output
    assert "2 cell(s) cancelled" in output, output
    folders = [cell.folder for cell in load_matrix(path).active]
    assert [load_result(folder).status for folder in folders] == ["cancelled", "cancelled"]


def test_a_cell_its_worker_already_cancelled_is_counted_when_the_command_stops(tmp_path, no_sbatch_path):
    """A terminal's Ctrl-C reaches the worker as well as the command: when the worker has ended
    its cell before the command looks, the command still counts that cell, not 'nothing ran here'."""
    path = _long_matrix(tmp_path)
    (cell,) = load_matrix(path).active
    process = _start(path, "--wait")
    _wait_for_checkpoint(cell.folder, process, timeout_s=120)
    for worker in _group(process.pid):  # the worker first (its controller ignores SIGINT)
        if worker.pid != process.pid:
            worker.send_signal(signal.SIGINT)
    deadline = time.monotonic() + 60
    while not (cell.folder / "result.json").exists() or load_result(cell.folder).status != "cancelled":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    output, _ = _stop(process, lambda: process.send_signal(signal.SIGINT))
    assert process.returncode == 130, output
    assert "1 cell(s) cancelled, their last checkpoints kept" in output, output
