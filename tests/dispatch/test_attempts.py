"""run.json keeps counting attempts across a --retry-failed (a --force starts afresh)."""

from __future__ import annotations

from pathlib import Path

from harness.config import CellConfig
from harness.dispatch.job import ENV_RUNNER, CellJob, write_final
from harness.dispatch.ledger import read_run
from harness.dispatch.status import CellState
from harness.dispatch.submit import _prepare_folder
from harness.matrix.expand import Cell
from harness.matrix.schema import Resources


def failing_runner(config: CellConfig) -> None:
    write_final(config, "failed", "RuntimeError: boom", None)


def test_attempts_carry_over_a_retry_and_restart_on_force(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(ENV_RUNNER, "test_attempts:failing_runner")
    config = CellConfig(model="tiny-bert", method="lora", task="emotion", output_dir=tmp_path / "cell")
    cell = Cell(config=config, resources=Resources())
    attempts = []
    for force in (False, False, True):
        _prepare_folder(cell, CellState(cell=cell, status="failed"), force=force)
        CellJob(time_limit_min=5)(config.model_dump(mode="json"))
        attempts.append(read_run(cell.folder).attempts)
    # --force archives a failed cell like a retry (only a success is started afresh)
    assert attempts == [1, 2, 3]
    # the job's word on a runner that never wrote result.json (harness.result.OUTCOME_FILE)
    (cell.folder / "outcome.json").write_text(
        (cell.folder / "outcome.json").read_text().replace('"failed"', '"success"')
    )
    _prepare_folder(cell, CellState(cell=cell, status="success"), force=True)
    assert read_run(cell.folder) is None


def test_a_job_runs_past_a_run_json_that_is_not_one(tmp_path: Path, monkeypatch) -> None:
    """A requeued job (no --retry-failed to move it aside) whose run.json is not a record: it
    runs the cell and writes run.json again, as update_run does, instead of dying before the
    runner with a traceback and no word in the folder."""
    monkeypatch.setenv(ENV_RUNNER, "test_attempts:failing_runner")
    config = CellConfig(model="tiny-bert", method="lora", task="emotion", output_dir=tmp_path / "cell")
    config.output_dir.mkdir(parents=True)
    (config.output_dir / "run.json").write_text("[]")
    done = CellJob(time_limit_min=5)(config.model_dump(mode="json"))
    assert done["status"] == "failed"  # the runner's word (boom), not a crash before it
    record = read_run(config.output_dir)
    assert record is not None and record.attempts == 1 and record.finished_at is not None
    assert "boom" in (config.output_dir / "outcome.json").read_text()
