"""Status from files for jobs that never reach sacct: local processes and debug runs."""

from __future__ import annotations

import subprocess
import sys

from dispatch_helpers import smoke_dict

from harness.dispatch import cell_states
from harness.dispatch.job import write_final
from harness.dispatch.ledger import JobRecord, now_iso, update_run, write_job
from harness.matrix import matrix_from_dict
from harness.result import Result, write_result


def _record(cell, executor, job_id, tmp_path):
    write_job(
        cell.folder,
        JobRecord(
            cell_id=cell.cell_id,
            job_id=job_id,
            executor=executor,
            submitit_folder=str(tmp_path),
            stderr=str(tmp_path / "err.log"),
            submitted_at=now_iso(),
        ),
    )


def test_local_and_debug_jobs(tmp_path):
    matrix = matrix_from_dict(smoke_dict(tmp_path / "out", exclude=[]), output_dir=tmp_path / "out")
    a, b, c, d, e, f = matrix.cells
    # a: a live local controller (this looks like one: "submitit" on its command line) still waiting for a slot
    waiting = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "submitit"])
    try:
        _record(a, "local", str(waiting.pid), tmp_path)
        # b: the same, with its cell worker running
        _record(b, "local", str(waiting.pid), tmp_path)
        update_run(b.folder, pid=waiting.pid, started_at=now_iso())
        # c: a local job that died without a result; its log says why
        (tmp_path / "err.log").write_text("Traceback...\nRuntimeError: boom\n")
        _record(c, "local", "999999999", tmp_path)
        # d: a debug job without result
        _record(d, "debug", "DEBUG_1", tmp_path)
        # e: a final result wins over everything; it was a time-out
        _record(e, "local", "999999999", tmp_path)
        write_final(e.config, "timeout", "time limit (1 min) reached 2 times", None)
        # f: a "running" result (preempted runner) of a dead job is not final
        _record(f, "local", "999999999", tmp_path)
        write_result(f.folder, Result(cell_id=f.cell_id, status="running", config=f.config.model_dump(mode="json")))
        report = cell_states(matrix)
    finally:
        waiting.kill()
        waiting.wait()
    got = [s.status for s in report.states]
    assert got == ["queued", "running", "failed", "failed", "timeout", "failed"]
    assert report.scheduler_calls == []
    assert report.states[2].error == "local job 999999999 ended without a final result.json: RuntimeError: boom"
    assert report.states[4].error == "time limit (1 min) reached 2 times"
    assert {s: n for s, n in report.counts().items()} == {"queued": 1, "running": 1, "failed": 3, "timeout": 1}
