"""The executor registry: every entry answers the whole protocol; executor.cluster (or its old
name, executor.kind) names one of them, and an unknown name is refused in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dispatch_helpers import calls, smoke_dict, write_matrix

from harness.cli import main
from harness.dispatch import cell_states, plan
from harness.dispatch.cell_state import CellState
from harness.dispatch.executor import Continuation, Executor, JobsRead, group_cells
from harness.dispatch.executors import EXECUTORS, executor_names, executor_refusal, get_executor, resolve_cluster
from harness.dispatch.ledger import JobRecord, now_iso, write_job
from harness.dispatch.stages import CONTINUATION_FILE, describe, schedule
from harness.errors import ConfigError
from harness.matrix import Resources, load_matrix, matrix_from_dict

VALID = "valid: " + ", ".join(EXECUTORS)


def _matrix(tmp_path: Path, **executor):
    data = smoke_dict(tmp_path / "out", models=["tiny-bert"], methods=["lora"], exclude=[])
    data["executor"] = {**{k: v for k, v in data["executor"].items() if k not in ("kind", "cluster")}, **executor}
    return data


@pytest.mark.parametrize("name", executor_names())
def test_every_entry_answers_the_whole_protocol(name, tmp_path, stub_slurm):
    entry = get_executor(name)
    assert isinstance(entry, Executor) and entry.name == name and not type(entry).__abstractmethods__
    assert isinstance(entry.in_process, bool) and isinstance(entry.multi_node, bool)
    matrix = matrix_from_dict(_matrix(tmp_path, cluster=name), output_dir=tmp_path / "out")
    assert resolve_cluster(matrix) == (entry, None)  # sbatch (a stub) is on the PATH
    group = group_cells(matrix.active)[0]
    script = entry.job_script(matrix, group)
    assert script.startswith("#!/bin/bash") and script.endswith("\n")
    assert entry.slots_folder(matrix) is None or isinstance(entry.slots_folder(matrix), str)
    assert entry.make(matrix, group, n_local=1) is not None
    record = JobRecord(
        cell_id="c", job_id="4242_0", executor=name, submitit_folder=str(tmp_path), submitted_at=now_iso()
    )
    assert isinstance(entry.describe_jobs([record]), str)
    assert isinstance(entry.read_states([], None), JobsRead)
    assert entry.cancel([]) == []
    # refusals follow the entry's fields, never its name
    assert (executor_refusal(entry, Resources(nodes=2)) is None) == entry.multi_node
    assert (executor_refusal(entry, Resources(tasks_per_node=2)) is None) == (not entry.in_process)


def test_each_entry_schedules_stage_two_its_own_way(tmp_path, stub_slurm):
    """SLURM: a job held on stage 1 that runs the continuation module; local: a detached process;
    in-process: nothing to start (stage 2 follows in the submitting process)."""
    data = _matrix(tmp_path, cluster="slurm")
    data["exclude"] = [{"match": {"method": "lora"}, "reason": "nothing to run: the continuation only submits"}]
    matrix = load_matrix(write_matrix(tmp_path / "m.yaml", data))
    (matrix.output_dir / CONTINUATION_FILE).mkdir(parents=True)  # corrupt: a folder, moved aside
    assert describe(matrix.output_dir) == "corrupt: stage2.json: a directory, not a file"
    line = schedule(matrix, get_executor("slurm"), None, ["1000"])
    assert (matrix.output_dir / f"{CONTINUATION_FILE}.corrupt").is_dir()
    record = json.loads((matrix.output_dir / CONTINUATION_FILE).read_text())
    assert record["executor"] == "slurm" and record["after"] == ["1000"] and record["job_id"], record
    assert describe(matrix.output_dir) == f"stage 2 is submitted by job {record['job_id']} (slurm) when stage 1 ends"
    assert "afterany:1000" in line and len(calls(stub_slurm, "sbatch")) == 1
    script = next(stub_slurm.glob("sbatch-*.sh")).read_text()
    assert "#SBATCH --job-name=harness-smoke-stage2" in script and "#SBATCH --dependency=afterany:1000" in script

    line = schedule(matrix, get_executor("local"), "method=lora", ["123"])
    record = json.loads((matrix.output_dir / CONTINUATION_FILE).read_text())
    assert record["executor"] == "local" and record["pid"] > 0 and "stage 2 is submitted by process" in line
    os.waitpid(record["pid"], 0)  # every cell is excluded: the continuation submits nothing and ends
    log = (matrix.submitit_folder / "stage2.log").read_text()
    assert "matrix smoke: submitted 0 cells" in log, log

    assert not get_executor("debug").schedule(matrix, Continuation("m", "o", "debug", None, "x"), [])[0]


def test_cancel(tmp_path):
    slurm, local = get_executor("slurm"), get_executor("local")
    ran: list[list[str]] = []

    def runner(command):
        ran.append(command)
        return subprocess.CompletedProcess(command, 0, "", "")

    jobs = [
        JobRecord(
            cell_id=str(i), job_id=job_id, executor="slurm", submitit_folder=str(tmp_path), submitted_at=now_iso()
        )
        for i, job_id in enumerate(["7_1", "7_0", "7_1"])
    ]
    assert slurm.cancel(jobs, runner) == [["scancel", "7_0", "7_1"]] == ran

    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "submitit.local._local"])
    try:
        time.sleep(0.2)
        record = JobRecord(
            cell_id="c",
            job_id=str(process.pid),
            executor="local",
            submitit_folder=str(tmp_path),
            submitted_at=now_iso(),
        )
        local.cancel([record])
        assert process.wait(timeout=10) != 0
    finally:
        process.kill()


@pytest.mark.parametrize("command", ["plan", "matrix"])
def test_an_unknown_cluster_is_one_line_naming_the_valid_ones(command, tmp_path, capsys):
    path = write_matrix(tmp_path / "m.yaml", _matrix(tmp_path, cluster="k8s"))
    assert main([command, str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"harness: error: {path}: executor.cluster: unknown executor 'k8s'; {VALID}"]
    assert not (tmp_path / "out").exists()  # nothing planned or submitted
    write_matrix(path, _matrix(tmp_path, kind="k8s"))  # the old key too
    assert main([command, str(path)]) == 2
    assert (
        capsys.readouterr().err.strip() == f"harness: error: {path}: executor.cluster: unknown executor 'k8s'; {VALID}"
    )


def test_the_environment_and_the_command_line_name_registered_executors(tmp_path, monkeypatch, capsys):
    path = write_matrix(tmp_path / "m.yaml", _matrix(tmp_path, cluster="local"))
    monkeypatch.setenv("HARNESS_EXECUTOR", "k8s")
    with pytest.raises(ConfigError, match=rf"^\$HARNESS_EXECUTOR: unknown executor 'k8s'; {VALID}$"):
        plan(path, params=False, with_status=False)
    with pytest.raises(SystemExit):
        main(["matrix", str(path), "--executor", "k8s"])
    assert "invalid choice: 'k8s' (choose from " + ", ".join(repr(n) for n in EXECUTORS) in capsys.readouterr().err


def test_the_old_key_kind_still_works(tmp_path):
    old = matrix_from_dict(_matrix(tmp_path, kind="debug"), output_dir=tmp_path / "out")
    assert old.spec.executor.cluster == "debug"
    assert plan(write_matrix(tmp_path / "m.yaml", _matrix(tmp_path, kind="debug")), params=False).executor == "debug"
    both = matrix_from_dict(_matrix(tmp_path, kind="local", cluster="local"), output_dir=tmp_path / "out")
    assert both.spec.executor.cluster == "local"
    with pytest.raises(ConfigError) as error:
        matrix_from_dict(_matrix(tmp_path, kind="local", cluster="debug"), output_dir=tmp_path / "out")
    assert (
        str(error.value)
        == "matrix: executor: executor.kind 'local' and executor.cluster 'debug' disagree; give executor.cluster only"
    )


def test_a_job_of_an_executor_this_version_does_not_know_stays_queued(tmp_path):
    matrix = matrix_from_dict(_matrix(tmp_path, cluster="local"), output_dir=tmp_path / "out")
    cell = matrix.active[0]
    write_job(
        cell.folder,
        JobRecord(
            cell_id=cell.cell_id, job_id="1", executor="k8s", submitit_folder=str(tmp_path), submitted_at=now_iso()
        ),
    )
    state: CellState = next(s for s in cell_states(matrix).states if s.cell.cell_id == cell.cell_id)
    assert state.status == "queued"
