"""Successive halving of a sweep's stage 1 (select.halving): every grid point trains to the first
rung, the best ceil(n/eta) continue from their checkpoints, the last rung runs to the full budget,
and the survivor is what an uninterrupted full-grid run of the same cell is, step by step."""

from __future__ import annotations

import copy
import dataclasses

import pytest
from dispatch_helpers import smoke_dict, write_matrix

from harness.dispatch import commands, render_status, status, submit
from harness.errors import ConfigError
from harness.matrix import load_matrix, matrix_from_dict
from harness.names import FINAL_STAGE, SELECT_STAGE
from harness.result import load_result

LR = "train.learning_rate"
STEPS = 9


def halving_dict(tmp, out: str, halving: dict | None) -> dict:
    """tiny-bert LoRA on emotion, 9 steps with a warmup and a cosine decay (a schedule planned on a
    rung's steps would show), a 3-point rate grid, seeds 0 and 1, the debug executor."""
    data = smoke_dict(
        tmp / out,
        models=["tiny-bert"],
        methods=["lora"],
        seeds=[0, 1],
        exclude=[],
        executor={"cluster": "debug"},
    )
    data["defaults"]["train"].update(max_steps=STEPS, warmup_ratio=0.25, scheduler="cosine")
    data["sweep"] = [{"values": {LR: [1.0e-4, 3.0e-3, 3.0e-2]}}]
    data["select"] = {"metric": "f1_macro", "split": "validation"}
    if halving is not None:
        data["select"]["halving"] = halving
    return data


