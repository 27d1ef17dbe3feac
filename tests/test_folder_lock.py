"""One live writer per cell folder: a second run stops before touching it; status sees the live one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from harness import folder_lock
from harness.config import CellConfig
from harness.dispatch.job import ENV_RUNNER, CellJob

HOLD = "import sys, time; from harness import folder_lock; folder_lock.acquire(sys.argv[1]); print('held', flush=True); time.sleep(600)"


@pytest.fixture
def held(tmp_path: Path):
    """Another live process holds the lock of tmp_path/cell (as an orphaned worker would)."""
    cell = tmp_path / "cell"
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(cell)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    yield cell, process
    process.kill()
    process.wait()


def test_a_second_writer_is_refused_until_the_first_dies(held) -> None:
    cell, process = held
    assert folder_lock.holder(cell) == f"pid {process.pid} on {os.uname().nodename}"
    with pytest.raises(folder_lock.CellBusy, match=f"in use by a live run \\(pid {process.pid} on "):
        folder_lock.acquire(cell)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert folder_lock.holder(cell) is None
    assert folder_lock.acquire(cell) is True and folder_lock.acquire(cell) is False  # re-entrant
    folder_lock.release(cell)


def fake_runner(config: CellConfig) -> None:  # pragma: no cover - must never run on a busy folder
    raise AssertionError("the runner ran on a folder another process writes")


def test_a_job_on_a_busy_folder_writes_nothing(held, monkeypatch) -> None:
    cell, _ = held
    monkeypatch.setenv(ENV_RUNNER, "test_folder_lock:fake_runner")
    before = sorted(p.name for p in cell.iterdir())
    config = CellConfig(model="tiny-bert", method="lora", task="emotion", output_dir=cell)
    outcome = CellJob(time_limit_min=5)(config.model_dump(mode="json"))
    assert outcome["status"] == "busy" and "in use by a live run" in outcome["error"]
    assert sorted(p.name for p in cell.iterdir()) == before


def test_status_reports_a_folder_with_a_live_writer_as_running(held, tmp_path: Path) -> None:
    """The local job that status knows of is dead (its /bin/sh wrapper was killed), its worker is not."""
    from harness.dispatch import status
    from harness.dispatch.ledger import JobRecord, write_job
    from harness.matrix import load_matrix

    cell, process = held
    matrix_file = tmp_path / "m.yaml"
    matrix_file.write_text(
        f"name: m\noutput_dir: {tmp_path / 'out'}\nexecutor: {{kind: local}}\n"
        "models: [tiny-bert]\nmethods: [lora]\ntasks: [emotion]\n"
    )
    folder = load_matrix(matrix_file).active[0].folder
    folder.parent.mkdir(parents=True)
    cell.rename(folder)  # the holder keeps its lock: flock follows the open file, not the name
    write_job(
        folder,
        JobRecord(
            cell_id="x",
            job_id="999999999",
            executor="local",
            submitit_folder=str(tmp_path),
            submitted_at="2026-01-01T00:00:00+00:00",
        ),
    )
    assert status(matrix_file).states[0].status == "running"
