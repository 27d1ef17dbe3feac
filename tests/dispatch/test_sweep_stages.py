"""A sweep's two stages on the real executors: stage 1 runs, the matrix selects, and stage 2 is
submitted without a second command (in-process for debug, by a detached process for local, by
a dependency job on the local SLURM cluster); status and the report show both stages."""

from __future__ import annotations

import json

import yaml
from dispatch_helpers import smoke_dict, write_matrix

from harness.dispatch import plan, render_plan, render_status, status, submit, wait
from harness.dispatch.stages import CONTINUATION_FILE
from harness.matrix import load_matrix
from harness.names import FINAL_STAGE, SELECT_STAGE
from harness.result import load_result

LR = "train.learning_rate"


def sweep_file(tmp, executor: str):
    data = smoke_dict(
        tmp / "out",
        models=["tiny-bert"],
        methods=["lora"],
        seeds=[0, 1],
        exclude=[],
        executor={"cluster": executor, "array_parallelism": 2},
    )
    data["defaults"]["train"]["max_steps"] = 2
    data["sweep"] = [{"values": {LR: [1.0e-4, 3.0e-2]}}]
    data["select"] = {"metric": "f1_macro", "split": "validation"}
    return write_matrix(tmp / "sweep.yaml", data)


def check_both_stages(path):
    report = status(path)
    assert report.finished and {s.status for s in report.states} == {"success"}
    stages = [s.cell.stage for s in report.states]
    assert stages.count(SELECT_STAGE) == 2 and stages.count(FINAL_STAGE) == 2
    selection = report.matrix.selections[0]
    assert selection.state == "selected"
    best = max(selection.outcomes, key=lambda o: o.value)
    assert selection.choice.point == best.point
    for state in report.states:
        result = load_result(state.cell.folder)
        split = "validation" if state.cell.stage == SELECT_STAGE else "test"
        assert result.config["data"]["eval_split"] == split
        if state.cell.stage == FINAL_STAGE:
            assert result.run.learning_rate == selection.choice.point[LR]
    text = render_status(report)
    assert "1 select" in text and "2 final" in text and "selected train.learning_rate=" in text
    return report


def test_debug_runs_stage_two_in_the_same_command(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = sweep_file(tmp_path, "debug")
    report = submit(path)
    assert report.ok and len(report.submitted) == 4
    check_both_stages(path)
    # nothing left to do: a second submission submits nothing
    assert submit(path).submitted == []

    from harness.report import build_report

    folder = build_report(path)
    selection = (folder / "sweep_selection.csv").read_text()
    assert "train.learning_rate" in selection and "ok" in selection
    assert (folder / "plots" / "sensitivity_emotion_tiny-bert.png").stat().st_size > 0
    import pandas as pd

    quality = pd.read_csv(folder / "classification_quality.csv")
    lora = quality[quality["method"] == "lora"]
    assert len(lora) == 1 and (lora.iloc[0]["seeds_finished"], lora.iloc[0]["seeds_planned"]) == (2, 2)  # not the grid


def test_local_stage_two_is_submitted_by_a_detached_process(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = sweep_file(tmp_path, "local")
    report = submit(path)
    assert report.ok and len(report.submitted) == 2
    record = json.loads((tmp_path / "out" / CONTINUATION_FILE).read_text())
    assert record["executor"] == "local" and record["pid"] > 0
    assert any("stage 2 is submitted by process" in n for n in report.notices)
    deadline_s = 300
    wait(path, timeout_s=deadline_s, poll_s=1.0)  # stage 1
    import time

    start = time.monotonic()
    while (
        len(load_matrix(path).cells) < 4
        or not status(path).finished
        or any(s.status == "pending" for s in status(path).states)
    ):
        assert time.monotonic() - start < deadline_s, render_status(status(path))
        time.sleep(1.0)
    check_both_stages(path)


def test_wait_submits_stage_two_itself(tmp_path, monkeypatch):
    """``harness matrix --wait``: no continuation process, the waiting one submits stage 2."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = sweep_file(tmp_path, "local")
    report = submit(path, continue_stages=False)
    assert report.ok and not (tmp_path / "out" / CONTINUATION_FILE).exists()
    wait(path, timeout_s=300, poll_s=1.0, continue_stages=True)
    check_both_stages(path)


def test_a_diverged_grid_point_is_a_failed_point_never_the_selected_one(tmp_path, monkeypatch):
    """The highest rate of the grid diverges (tiny-bert at 1e6: loss ~1e6 at step 2): stage 1 ends
    it ``diverged``, the selection leaves it out and says so, stage 2 runs the best other point,
    and --retry-failed does not run it again (the same settings diverge again)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = sweep_file(tmp_path, "debug")
    data = yaml.safe_load(path.read_text())
    data["sweep"] = [{"values": {LR: [1.0e-4, 3.0e-2, 1.0e6]}}]
    write_matrix(path, data)
    report = submit(path)
    assert report.ok and len(report.submitted) == 5, report.errors
    final = status(path)
    points = {s.cell.point[LR]: s for s in final.states if s.cell.stage == SELECT_STAGE}
    assert sorted(points) == [1.0e-4, 3.0e-2, 1.0e6]
    diverged = points[1.0e6]
    assert diverged.status == "diverged" and diverged.error.startswith("TrainingDiverged: training diverged at step 2")
    assert final.counts() == {"success": 4, "diverged": 1}
    selection = final.matrix.selections[0]
    assert selection.state == "selected" and selection.choice.point[LR] != 1.0e6
    assert [o.status for o in selection.choice.failed] == ["diverged"]
    text = render_status(final)
    assert "1 diverged" in text and "train.learning_rate=1e+06 diverged" in text, text
    again = submit(path, retry_failed=True)
    assert again.submitted == [] and again.skipped.get("diverged (--force reruns)") == 1, again.skipped

    from harness.report import build_report

    folder = build_report(path)
    selection_csv = (folder / "sweep_selection.csv").read_text()
    assert "left out: 1 diverged" in selection_csv, selection_csv
    not_finished = (folder / "not_finished.csv").read_text()
    assert "diverged" in not_finished and "TrainingDiverged" in not_finished, not_finished


def test_a_corrupt_grid_point_and_stage2_file_are_one_line_and_retried(tmp_path, monkeypatch):
    """A grid point's result.json that is ``[]`` and a stage2.json that is ``[]``: status and plan
    say "corrupt: <file>: <reason>" (the other point still waits), nothing raises, and
    --retry-failed runs the point again; stage 2 follows."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = sweep_file(tmp_path, "debug")
    first = load_matrix(path).selections[0].points[0]
    first.folder.mkdir(parents=True)
    (first.folder / "result.json").write_text("[]")
    (tmp_path / "out" / CONTINUATION_FILE).write_text("[]")
    line = "corrupt: result.json: a JSON array, not an object"
    report = status(path)
    assert [(s.status, s.error) for s in report.states] == [("corrupt", line), ("pending", None)]
    text = render_status(report)
    assert line in text and "corrupt: stage2.json: a JSON array, not an object" in text
    assert "stage 1 1/2 grid points finished" in text  # the corrupt point has ended, the other waits
    planned = plan(path, params=False)
    assert planned.rows[0]["status"] == "corrupt" and planned.rows[0]["error"] == line
    assert "corrupt: stage2.json" in render_plan(planned)

    report = submit(path, retry_failed=True)
    assert report.ok and len(report.submitted) == 4  # both points, then stage 2 on both seeds
    check_both_stages(path)
    assert (next((first.folder / "history").iterdir()) / "result.json").read_text() == "[]"