def test_halving_continues_the_best_points_and_ends_as_the_full_grid(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    halved = write_matrix(tmp_path / "halved.yaml", halving_dict(tmp_path, "halved", {"eta": 3, "rungs": [1, 3]}))
    plan_text = commands.render_plan(commands.plan(halved, params=False), scripts=False)
    # 3 points to step 1, 1 on to 3, 1 on to 9: 3 + 2 + 6 = 11 steps of 9
    assert "halving emotion/tiny-bert/lora: rungs 1/3/9 steps, eta 3: 3x1 + 1x2 + 1x6 steps = 1.22" in plan_text
    assert "(3 without)" in plan_text and "without halving" in plan_text

    report = submit(halved)
    assert report.ok
    # rung 0: 3 points, rung 1: 1, rung 2: 1, then stage 2's 2 seeds (or 1, where the winner's run is reused)
    assert len(report.submitted) >= 3 + 1 + 1 + 1
    assert submit(halved).submitted == []  # nothing left, nothing submitted twice

    after = status(halved)
    assert after.finished
    selection = after.matrix.selections[0]
    assert selection.state == "selected" and [len(o) for o in selection.rung_outcomes] == [3, 1, 1]
    points = {s.cell.cell_id: s for s in after.states if s.cell.stage == SELECT_STAGE}
    survivors = [s for s in points.values() if s.status == "success"]
    pruned = [s for s in points.values() if s.status != "success"]
    assert len(survivors) == 1 and len(pruned) == 2
    for state in pruned:  # pruned at the first rung: paused there, one rung, not waiting
        result = load_result(state.cell.folder)
        assert state.status == "paused" and [r.step for r in result.rungs] == [1]
        assert not state.cell.continues
    survivor = load_result(survivors[0].cell.folder)
    assert [r.step for r in survivor.rungs] == [1, 3] and survivor.efficiency.train_steps == STEPS
    # the survivor was the best at rung 0 (f1_macro, max; ties to grid order)
    first = selection.rung_outcomes[0]
    best = max(first, key=lambda o: o.value)  # max keeps the first of equals: grid order
    assert survivors[0].cell.point == best.point == selection.choice.point
    finals = [s for s in after.states if s.cell.stage == FINAL_STAGE]
    assert len(finals) == 2 and {s.status for s in finals} == {"success"}
    for state in finals:
        assert load_result(state.cell.folder).run.learning_rate == selection.choice.point[LR]
    text = render_status(after)
    assert "rung 0 (step 1): 3/3 ended, 1 continued" in text

    # the same grid without halving, uninterrupted: the survivor's cell (same id) ends the same
    full = write_matrix(tmp_path / "full.yaml", halving_dict(tmp_path, "full", None))
    assert submit(full).ok
    straight = {s.cell.cell_id: s for s in status(full).states if s.cell.stage == SELECT_STAGE}
    assert set(straight) == set(points)  # halving changes no cell id
    twin = load_result(straight[survivors[0].cell.cell_id].cell.folder)
    assert twin.rungs == [] and twin.status == "success"
    assert survivor.efficiency.loss_history == twin.efficiency.loss_history
    assert survivor.metrics == twin.metrics


def test_matrix_wait_exits_0_when_the_pruned_points_stay_paused(tmp_path, monkeypatch, capsys):
    from harness.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = write_matrix(tmp_path / "m.yaml", halving_dict(tmp_path, "out", {"eta": 3, "rungs": [1, 3]}))
    assert main(["matrix", str(path), "--wait"]) == 0, capsys.readouterr().out
    assert sorted(s.status for s in status(path).states if s.cell.stage == SELECT_STAGE) == [
        "paused",
        "paused",
        "success",
    ]


def test_min_steps_makes_only_the_rungs_that_decide_something():
    from harness.matrix.schema import HalvingSpec

    # 7 points: 7 reach step 33, 3 reach 99, then one alone: no rung at 297
    assert HalvingSpec(eta=3, min_steps=33).steps(300, points=7) == [33, 99, 300]
    assert HalvingSpec(eta=3, min_steps=33).steps(300, points=9) == [33, 99, 300]
    assert HalvingSpec(eta=3, min_steps=33).steps(300, points=10) == [33, 99, 297, 300]
    assert HalvingSpec(eta=2, min_steps=1).steps(9, points=3) == [1, 2, 9]
    assert HalvingSpec(eta=3, min_steps=1).steps(9, points=1) == [9]
    assert HalvingSpec(eta=3, rungs=[1, 3]).steps(9, points=3) == [1, 3, 9]  # given rungs stay


def test_a_sweep_without_halving_plans_as_before(tmp_path):
    path = write_matrix(tmp_path / "m.yaml", halving_dict(tmp_path, "out", None))
    matrix = load_matrix(path)
    selection = matrix.selections[0]
    assert selection.rungs == [] and all(c.stop_at_step is None and not c.continues for c in selection.points)
    assert "halving " not in commands.render_plan(commands.plan(path, params=False), scripts=False)


def test_the_plan_estimate_for_seven_points(tmp_path):
    data = halving_dict(tmp_path, "out", {"eta": 3, "rungs": [100, 300]})
    data["defaults"]["train"]["max_steps"] = 900
    data["sweep"] = [{"values": {LR: {"log": [1.0e-5, 1.0e-2], "n": 7}}}]
    path = write_matrix(tmp_path / "m.yaml", data)
    text = commands.render_plan(commands.plan(path, params=False), scripts=False)
    # 7x100 + 3x200 + 1x600 = 1,900 steps of 900
    assert "7x100 + 3x200 + 1x600 steps = 2.11 runs-equivalent for its 7 grid points instead of 7" in text


def _refusal(tmp_path, change) -> str:
    data = halving_dict(tmp_path, "out", {"eta": 3, "rungs": [1, 3]})
    change(data)
    with pytest.raises(ConfigError) as caught:
        matrix_from_dict(copy.deepcopy(data), output_dir=tmp_path / "out")
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_bad_halving_is_refused_in_one_line(tmp_path, monkeypatch):
    def no_sweep(d):
        del d["sweep"]

    assert "select.halving: needs a sweep section" in _refusal(tmp_path, no_sweep)
    assert "eta 1: must be 2 or more" in _refusal(tmp_path, lambda d: d["select"]["halving"].update(eta=1))
    assert "rung 9 is not below train.max_steps 9" in _refusal(
        tmp_path, lambda d: d["select"].update(halving={"rungs": [3, 9]})
    )
    assert "must be increasing" in _refusal(tmp_path, lambda d: d["select"].update(halving={"rungs": [3, 2]}))
    assert "min_steps 9 is not below train.max_steps 9" in _refusal(
        tmp_path, lambda d: d["select"].update(halving={"min_steps": 9})
    )

    def budget(d):
        d["sweep"] = [{"values": {"train.max_steps": [6, 9]}}]

    assert "select.halving over train.max_steps" in _refusal(tmp_path, budget)

    def epochs(d):
        del d["defaults"]["train"]["max_steps"]
        d["defaults"]["train"]["epochs"] = 1

    assert "needs train.max_steps" in _refusal(tmp_path, epochs)

    from harness.methods import registry

    lora = registry.methods()["lora"]
    reason = "its optimizer state is not saved"
    monkeypatch.setitem(registry.methods(), "lora", dataclasses.replace(lora, cannot_resume=reason))
    assert "method lora" in _refusal(tmp_path, lambda d: None) and reason in _refusal(tmp_path, lambda d: None)


def _check_halved(path) -> None:
    after = status(path)
    assert after.finished, render_status(after)
    selection = after.matrix.selections[0]
    assert selection.state == "selected" and [len(o) for o in selection.rung_outcomes] == [3, 1, 1]
    statuses = sorted(s.status for s in after.states if s.cell.stage == SELECT_STAGE)
    assert statuses == ["paused", "paused", "success"]
    assert {s.status for s in after.states if s.cell.stage == FINAL_STAGE} == {"success"}


def _local(tmp_path):
    data = halving_dict(tmp_path, "out", {"eta": 3, "rungs": [1, 3]})
    data["executor"] = {"cluster": "local", "array_parallelism": 2}
    return write_matrix(tmp_path / "local.yaml", data)


def test_local_rungs_are_submitted_by_the_detached_continuation(tmp_path, monkeypatch):
    import time

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = _local(tmp_path)
    report = submit(path)
    assert report.ok and len(report.submitted) == 3  # rung 0; the continuation does the rest
    assert any("stage 2 is submitted by process" in n for n in report.notices)
    start = time.monotonic()
    while True:
        now = status(path)
        pending = any(s.status == "pending" for s in now.states)
        if now.matrix.selections[0].state == "selected" and now.finished and not pending:
            break
        assert time.monotonic() - start < 400, render_status(now)
        time.sleep(1.0)
    _check_halved(path)


def test_wait_submits_the_rungs_itself(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = _local(tmp_path)
    assert submit(path, continue_stages=False).ok
    commands.wait(path, timeout_s=400, poll_s=1.0, continue_stages=True)
    _check_halved(path)


def test_a_crashed_continuation_retries_from_its_rung(tmp_path, monkeypatch):
    """The rung-1 continuation of the best point crashes: the point is left out (nothing survives
    to select), ``--retry-failed`` resumes it from its checkpoint to its rung, its rungs kept, and
    the halving goes on to the full budget and stage 2."""
    import harness.cell.run as run_module

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    train, crashes = run_module.train, []

    def crash_once_at_rung_one(*args, **kwargs):
        stop = kwargs.get("stop_at_step", args[-1] if args else None)
        if stop == 3 and not crashes:
            crashes.append(stop)
            raise RuntimeError("node lost")
        return train(*args, **kwargs)

    monkeypatch.setattr(run_module, "train", crash_once_at_rung_one)
    path = write_matrix(tmp_path / "m.yaml", halving_dict(tmp_path, "out", {"eta": 3, "rungs": [1, 3]}))
    assert submit(path).ok and crashes == [3]
    before = status(path)
    selection = before.matrix.selections[0]
    assert selection.state == "failed" and "every grid point failed" in selection.describe()
    (crashed,) = [s for s in before.states if s.status == "failed"]
    assert [r.step for r in load_result(crashed.cell.folder).rungs] == [1]
    assert crashed.cell.stop_at_step == 3  # a retry stops at the rung it crashed in

    assert submit(path, retry_failed=True).ok
    _check_halved(path)
    survivor = load_result(crashed.cell.folder)
    assert survivor.status == "success" and [r.step for r in survivor.rungs] == [1, 3]
    assert survivor.efficiency.train_steps == STEPS
