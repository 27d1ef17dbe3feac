"""The one-line progress summary (``harness matrix --wait``, ``harness status --watch``)."""

from __future__ import annotations

import io

import pytest
from dispatch_helpers import smoke_dict, write_matrix

from harness.cli import main
from harness.dispatch import status
from harness.dispatch.progress import ProgressPrinter, progress_line
from harness.matrix import load_matrix
from harness.result import Result, write_result


def test_line_counts_and_estimate():
    counts = {"success": 3, "running": 2, "queued": 1, "pending": 3, "failed": 1, "cancelled": 1, "excluded": 4}
    # 6 cells still to end, 2 at once, 90 s each on average: 4m30s
    line = progress_line(counts, 312, [60.0, 120.0], slots=2)
    assert line == "cells 3/11 done, 2 running, 4 pending, 2 failed | 5m12s elapsed, ~4m30s left"


def test_a_halving_point_paused_at_its_rung_is_not_counted_failed():
    line = progress_line({"success": 1, "paused": 2, "queued": 4}, 60, [30.0], slots=2)
    assert line.startswith("cells 1/7 done, 0 running, 4 pending, 2 paused at a rung, 0 failed |"), line


def test_line_says_estimating_until_a_cell_has_ended_and_finished_at_the_end():
    assert progress_line({"running": 2}, 5, [], slots=2).endswith("| 5s elapsed, estimating time left")
    assert progress_line({"success": 2}, 3700, [1.0, 2.0], slots=2).endswith("| 1h01m elapsed, finished")
    assert progress_line({}, 0, [], slots=1) == "cells 0/0 done, 0 running, 0 pending, 0 failed | 0s elapsed, finished"


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_printer_rewrites_in_place_on_a_terminal_and_prints_changes_only_elsewhere(finished_matrix):
    report = status(finished_matrix)
    log = io.StringIO()
    printer = ProgressPrinter(log)
    for elapsed in (1, 2, 3):
        printer.show(report, elapsed)
    printer.close()
    assert log.getvalue() == "cells 2/2 done, 0 running, 0 pending, 0 failed | 1s elapsed, finished\n"

    tty = _Tty()
    printer = ProgressPrinter(tty)
    printer.show(report, 1)
    printer.show(report, 2)
    printer.close()
    assert tty.getvalue().count("\r") == 2 and tty.getvalue().endswith("2s elapsed, finished\n")


def _finished(tmp_path):
    data = smoke_dict(tmp_path / "out", models=["tiny-bert"], methods=["lora"], seeds=[0, 1], exclude=[])
    data["executor"] = {"cluster": "debug"}
    path = write_matrix(tmp_path / "done.yaml", data)
    for cell in load_matrix(path).cells:
        result = Result(
            cell_id=cell.cell_id,
            status="success",
            config=cell.config.model_dump(mode="json"),
            started_at="2026-01-01T10:00:00+00:00",
            finished_at="2026-01-01T10:01:00+00:00",
        )
        write_result(cell.folder, result)
    return path


@pytest.fixture
def finished_matrix(tmp_path):
    return _finished(tmp_path)


def test_status_watch_on_a_finished_matrix_exits_with_the_final_line(finished_matrix, capsys):
    assert main(["status", str(finished_matrix), "--watch", "--interval", "0.1"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == ["cells 2/2 done, 0 running, 0 pending, 0 failed | 0s elapsed, finished"]


def test_status_watch_refuses_a_non_positive_interval(finished_matrix, capsys):
    assert main(["status", str(finished_matrix), "--watch", "--interval", "0"]) == 2
    assert "--interval must be a positive number of seconds" in capsys.readouterr().err
