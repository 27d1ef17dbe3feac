"""Cells as several processes (train.distributed ddp, gloo on CPU, the local executor's tasks):
the same losses as one process with the same global batch, rank 0 writing alone, a failing
rank failing the cell promptly with its traceback, and the plan-time refusals."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from dispatch_helpers import smoke_dict, write_matrix

from harness.dispatch import plan, render_status, submit, wait
from harness.dispatch.job import ENV_RUNNER
from harness.errors import ConfigError
from harness.matrix import load_matrix
from harness.result import load_result

HERE = Path(__file__).resolve().parent


def cell_file(tmp: Path, name: str, *, model: str, task: str, tasks: int | None, **resources) -> Path:
    data = smoke_dict(
        tmp / name,
        name=name,
        models=[model],
        methods=["lora"],
        tasks=[task],
        exclude=[],
        executor={"cluster": "local", "array_parallelism": 2},
    )
    data["resources"].update(resources, **({"tasks_per_node": tasks} if tasks else {}))
    data["defaults"]["train"].update(max_steps=4, batch_size=4)
    data["defaults"]["method_args"] = {"lora_dropout": 0.0}  # dropout draws differ per rank
    data["defaults"]["telemetry"] = {"enabled": False}
    return write_matrix(tmp / f"{name}.yaml", data)


def run(path: Path):
    report = submit(path)
    assert report.ok, report.errors
    final = wait(path, timeout_s=300, poll_s=1.0)
    state = final.states[0]
    assert state.status == "success", render_status(final)
    return load_result(state.cell.folder), state.cell.folder


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The one-process reference run of each (model, task), shared by the tests that compare with it."""
    runs: dict[tuple[str, str], object] = {}

    def reference(model: str, task: str, **text_changes: str):
        key = (model, task, *sorted(text_changes.items()))
        if key not in runs:
            tmp = tmp_path_factory.mktemp("one")
            path = cell_file(tmp, "one", model=model, task=task, tasks=None)
            text = path.read_text()
            for old, new in text_changes.items():
                text = text.replace(old, new)
            path.write_text(text)
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("HF_HUB_OFFLINE", "1")
                runs[key] = run(path)[0]
        return runs[key]

    return reference


