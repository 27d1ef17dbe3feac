from __future__ import annotations

import subprocess

from harness.dispatch import sacct


def test_parse_arrays_ranges_steps_and_reasons():
    text = "\n".join(
        [
            "100_0|COMPLETED|0:0|00:00:05|node1",
            "100_1|CANCELLED by 1000|0:15|00:00:01|node1",
            "100_[2-4,7%2]|PENDING|0:0|00:00:00|None assigned",
            "100_1.batch|CANCELLED|0:15|00:00:01|node1",
            "101|OUT_OF_MEMORY|0:125|00:01:00|node1",
            "102|RUNNING|0:0|00:01:00|node1",
            "103|TIMEOUT|0:0|00:10:00|node1",
            "104|NODE_FAIL|1:0|00:10:00|node1",
            "",
        ]
    )
    states = sacct.parse_sacct(text)
    assert sorted(states) == ["100_0", "100_1", "100_2", "100_3", "100_4", "100_7", "101", "102", "103", "104"]
    assert states["100_1"].state == "CANCELLED" and states["100_1"].cell_status == "cancelled"
    assert states["100_3"].cell_status == "queued"
    assert states["101"].cell_status == "oom"
    assert states["102"].cell_status == "running"
    assert states["103"].cell_status == "timeout"
    assert states["104"].cell_status == "failed"
    assert states["100_0"].cell_status == "failed"  # COMPLETED but no result.json: the caller says why


def test_one_call_for_many_jobs_and_arrays():
    seen = []

    def runner(command):
        seen.append(command)
        return subprocess.CompletedProcess(
            command, 0, "7_0|RUNNING|0:0|0|n\n7_1|PENDING|0:0|0|n\n9|FAILED|1:0|0|n\n", ""
        )

    report = sacct.query(["7_0", "7_1", "9", "7_0"], runner=runner)
    assert len(seen) == 1 and report.calls == seen
    assert seen[0][:3] == ["sacct", "-j", "7,9"] and "-X" in seen[0] and "-P" in seen[0] and "-n" in seen[0]
    assert {k: v.cell_status for k, v in report.states.items()} == {"7_0": "running", "7_1": "queued", "9": "failed"}


def test_squeue_fallback_when_sacct_fails():
    def runner(command):
        if command[0] == "sacct":
            return subprocess.CompletedProcess(command, 1, "", "sacct: error: Slurm accounting storage is disabled\n")
        return subprocess.CompletedProcess(command, 0, "7_0|RUNNING\n7_1|PENDING\n", "")

    report = sacct.query(["7_0", "7_1"], runner=runner)
    assert report.error == "sacct failed: sacct: error: Slurm accounting storage is disabled"
    assert [c[0] for c in report.calls] == ["sacct", "squeue"]
    assert report.states["7_0"].cell_status == "running" and report.states["7_1"].cell_status == "queued"


def test_no_jobs_no_call():
    report = sacct.query([], runner=lambda c: (_ for _ in ()).throw(AssertionError("called")))
    assert report.states == {} and report.calls == []
