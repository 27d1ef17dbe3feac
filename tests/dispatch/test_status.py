"""Status from files for jobs that never reach sacct: local processes and debug runs."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from dispatch_helpers import smoke_dict, write_matrix
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.dispatch import cell_states, plan, render_plan, render_status, status, submit
from harness.dispatch.cell_state import CELL_STATUSES
from harness.dispatch.job import write_final
from harness.dispatch.ledger import JobRecord, RunRecord, now_iso, read_job, update_run, write_job
from harness.matrix import load_matrix, matrix_from_dict
from harness.result import CollectedTracking, JobOutcome, Result, TrackingStatus, write_result


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


def test_a_dead_jobs_stderr_line_is_redacted_and_one_line_in_status(tmp_path):
    """The job's own stderr is the one text status prints that no harness writer redacted: an
    HTTPError's URL with its token, a password in a URL, an escape sequence, all as one line."""
    matrix = matrix_from_dict(smoke_dict(tmp_path / "out", exclude=[]), output_dir=tmp_path / "out")
    cell = matrix.cells[0]
    (tmp_path / "err.log").write_text(
        "Traceback...\nHTTPError: 401 for url https://hub.example/x?token=hf_SECRET1 "
        "(mirror http://alice:pa@ss2@host/) \x1b[31mred\n"
    )
    _record(cell, "local", "999999999", tmp_path)
    state = cell_states(matrix, [cell]).states[0]
    assert state.status == "failed"
    assert "SECRET1" not in state.error and "ss2" not in state.error and "\x1b" not in state.error, state.error
    assert state.error.endswith(
        "HTTPError: 401 for url https://hub.example/x?token=*** (mirror http://alice:***@host/) \\x1b[31mred"
    ), state.error


# --------------------------------------------------------------------------- corrupt state files


def corrupt_matrix(tmp_path):
    """A debug matrix of seven tiny-bert cells, each with one file (or its folder) not what the
    harness wrote; returns the matrix file and, per seed, the line status must say."""
    data = smoke_dict(tmp_path / "out", models=["tiny-bert"], methods=["lora"], seeds=list(range(7)), exclude=[])
    data["executor"] = {"cluster": "debug"}
    path = write_matrix(tmp_path / "corrupt.yaml", data)
    cells = load_matrix(path).cells
    for cell in cells:
        cell.folder.mkdir(parents=True)

    def result(cell, **changes):
        saved = Result(cell_id=cell.cell_id, status="success", config=cell.config.model_dump(mode="json"))
        return json.dumps({**saved.model_dump(mode="json"), **changes})

    (cells[0].folder / "job.json").mkdir()
    _record(cells[1], "debug", "DEBUG_1", tmp_path)
    (cells[1].folder / "run.json").mkdir()
    (cells[2].folder / "result.json").write_text("[]")
    (cells[3].folder / "result.json").write_text(result(cells[3], metrics=[1]))
    (cells[4].folder / "outcome.json").write_bytes(b"\xff\xfe{")
    (cells[5].folder / "result.json").write_text(result(cells[5]))
    (cells[5].folder / "tracking.json").write_text("[]")
    cells[6].folder.rmdir()
    cells[6].folder.symlink_to(tmp_path / "gone")
    lines = [
        "corrupt: job.json: a directory, not a file",
        "corrupt: run.json: a directory, not a file",
        "corrupt: result.json: a JSON array, not an object",
        "corrupt: result.json: metrics: Input should be a valid dictionary",
        "corrupt: outcome.json: not UTF-8 text (byte 0)",
        "corrupt: tracking.json: a JSON array, not an object",
        f"corrupt: {cells[6].folder.name}: a symlink to {tmp_path / 'gone'} that leads to no folder",
    ]
    return path, lines


