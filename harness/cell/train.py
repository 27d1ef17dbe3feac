"""Phase ``train``: the method's trainable weights trained (``harness.train.Trainer``), resumed
from the cell folder's checkpoint when there is one, and the training figures recorded."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import preemption
from harness.cell.load import Loaded, learning_rate
from harness.cell.measure import Phases
from harness.cell.plan import CellPlan
from harness.models import count_module_parameters
from harness.result import Efficiency, RankStats
from harness.tasks import class_weights
from harness.train import distributed
from harness.train.divergence import TrainingDiverged

CHECKPOINT_DIR = "checkpoints"  # while the cell runs; removed once it succeeds


def train(
    plan: CellPlan,
    loaded: Loaded,
    cell_dir: Path,
    device: Any,
    precision: str,
    phases: Phases,
    eff: Efficiency,
    reload: Callable[[], Loaded],
    stop_at_step: int | None = None,
) -> Any | None:
    """Train; the trained model (unwrapped, whole) on the rank that evaluates, None on the others.
    ``reload`` builds the model again: an FSDP cell evaluates an unsharded copy. ``stop_at_step``:
    stop there (a rung), its checkpoint saved; ``eff.train_steps`` then falls short of the budget."""
    trainer, accelerator = _trainer(plan, loaded, cell_dir, device, precision, stop_at_step)
    trainer.on_step = phases.meter.step
    try:
        with phases("train"), preemption.checkpoint_callback(trainer.checkpoint_now):
            outcome = trainer.train()
    except TrainingDiverged as diverged:  # every rank stops at the same step; rank 0 records how far it got
        if distributed.current().main and diverged.outcome is not None:
            _record_outcome(eff, diverged.outcome)
        raise
    if trainer.ctx.active:
        _gather_rank_stats(device, phases, eff)
    model = loaded.model
    if trainer.fsdp:  # every rank gathers the whole weights; rank 0 evaluates an unsharded copy
        from harness.train import fsdp

        state = fsdp.full_model_state(trainer.model)
        if distributed.current().main:
            model = reload().model
            model.load_state_dict(state, strict=False)
    if not distributed.current().main:
        return None  # rank 0 saves the weights, evaluates and writes the result
    model = model if trainer.fsdp else accelerator.unwrap_model(trainer.model)
    _record_training(eff, outcome, model, device)
    return model


def _trainer(
    plan: CellPlan, loaded: Loaded, cell_dir: Path, device: Any, precision: str, stop_at_step: int | None
) -> tuple[Any, Any]:
    import accelerate

    from harness.train import Trainer

    config = plan.config
    accelerate.state.AcceleratorState._reset_state(reset_partial_state=True)
    accelerator = accelerate.Accelerator(
        mixed_precision="no" if precision == "fp32" else precision, cpu=device.type == "cpu"
    )
    weights = None
    if config.data.class_weighted_loss and plan.task.labelled:  # answers are class ids
        weights = class_weights([int(r[plan.task.target_field]) for r in plan.train_rows], len(plan.task.label_names))
    trainer = Trainer(
        loaded.model,
        loaded.train_examples,
        head=plan.head,
        pad_id=loaded.formatter.pad,
        config=config.train,
        method=plan.method,
        learning_rate=learning_rate(plan),
        seed=config.seed,
        checkpoint_dir=cell_dir / CHECKPOINT_DIR,
        accelerator=accelerator,
        quantized=loaded.quantized_4bit,
        class_weights=weights,
        validation=[loaded.formatter.encode(row) for row in plan.validation_rows],
        stop_at_step=stop_at_step,
    )
    return trainer, accelerator


def _record_training(eff: Efficiency, outcome: Any, model: Any, device: Any) -> None:
    """The training figures of the result's efficiency section."""
    import torch

    from harness.train.mfu import mfu, model_flops_per_token

    # an optimizer hook may freeze parameters (LoRA-FA's A): count what trained
    trainable, total = count_module_parameters(model)
    eff.trainable_params, eff.trainable_share = trainable, trainable / total if total else 0.0
    _record_outcome(eff, outcome)
    eff.model_flops_per_token = model_flops_per_token(total, trainable)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    eff.mfu = mfu(eff.train_tokens_per_s, total, trainable, device_name)


def _record_outcome(eff: Efficiency, outcome: Any) -> None:
    """What the loop reports: steps, throughput, losses (also of a run that diverged)."""
    seconds = max(outcome.train_seconds, 1e-9)
    eff.train_steps, eff.train_samples = outcome.steps, outcome.samples_this_run
    eff.train_samples_per_s = outcome.samples_this_run / seconds
    eff.train_tokens_per_s = outcome.real_tokens_this_run / seconds
    eff.compile_s = outcome.compile_s
    eff.padding_fraction = outcome.padding_fraction
    eff.final_train_loss = outcome.final_loss
    eff.resumed_from_step = outcome.resumed_from_step
    eff.loss_history = list(outcome.losses)
    eff.eval_loss_history = list(outcome.eval_losses)


def _gather_rank_stats(device: Any, phases: Phases, eff: Efficiency) -> None:
    """Every rank's peak memory and train-phase CPU time, and every other node's telemetry, to
    rank 0 (a collective)."""
    ctx = distributed.current()
    sampler, summary = phases.sampler, None
    if not ctx.main and sampler is not None:  # another node's sampler: its training is over
        sampler.stop()
        summary = sampler.summary()
    train = phases.meter.phases.get("train")
    mine = {**distributed.rank_stats(device), "train_cpu_s": train.cpu_s if train else None}
    gathered = distributed.gather({**mine, "telemetry": summary})
    if ctx.main:
        eff.ranks = [RankStats(**{k: v for k, v in entry.items() if k != "telemetry"}) for entry in gathered]
        eff.node_telemetry = {str(entry["node"]): entry["telemetry"] for entry in gathered if entry["telemetry"]}
