"""Training: the loop, batching, checkpoints and resume, per-phase memory, torch.distributed.

Names are imported on first use (:mod:`harness.lazy`), so the job wrapper can read a cell's
distributed setup (``harness.train.distributed``) without importing torch."""

from harness.lazy import lazy_exports

_EXPORTS = {
    "batch_order": "batching",
    "padding_fraction": "batching",
    "TrainOutcome": "loop",
    "Trainer": "loop",
    "total_optimizer_steps": "loop",
    "PhaseMeter": "memory",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
