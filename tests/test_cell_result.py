"""result.json's one owner (harness.result.ResultFile): the cell's life-cycle (running -> final,
the full-disk path, redaction), and load_result merging what the job and collect write beside it."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

import harness.result as result_module
from harness.config import CellConfig
from harness.dispatch.job import write_final
from harness.matrix.sweep import read_outcome
from harness.result import (
    OUTCOME_FILE,
    RESULT_FILE,
    SPACE_RESERVE,
    TRACKING_FILE,
    Result,
    ResultFile,
    TrackingStatus,
    has_result,
    load_result,
)

SECRET_URI = "http://alice:hunter2@mlflow.example:5000"


def config(tmp_path: Path) -> CellConfig:
    return CellConfig(model="tiny-bert", method="lora", task="emotion", output_dir=tmp_path / "cell")


def running(cfg: CellConfig) -> Result:
    return Result(cell_id=cfg.cell_id, status="running", config=cfg.public_dump())


def on_disk(folder: Path, name: str = RESULT_FILE) -> dict:
    return json.loads((folder / name).read_text())


def test_life_cycle_running_then_final_then_tracking(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    folder = Path(cfg.output_dir)
    folder.mkdir()
    (folder / OUTCOME_FILE).write_text("{}")  # an earlier run's job and collect left these
    (folder / TRACKING_FILE).write_text("{}")
    file = ResultFile(folder)
    file.reserve()
    assert (folder / SPACE_RESERVE).stat().st_size == result_module.SPACE_RESERVE_BYTES
    result = running(cfg)
    file.begin(result)
    assert on_disk(folder)["status"] == "running"
    assert not (folder / OUTCOME_FILE).exists() and not (folder / TRACKING_FILE).exists()
    result.metrics = {"accuracy": 0.5}
    result.status, result.finished_at = "success", "2026-01-01T00:00:00+00:00"
    file.finish(result)
    assert load_result(folder).status == "success" and load_result(folder).metrics == {"accuracy": 0.5}
    result.tracking = TrackingStatus(status="logged", uri=SECRET_URI, run_id="abc")
    file.note_tracking(result)
    file.release()
    text = (folder / RESULT_FILE).read_text()
    assert "hunter2" not in text and "alice:***@" in text  # redacted, whichever field carries it
    assert load_result(folder).tracking.run_id == "abc"
    assert sorted(p.name for p in folder.iterdir()) == [RESULT_FILE]  # no reserve, no temp file


def test_a_full_disk_frees_the_reserve_and_ends_failed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config(tmp_path)
    folder = Path(cfg.output_dir)
    folder.mkdir()
    file = ResultFile(folder)
    file.reserve()
    result = running(cfg)
    file.begin(result)
    real, calls = result_module.write_json_atomic, []

    def full_once(path: Path, payload: object) -> None:
        calls.append(path)
        if len(calls) == 1:  # the disk is full until the reserve is freed
            raise OSError(errno.ENOSPC, "No space left on device")
        assert not (folder / SPACE_RESERVE).exists()
        real(path, payload)

    monkeypatch.setattr(result_module, "write_json_atomic", full_once)
    result.status = "success"
    file.finish(result)
    saved = load_result(folder)
    assert saved.status == "failed" and "No space left on device" in (saved.error or "")
    assert len(calls) == 2


def test_the_job_outcome_completes_a_running_result(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    folder = Path(cfg.output_dir)
    folder.mkdir()
    result = running(cfg)
    result.metrics = {"accuracy": 0.25}
    ResultFile(folder).begin(result)
    write_final(cfg, "timeout", f"time limit reached; tracking at {SECRET_URI}", None)
    assert on_disk(folder)["status"] == "running"  # the job never writes result.json
    assert "hunter2" not in (folder / OUTCOME_FILE).read_text()
    merged = load_result(folder)
    assert merged.status == "timeout" and merged.error and "alice:***@" in merged.error
    assert merged.metrics == {"accuracy": 0.25} and merged.started_at == result.started_at and merged.finished_at
    assert read_outcome(folder, {}, "accuracy", cfg.cell_id).status == "timeout"
    # the runner's own final word wins, whenever it lands
    result.status = "success"
    ResultFile(folder).finish(result)
    assert load_result(folder).status == "success"
    write_final(cfg, "failed", "late", None)
    assert load_result(folder).status == "success" and on_disk(folder, OUTCOME_FILE)["status"] == "timeout"


def test_the_job_outcome_stands_alone_when_the_runner_wrote_nothing(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    folder = Path(cfg.output_dir)
    assert not has_result(folder)
    write_final(cfg, "failed", "ModuleNotFoundError: No module named 'x'", "Traceback ...")
    assert has_result(folder) and not (folder / RESULT_FILE).exists()
    merged = load_result(folder)
    assert (merged.cell_id, merged.status, merged.config) == (cfg.cell_id, "failed", cfg.public_dump())
    assert merged.traceback == "Traceback ..." and merged.finished_at
    # an unreadable result.json is replaced by the job's word, as before
    (folder / RESULT_FILE).write_text("{not json")
    assert load_result(folder).status == "failed"


def test_collect_tracking_applies_to_the_result_it_logged_only(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    folder = Path(cfg.output_dir)
    folder.mkdir()
    result = running(cfg)
    result.status, result.finished_at = "success", "2026-01-01T00:00:00+00:00"
    result.tracking.status = "disabled"
    ResultFile(folder).finish(result)
    ResultFile(folder).note_collected(load_result(folder), TrackingStatus(status="logged", uri=SECRET_URI, run_id="r1"))
    assert on_disk(folder)["tracking"]["status"] == "disabled"  # collect never writes result.json
    merged = load_result(folder)
    assert (merged.tracking.status, merged.tracking.run_id, merged.tracking.uri) == (
        "logged",
        "r1",
        "http://alice:***@mlflow.example:5000",
    )
    # the same cell run again: the earlier collect's note is not this result's
    again = result.model_copy(update={"started_at": "2026-02-02T00:00:00+00:00"})
    ResultFile(folder).write(again)
    assert load_result(folder).tracking.status == "disabled"
    # a result file read as it is (a result.json downloaded from MLflow) merges nothing
    (tmp_path / "dl").mkdir()
    (tmp_path / "dl" / "copy.json").write_text((folder / RESULT_FILE).read_text())
    assert load_result(tmp_path / "dl" / "copy.json").tracking.status == "disabled"
