"""Kill a run after a checkpoint and resume it: it continues from that step, exactly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from harness.result import load_result
from harness.train.checkpoint import latest_checkpoint

CELL = (
    "model: tiny-llama\nmethod: {method}\ntask: emotion\nseed: 3\n"
    "train: {{max_steps: 24, batch_size: 4, learning_rate: 1.0e-2, checkpoint_every: 4, progress_bar: false, log_every: 1}}\n"
    "data: {{max_train_samples: 48, max_eval_samples: 8, max_source_tokens: 48}}\n"
    "tracking: {{enabled: false}}\ntelemetry: {{enabled: false}}\noutput_dir: {out}\n"
)


def start(tmp_path: Path, name: str, method: str) -> subprocess.Popen[bytes]:
    config = tmp_path / f"{name}.yaml"
    config.write_text(CELL.format(method=method, out=tmp_path / name))
    return subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run", "--local", "--config", str(config)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def losses(cell: Path) -> list[tuple[int, float]]:
    return [tuple(x) for x in load_result(cell).efficiency.loss_history]


def kill_after_checkpoint_then_resume(tmp_path: Path, method: str) -> None:
    victim = start(tmp_path, "killed", method)
    checkpoints = tmp_path / "killed" / "checkpoints"
    deadline = time.time() + 300
    while time.time() < deadline and (latest_checkpoint(checkpoints) is None or victim.poll() is not None):
        assert victim.poll() is None, "the run ended before it could be killed"
        time.sleep(0.1)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    saved_step = int(latest_checkpoint(checkpoints).name.split("-")[1])  # type: ignore[union-attr]
    assert 4 <= saved_step < 24
    assert load_result(tmp_path / "killed").status == "running"

    assert start(tmp_path, "killed", method).wait(timeout=600) == 0
    resumed = load_result(tmp_path / "killed")
    assert resumed.status == "success"
    assert resumed.efficiency.resumed_from_step >= saved_step
    assert resumed.efficiency.train_steps == 24
    # The resumed run reproduces an uninterrupted one: same losses at every step.
    assert start(tmp_path, "straight", method).wait(timeout=600) == 0
    assert losses(tmp_path / "killed") == losses(tmp_path / "straight")
    assert resumed.metrics == load_result(tmp_path / "straight").metrics


def test_lora_resumes_exactly_after_sigkill(tmp_path: Path) -> None:
    kill_after_checkpoint_then_resume(tmp_path, "lora")


def test_adalora_resumes_with_its_rank_allocator(tmp_path: Path) -> None:
    kill_after_checkpoint_then_resume(tmp_path, "adalora")


def test_a_corrupt_checkpoint_is_moved_aside_and_the_one_before_resumed(make_cell, monkeypatch) -> None:
    """A checkpoint that does not read back (a state.pt that is not torch's, a progress.json
    that is not a progress) never ends the run: it is renamed ``<name>.corrupt`` and the run
    resumes from the one before, else from the start, and trains exactly the same steps."""
    from types import SimpleNamespace

    import harness.cell.run as cell_run
    from harness.cell import run_cell

    monkeypatch.setattr(cell_run, "shutil", SimpleNamespace(rmtree=lambda *args, **kwargs: None))  # keep them
    config = make_cell("tiny-bert", "lora", "emotion", train={"max_steps": 6, "checkpoint_every": 2})
    checkpoints = Path(config.output_dir) / "checkpoints"
    straight = run_cell(config)
    assert straight.status == "success"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-00000004", "step-00000006"]

    (checkpoints / "step-00000006" / "state.pt").write_bytes(b"not a torch file")
    resumed = run_cell(config)
    assert resumed.status == "success", resumed.error
    assert resumed.efficiency.resumed_from_step == 4
    assert (checkpoints / "step-00000006.corrupt" / "state.pt").read_bytes() == b"not a torch file"
    assert resumed.efficiency.loss_history == straight.efficiency.loss_history

    (checkpoints / "step-00000006" / "progress.json").write_text("[]")
    (checkpoints / "step-00000004" / "progress.json").write_text('{"step": "4", "losses": []}')
    again = run_cell(config)
    assert again.status == "success" and again.efficiency.resumed_from_step is None, again.error
    assert {"step-00000004.corrupt", "step-00000006.corrupt-2"} <= {p.name for p in checkpoints.iterdir()}
    assert again.efficiency.loss_history == straight.efficiency.loss_history


def test_a_progress_json_with_a_field_progress_lacks_is_corrupt(tmp_path: Path) -> None:
    """``Progress(**progress)`` takes no unknown field: a checkpoint whose progress.json has one (a
    hand edit, another harness version) is moved aside like any corrupt one, not a TypeError that
    fails the cell and, its checkpoints kept, every retry of it."""
    import dataclasses
    import json

    import torch

    from harness.train.checkpoint import COUNTS, LOSS_LISTS, readable_checkpoint, save_checkpoint
    from harness.train.loop import Progress

    assert {*COUNTS, *LOSS_LISTS} == {f.name for f in dataclasses.fields(Progress)}  # the check follows Progress
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    root = tmp_path / "checkpoints"
    for step in (2, 4):
        progress = dataclasses.asdict(Progress(step=step, losses=[(1, 1.5)]))
        save_checkpoint(
            root, step, model=model, optimizer=optimizer, scheduler=scheduler, progress=progress, rng={}, extra={}
        )
    newest = root / "step-00000004" / "progress.json"
    newest.write_text(json.dumps({**json.loads(newest.read_text()), "momentum": 0.9}))
    assert readable_checkpoint(root) == root / "step-00000002"
    assert (root / "step-00000004.corrupt").is_dir()