def test_corrupt_state_is_one_line_in_status_and_plan(tmp_path):
    path, lines = corrupt_matrix(tmp_path)
    report = status(path)
    assert [(s.status, s.error) for s in report.states] == [("corrupt", line) for line in lines]
    text = render_status(report)
    assert "7 cells: 7 corrupt" in text and all(line in text for line in lines)
    planned = plan(path, params=False)
    assert [(r["status"], r["error"]) for r in planned.rows] == [("corrupt", line) for line in lines]
    assert all(line[:70] in render_plan(planned) for line in lines)  # the plan's table cuts at 80 columns
    # the command line says the same, with no traceback
    for command in (["status", str(path)], ["plan", str(path), "--no-scripts"]):
        done = subprocess.run(
            [sys.executable, "-m", "harness.cli", *command], capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
        assert all(line[:70] in done.stdout for line in lines)


def test_retry_failed_runs_corrupt_cells_again(tmp_path):
    path, _ = corrupt_matrix(tmp_path)
    plain = submit(path)
    assert plain.submitted == [] and plain.skipped == {"corrupt (--retry-failed resubmits)": 7}
    again = submit(path, retry_failed=True)
    assert again.ok and len(again.submitted) == 7
    report = status(path)
    assert [s.status for s in report.states] == ["success"] * 7
    cells = report.matrix.cells
    # the corrupt files went aside: into the cell's history with the previous result, the folder
    # that was a dangling symlink renamed beside it
    assert (next((cells[0].folder / "history").iterdir()) / "job.json").is_dir()
    assert (next((cells[2].folder / "history").iterdir()) / "result.json").read_text() == "[]"
    moved = cells[6].folder.with_name(cells[6].folder.name + ".corrupt")
    assert moved.is_symlink() and cells[6].folder.is_dir() and not cells[6].folder.is_symlink()
    # a readable job.json counts on (cell 1's), a corrupt one starts again
    assert [read_job(c.folder).submissions for c in cells] == [1, 2, 1, 1, 1, 1, 1]


SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def content(template: dict) -> st.SearchStrategy:
    """What a state file may hold: nothing, any JSON, the harness's own record with some fields
    replaced or added, or bytes that are not JSON."""
    keys = st.sampled_from([*template, "extra"])
    return st.one_of(
        st.none(),
        JSON,
        st.dictionaries(keys, JSON, max_size=3).map(lambda changes: {**template, **changes}),
        st.binary(max_size=12),
    )


def no_slurm(command):
    """sacct/squeue as subprocess would run them without SLURM (a NUL in a job id is its ValueError)."""
    if any("\0" in part for part in command):
        raise ValueError("embedded null byte")
    return subprocess.CompletedProcess(command, 1, "", "slurm_load_jobs error: no cluster")


@pytest.fixture(scope="module")
def sweep_file(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    data = smoke_dict(tmp / "out", models=["tiny-bert"], methods=["lora"], exclude=[])
    data["executor"] = {"cluster": "debug"}
    data["sweep"] = [{"values": {"train.learning_rate": [1.0e-4, 1.0e-3]}}]
    data["select"] = {"metric": "f1_macro", "split": "validation"}
    return write_matrix(tmp / "hostile.yaml", data)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_state_file_content_is_a_status_never_a_traceback(sweep_file, data):
    """Whatever result.json, outcome.json, tracking.json, job.json, run.json (of a grid point) and
    stage2.json hold, status and plan say what each cell is (corrupt with one line when a file is
    not what the harness wrote), and never raise."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        point, other = load_matrix(sweep_file, output_dir=out).cells
        config = point.config.model_dump(mode="json")
        result = Result(cell_id=point.cell_id, status="success", config=config, metrics={"f1_macro": 0.5})
        templates = {
            "result.json": result.model_dump(mode="json"),
            "outcome.json": JobOutcome(cell_id=point.cell_id, status="failed", config=config).model_dump(mode="json"),
            "tracking.json": CollectedTracking(started_at=result.started_at, tracking=TrackingStatus()).model_dump(),
            "job.json": JobRecord(
                cell_id=point.cell_id, job_id="12", executor="local", submitit_folder=tmp, submitted_at=now_iso()
            ).model_dump(mode="json"),
            "run.json": RunRecord(attempts=1, pid=1).model_dump(mode="json"),
        }
        point.folder.mkdir(parents=True)
        for name, template in templates.items():
            text = data.draw(content(template), label=name)
            if text is not None:
                (point.folder / name).write_bytes(text if isinstance(text, bytes) else json.dumps(text).encode())
        if data.draw(st.booleans(), label="other point finished"):
            write_result(other.folder, result.model_copy(update={"cell_id": other.cell_id}))
        stage2 = data.draw(content({"executor": "local", "after": ["1"], "matrix": str(sweep_file), "pid": 1}))
        if stage2 is not None:
            (out / "stage2.json").write_bytes(stage2 if isinstance(stage2, bytes) else json.dumps(stage2).encode())

        report = status(sweep_file, output_dir=out, runner=no_slurm)
        render_status(report)
        planned = plan(sweep_file, output_dir=out, params=False, runner=no_slurm)
        render_plan(planned)
        for state in report.states:
            assert state.status in CELL_STATUSES
            if state.status == "corrupt":
                assert state.error.startswith("corrupt: ") and "\n" not in state.error
        assert [r["status"] for r in planned.rows][: len(report.states)] == [s.status for s in report.states]


def test_plan_counts_to_run_only_the_cells_matrix_would_submit(tmp_path):
    """Succeeded cells are not 'to run': the plan's count is what ``harness matrix`` submits."""
    data = smoke_dict(tmp_path / "out", models=["tiny-bert"], methods=["lora"], seeds=[0, 1, 2], exclude=[])
    data["executor"] = {"cluster": "debug"}
    path = write_matrix(tmp_path / "done.yaml", data)
    cells = load_matrix(path).cells
    for cell in cells[:2]:
        write_result(
            cell.folder, Result(cell_id=cell.cell_id, status="success", config=cell.config.model_dump(mode="json"))
        )
    planned = plan(path, params=False)
    assert planned.to_run == 1
    assert "3 cells (1 to run, 0 excluded, 2 already succeeded (--force reruns))" in render_plan(planned)
    submitted = submit(path)
    assert len(submitted.submitted) == planned.to_run
