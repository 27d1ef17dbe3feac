"""The SLURM code path against stub sbatch/sacct: arrays, ledgers, no double submission.

Nothing runs here (the stubs only record); tests/dispatch/test_slurm.py runs the
same flow on the real local cluster.
"""

from __future__ import annotations

import json

import pytest
import yaml
from dispatch_helpers import calls, smoke_dict, write_matrix

from harness.dispatch import plan, render_plan, render_status, render_submit, status, submit
from harness.dispatch.ledger import LEDGER_FILE, read_job
from harness.errors import ConfigError
from harness.matrix import load_matrix


@pytest.fixture
def matrix_file(tmp_path):
    data = smoke_dict(tmp_path / "out")
    # a second resource group: tiny-llama cells ask for more memory
    data["models"] = ["tiny-bert", {"name": "tiny-llama", "resources": {"mem_gb": 6}}, "tiny-t5"]
    return write_matrix(tmp_path / "smoke.yaml", data)


def sacct_says(stub, lines):
    (stub / "sacct.out").write_text("\n".join(lines) + "\n")


def test_submit_as_arrays_then_nothing_twice(matrix_file, stub_slurm):
    report = submit(matrix_file)
    assert report.ok and report.executor == "slurm", render_submit(report)
    assert len(report.submitted) == 5 and report.skipped == {"excluded": 1}
    sbatch = calls(stub_slurm, "sbatch")
    assert len(sbatch) == 2  # one array per resource group
    scripts = sorted(stub_slurm.glob("sbatch-*.sh"))
    texts = [s.read_text() for s in scripts]
    assert "#SBATCH --array=0-2%2" in texts[0] and "#SBATCH --mem=4G" in texts[0]
    assert "#SBATCH --array=0-1%2" in texts[1] and "#SBATCH --mem=6G" in texts[1]
    assert all(
        "#SBATCH --signal=USR2@60" in t and "#SBATCH --time=15" in t and "export PYTHONPATH=" in t for t in texts
    )

    matrix = load_matrix(matrix_file)
    ids = []
    for cell in matrix.active:
        job = read_job(cell.folder)
        assert job is not None and job.executor == "slurm" and job.submissions == 1
        assert job.stderr.endswith(f"{job.job_id}_0_log.err")
        assert (cell.folder / "config.yaml").exists()
        ids.append(job.job_id)
    assert sorted(ids) == ["1000_0", "1000_1", "1000_2", "1001_0", "1001_1"]
    ledger = [json.loads(line) for line in (matrix.output_dir / LEDGER_FILE).read_text().splitlines()]
    assert sorted(r["job_id"] for r in ledger) == sorted(ids)

    # queued/running per sacct: a second submission submits nothing, with one sacct call
    sacct_says(
        stub_slurm,
        ["1000_[0-2%2]|PENDING|0:0|00:00:00|None", "1001_0|RUNNING|0:0|00:00:03|n1", "1001_1|PENDING|0:0|0|n"],
    )
    again = submit(matrix_file, retry_failed=True, force=True)
    assert again.submitted == [] and again.skipped == {"already queued": 4, "already running": 1, "excluded": 1}
    assert len(calls(stub_slurm, "sbatch")) == 2
    assert len(calls(stub_slurm, "sacct")) == 1

    report = status(matrix_file)
    assert report.counts() == {"queued": 4, "running": 1, "excluded": 1}
    assert len(report.scheduler_calls) == 1 and report.scheduler_calls[0][:3] == ["sacct", "-j", "1000,1001"]
    assert "4 queued, 1 running, 1 excluded" in render_status(report)


