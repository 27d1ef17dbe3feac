"""The real path in-process (debug executor): run_cell, result files, status, resubmission, collect."""

from __future__ import annotations

import pytest
from dispatch_helpers import smoke_dict, write_matrix

from harness.dispatch import status, submit
from harness.dispatch.ledger import read_job
from harness.matrix import load_matrix
from harness.result import load_result
from harness.tracking.collect import collect, render_collect


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """tiny-bert lora succeeds; tiny-bert ia3 asks for bf16, which only the machine that runs
    the cell can refuse (a CPU here), so it passes the plan and fails when it runs."""
    tmp = tmp_path_factory.mktemp("debug")
    data = smoke_dict(tmp / "out", models=["tiny-bert"], exclude=[], executor={"cluster": "debug"})
    data["overrides"].append({"match": {"method": "ia3"}, "set": {"train": {"precision": "bf16"}}})
    path = write_matrix(tmp / "smoke.yaml", data)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        report = submit(path)
    return path, report


def test_cells_end_with_results_and_other_cells_are_unaffected(ran):
    path, report = ran
    assert report.ok and report.executor == "debug" and len(report.submitted) == 2
    states = {s.cell.method: s for s in status(path).states}
    assert states["lora"].status == "success"
    assert states["ia3"].status == "failed"
    assert "needs a GPU" in states["ia3"].error
    result = load_result(states["ia3"].cell.folder)
    assert result.traceback and "Traceback" in result.traceback
    ok = load_result(states["lora"].cell.folder)
    assert ok.cell_id == states["lora"].cell.cell_id and ok.efficiency.train_steps == 3
    assert ok.config["output_dir"] == str(states["lora"].cell.folder)
    assert ok.tracking.status == "disabled"  # SQLite store: collect logs it


def test_second_submit_submits_nothing_and_force_archives(ran):
    path, _ = ran
    again = submit(path)
    assert again.submitted == [] and again.skipped == {
        "already succeeded (--force reruns)": 1,
        "failed (--retry-failed resubmits)": 1,
    }
    matrix = load_matrix(path)
    lora = next(c for c in matrix.active if c.method == "lora")
    forced = submit(path, force=True, only="method=lora")
    assert [r.cell_id for r in forced.submitted] == [lora.cell_id]
    assert read_job(lora.folder).submissions == 2
    history = list((lora.folder / "history").iterdir())
    assert len(history) == 1 and (history[0] / "result.json").exists()
    assert load_result(lora.folder).status == "success"


def test_collect_is_idempotent(ran):
    from mlflow.tracking import MlflowClient

    path, _ = ran
    first = collect(path)
    assert first.ok, render_collect(first)
    assert len(first.created) == 2 and first.unchanged == 0
    second = collect(path)
    assert second.ok and second.created == [] and second.updated == [] and second.unchanged == 2
    assert second.parent_run_id == first.parent_run_id

    client = MlflowClient(tracking_uri=first.uri)
    experiment = client.get_experiment_by_name(first.experiment)
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("harness.role") == "matrix"]
    children = [r for r in runs if "harness.cell_id" in r.data.tags]
    assert len(runs) == 3 and len(parents) == 1 and len(children) == 2
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in children)
    assert parents[0].info.status == "FINISHED"
    lora = next(r for r in children if r.data.tags["method"] == "lora")
    assert lora.data.params["train.max_steps"] == "3" and "accuracy" in lora.data.metrics
    matrix = load_matrix(path)
    folder = next(c.folder for c in matrix.active if c.method == "lora")
    assert load_result(folder).tracking.run_id == lora.info.run_id
