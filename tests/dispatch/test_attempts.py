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
