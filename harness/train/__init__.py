"""Training: the loop, batching, checkpoints and resume, per-phase memory."""

from harness.train.batching import batch_order, padding_fraction
from harness.train.loop import TrainOutcome, Trainer, total_optimizer_steps
from harness.train.memory import PhaseMeter

__all__ = [
    "PhaseMeter", "TrainOutcome", "Trainer", "batch_order", "padding_fraction",
    "total_optimizer_steps",
]