@pytest.mark.parametrize(
    ("model", "task", "mode"),
    [("tiny-llama", "emotion", "ddp"), ("tiny-t5", "billsum", "ddp"), ("tiny-llama", "emotion", "fsdp")],
)
def test_two_ranks_train_as_one_process_with_the_same_global_batch(
    tmp_path, monkeypatch, one_process, model, task, mode
):
    """tiny-llama emotion averages its loss over examples, tiny-T5 billsum over label tokens (unequal
    per rank): each rank's loss is scaled by its share, so DDP and FSDP match the one-process run."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    one = one_process(model, task)
    path = cell_file(tmp_path, "two", model=model, task=task, tasks=2)
    path.write_text(path.read_text().replace("train:\n", f"train:\n    distributed: {mode}\n", 1))
    two, folder = run(path)
    assert (two.run.distributed, two.run.world_size, two.run.per_device_batch, two.run.effective_batch) == (
        mode,
        2,
        2,
        4,
    )
    assert (one.run.distributed, one.run.world_size) == ("none", 1)
    steps_one, losses_one = zip(*one.efficiency.loss_history)
    steps_two, losses_two = zip(*two.efficiency.loss_history)
    assert steps_one == steps_two == (1, 2, 3, 4)
    assert max(abs(a - b) for a, b in zip(losses_one, losses_two)) < 1e-5
    assert two.efficiency.trainable_params == one.efficiency.trainable_params
    assert two.run.peft_config == one.run.peft_config
    assert two.efficiency.train_samples == one.efficiency.train_samples == 16
    for metric, value in one.metrics.items():
        assert two.metrics[metric] == pytest.approx(value, abs=1e-6), metric
    # rank 0 wrote the folder alone: one result, no rank error files
    assert not list(folder.glob("rank-*.error"))
    # each rank's peak memory (RSS on a CPU), both on this machine's one node
    assert [(r.rank, r.node, r.measure) for r in two.efficiency.ranks] == [(0, 0, "rss"), (1, 0, "rss")]
    assert all(r.peak_bytes > 0 for r in two.efficiency.ranks)
    assert two.efficiency.node_telemetry == {} and two.efficiency.job_energy_j is None  # one node, no NVML


def test_a_failing_rank_fails_the_cell_promptly_with_its_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv(ENV_RUNNER, "rank_faults:run_cell")
    monkeypatch.setenv("PYTHONPATH", str(HERE))
    monkeypatch.setenv("HARNESS_COLLECTIVE_TIMEOUT_S", "60")
    path = cell_file(tmp_path, "faulty", model="tiny-llama", task="emotion", tasks=2)
    data_steps = 200
    text = path.read_text().replace("max_steps: 4", f"max_steps: {data_steps}")
    path.write_text(text)
    started = time.monotonic()
    assert submit(path).ok
    final = wait(path, timeout_s=300, poll_s=1.0)
    elapsed = time.monotonic() - started
    state = final.states[0]
    assert state.status == "failed", render_status(final)
    result = load_result(state.cell.folder)
    assert result.error.startswith("rank 1 failed: RuntimeError: rank 1 breaks at step 2"), result.error
    assert "rank 1:" in result.traceback and "Traceback" in result.traceback
    assert elapsed < 60 + 60  # the collective timeout plus start-up, not the 200 steps


@pytest.mark.parametrize(
    ("resources", "settings", "executor", "message"),
    [
        ({"nodes": 2}, {}, "local", "resources.nodes 2: the local executor runs on this one machine"),
        ({"tasks_per_node": 2}, {}, "debug", "2 processes per cell: the debug executor runs cells in this process"),
        ({"tasks_per_node": 3}, {}, "local", "train.batch_size 4 is the global batch, which 3 processes cannot share"),
        ({}, {"train": {"distributed": "ddp"}}, "local", "train.distributed ddp needs more than one process"),
        ({"tasks_per_node": 2}, {"train": {"distributed": "fsdp"}}, "local", None),
        ({"nodes": 2}, {}, "debug", "resources.nodes 2: the debug executor runs on this one machine"),
        (
            {"tasks_per_node": 2},
            {"train": {"fsdp_cpu_offload": True}},
            "local",
            "it needs train.distributed fsdp, not ddp",
        ),
        ({"gpus": 2, "tasks_per_node": 1}, {}, "local", "a cell runs one process per GPU"),
    ],
)
def test_distributed_refusals(tmp_path, resources, settings, executor, message):
    path = cell_file(tmp_path, "bad", model="tiny-llama", task="emotion", tasks=None, **resources)
    text = path.read_text()
    import yaml

    data = yaml.safe_load(text)
    data["executor"]["cluster"] = executor
    for key, value in settings.items():
        data["defaults"].setdefault(key, {}).update(value)
    write_matrix(path, data)
    if message is None:  # allowed: an LoRA cell shards with FSDP
        assert load_matrix(path).cells[0].config.train.distributed == "fsdp"
        return
    with pytest.raises(ConfigError) as error:
        plan(path)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_prompt_methods_and_methods_that_do_not_train_are_refused(tmp_path):
    path = cell_file(tmp_path, "p", model="tiny-llama", task="emotion", tasks=2)
    import yaml

    data = yaml.safe_load(path.read_text())
    data["methods"] = ["prompt_tuning"]
    data["defaults"]["train"]["distributed"] = "fsdp"
    write_matrix(path, data)
    with pytest.raises(ConfigError, match="fsdp cannot shard prompt_tuning"):
        load_matrix(path)
    data["methods"], data["models"], data["defaults"]["train"]["distributed"] = ["zeroshot"], ["tiny-t5"], "ddp"
    write_matrix(path, data)
    with pytest.raises(ConfigError, match="zeroshot does not train: it runs in one process"):
        load_matrix(path)


@pytest.mark.parametrize(
    ("model", "block"), [("tiny-llama", "LlamaDecoderLayer"), ("tiny-t5", "T5Block"), ("tiny-bert", "BertLayer")]
)
def test_the_fsdp_wrapping_plan_is_the_models_transformer_blocks(model, block):
    """Each block transformers keeps whole (_no_split_modules) is one FSDP unit, adapters inside it."""
    from harness.cell import prepare_cell
    from harness.config import CellConfig
    from harness.methods.build import apply_method
    from harness.models import load_model
    from harness.train.fsdp import wrapping_plan

    task = "emotion"
    plan = prepare_cell(CellConfig(model=model, method="lora", task=task, tracking={"enabled": False}))
    loaded = load_model(plan.model, plan.head, num_labels=6, label_names=list(plan.task.label_names))
    peft_model = apply_method(
        loaded.model,
        plan.method,
        plan.head,
        plan.method_args,
        family=plan.model.family,
        total_steps=1,
        gradient_checkpointing=False,
        quantized=False,
    )
    modules = dict(peft_model.named_modules())
    units = [name for name in wrapping_plan(peft_model) if type(modules[name]).__name__ == block]
    layers = loaded.model.config.num_hidden_layers if model != "tiny-t5" else 2 * loaded.model.config.num_layers
    assert len(units) == layers  # (BERT names its embeddings too: one more unit)
    # the adapters are inside the blocks, so each block holds frozen and trainable parameters
    assert all(any(p.requires_grad for p in modules[n].parameters()) for n in units)
    assert all(any(not p.requires_grad for p in modules[n].parameters()) for n in units)


def test_a_failed_fsdp_cell_resumes_from_its_checkpoint_on_every_rank(tmp_path, monkeypatch, one_process):
    """Rank 1 breaks at step 8 of 12; the retried cell resumes both ranks from the step-5 checkpoint
    (FSDP's full state, gathered by both ranks and written by rank 0) and ends with the losses of
    an uninterrupted one-process run. (DDP's resume after a preemption: tests/dispatch/test_slurm.py.)"""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HARNESS_COLLECTIVE_TIMEOUT_S", "60")
    reference = one_process("tiny-llama", "emotion", **{"max_steps: 4": "max_steps: 12"})
    path = cell_file(tmp_path, "two", model="tiny-llama", task="emotion", tasks=2)
    path.write_text(
        path.read_text()
        .replace("max_steps: 4", "max_steps: 12")
        .replace("train:\n", "train:\n    checkpoint_every: 5\n    distributed: fsdp\n", 1)
    )
    with monkeypatch.context() as faulty:
        faulty.setenv(ENV_RUNNER, "rank_faults:run_cell")
        faulty.setenv("PYTHONPATH", str(HERE))
        faulty.setenv("HARNESS_FAULT_STEP", "8")
        assert submit(path).ok
        assert wait(path, timeout_s=300, poll_s=1.0).states[0].status == "failed"
    folder = load_matrix(path).active[0].folder
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == ["step-00000005"]
    assert submit(path, retry_failed=True).ok
    final = wait(path, timeout_s=300, poll_s=1.0)
    assert final.states[0].status == "success", render_status(final)
    resumed = load_result(folder)
    assert resumed.efficiency.resumed_from_step == 5 and resumed.efficiency.train_steps == 12
    worst = max(
        abs(a - b) for (_, a), (_, b) in zip(reference.efficiency.loss_history, resumed.efficiency.loss_history)
    )
    assert len(resumed.efficiency.loss_history) == 12 and worst < 1e-5, worst


def test_every_rank_stops_at_a_diverged_step_and_rank_0_records_it(tmp_path, monkeypatch):
    """Each rank judges the loss summed over all of them, so both stop at the same step: the cell
    ends ``diverged`` (not "rank 1 failed", no rank error files) without waiting on a collective."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HARNESS_COLLECTIVE_TIMEOUT_S", "60")
    path = cell_file(tmp_path, "diverging", model="tiny-llama", task="emotion", tasks=2)
    path.write_text(path.read_text().replace("train:\n", "train:\n    distributed: ddp\n", 1))
    text = path.read_text()
    assert "learning_rate: 0.001" in text
    path.write_text(text.replace("learning_rate: 0.001", "learning_rate: 1000000.0"))
    started = time.monotonic()
    assert submit(path).ok
    final = wait(path, timeout_s=300, poll_s=1.0)
    state = final.states[0]
    assert state.status == "diverged", render_status(final)
    result = load_result(state.cell.folder)
    assert result.run.world_size == 2 and result.divergence.step == 2 and result.divergence.rule == "explosion"
    assert result.error.startswith("TrainingDiverged: training diverged at step 2"), result.error
    assert not list(state.cell.folder.glob("rank-*.error"))
    assert time.monotonic() - started < 60  # not the collective timeout