def test_job_deaths_map_to_statuses_and_retry(matrix_file, stub_slurm):
    submit(matrix_file)
    matrix = load_matrix(matrix_file)
    by_job = {read_job(c.folder).job_id: c for c in matrix.active}
    # the job of 1000_1 died of an import error before run_cell could write anything
    log = read_job(by_job["1000_1"].folder).stderr
    with open(log, "w") as handle:
        handle.write("Traceback (most recent call last):\n  ...\nModuleNotFoundError: No module named 'harness'\n")
    sacct_says(
        stub_slurm,
        [
            "1000_0|OUT_OF_MEMORY|0:125|0|n",
            "1000_1|FAILED|1:0|0|n",
            "1000_2|CANCELLED by 0|0:0|0|n",
            "1001_0|TIMEOUT|0:0|0|n",
            "1001_1|COMPLETED|0:0|0|n",
        ],
    )
    report = status(matrix_file)
    got = {s.job_id: s for s in report.states if s.job}
    assert {k: v.status for k, v in got.items()} == {
        "1000_0": "oom",
        "1000_1": "failed",
        "1000_2": "cancelled",
        "1001_0": "timeout",
        "1001_1": "failed",
    }
    assert got["1000_1"].error == "job 1000_1 ended FAILED (exit 1:0): ModuleNotFoundError: No module named 'harness'"
    assert got["1000_1"].log == log
    assert "without writing result.json" in got["1001_1"].error
    assert f"      log: {log}" in render_status(report)

    # not resubmitted by default; --retry-failed --only picks some
    assert submit(matrix_file).submitted == []
    retry = submit(matrix_file, retry_failed=True, only="model=tiny-bert|tiny-t5")
    assert sorted(r.cell_id for r in retry.submitted) == sorted(
        by_job[j].cell_id for j in ("1000_0", "1000_1", "1000_2")
    )
    assert all(r.submissions == 2 and r.job_id.startswith("1002_") for r in retry.submitted)


def test_plan_json_and_scripts(matrix_file, stub_slurm):
    report = plan(matrix_file)
    rows = report.as_json()
    assert len(rows) == 6
    for row in rows:
        assert {"cell_id", "model", "method", "task", "seed", "trainable_params", "total_params", "status"} <= set(row)
    assert json.loads(json.dumps(rows)) == rows
    assert [r["status"] for r in rows].count("excluded") == 1
    counted = [r for r in rows if r["status"] != "excluded"]
    if counted[0]["error"] is None:
        assert all(0 < r["trainable_params"] < r["total_params"] for r in counted)
    assert len(report.scripts) == 2 and "#SBATCH --array=0-2%2" in report.scripts[0].text
    text = render_plan(report)
    assert "excluded: keeps the smoke run short" in text and "#SBATCH --job-name=harness-smoke" in text
    assert calls(stub_slurm, "sbatch") == []


def test_invalid_matrix_submits_nothing(tmp_path, stub_slurm):
    bad = write_matrix(tmp_path / "bad.yaml", smoke_dict(tmp_path / "out", methods=["lora", "loraa"]))
    with pytest.raises(ConfigError) as info:
        submit(bad)
    assert "unknown method 'loraa'; valid: lora" in str(info.value) and "\n" not in str(info.value)
    assert calls(stub_slurm, "sbatch") == [] and not (tmp_path / "out").exists()


def test_sbatch_refusal_is_reported(matrix_file, stub_slurm):
    (stub_slurm / "sbatch.fail").write_text("sbatch: error: invalid partition specified: gpu\n")
    report = submit(matrix_file)
    assert not report.ok and len(report.errors) == 2
    assert "invalid partition specified: gpu" in report.errors[0]
    assert status(matrix_file).counts() == {"pending": 5, "excluded": 1}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"method_args": {"rank": 4}}, "unknown method_args rank; valid LoraConfig fields"),
        ({"method_args": {"inference_mode": True}}, "method_args inference_mode are set by the harness"),
        ({"method_args": {"target_modules": ["q_proj"]}}, "target_modules ['q_proj'] match no layer of this model"),
        (
            {"data": {"source": {"files": {"train": "missing.jsonl", "test": "missing.jsonl"}}}},
            "data file not found: missing.jsonl",
        ),
        ({"data": {"source": {"files": {"train": "BAD", "test": "BAD"}}}}, "row 1: label 9 outside 0..5"),
        ({"data": {"source": {"fields": {"tweet": "text"}}}}, "unknown field(s) tweet for task 'emotion'"),
    ],
)
def test_cells_that_would_fail_at_start_are_refused_before_submission(tmp_path, stub_slurm, settings, message):
    bad_rows = tmp_path / "bad.jsonl"
    bad_rows.write_text('{"text": "fine", "label": 1}\n{"text": "not fine", "label": 9}\n')
    text = yaml.safe_dump(settings).replace("BAD", str(bad_rows))
    data = smoke_dict(tmp_path / "out", models=["tiny-bert"], methods=["lora"], exclude=[])
    data["overrides"].append({"match": {"method": "lora"}, "set": yaml.safe_load(text)})
    path = write_matrix(tmp_path / "m.yaml", data)
    for command in (plan, submit):
        with pytest.raises(ConfigError) as info:
            command(path)
        assert "cell emotion/tiny-bert/lora/seed0: " in str(info.value) and message in str(info.value)
        assert "\n" not in str(info.value)
    assert calls(stub_slurm, "sbatch") == [] and not (tmp_path / "out").exists()
