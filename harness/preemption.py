"""How a signal handler reaches the running cell: a checkpoint callback the cell registers.

Dispatch (``harness.dispatch.job``) learns of a time limit or a preemption from SLURM's
signal and must have the live trainer save its state before the job requeues. It knows
nothing about training: the cell registers a callback for as long as it trains
(:func:`checkpoint_callback`), and dispatch calls :func:`checkpoint_now`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

Checkpoint = Callable[[], "int | None"]  # saves now; returns the step a requeued job resumes from

_registered: Checkpoint | None = None


@contextlib.contextmanager
def checkpoint_callback(callback: Checkpoint) -> Iterator[None]:
    """Register ``callback`` for the duration of the block (one cell per process at a time)."""
    global _registered
    previous, _registered = _registered, callback
    try:
        yield
    finally:
        _registered = previous


def checkpoint_now() -> int | None:
    """Run the registered callback: the saved step, or None when no cell is training."""
    callback = _registered
    return callback() if callback is not None else None
