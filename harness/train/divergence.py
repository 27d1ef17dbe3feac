"""When training has diverged: the rule, in one place, and the exception that stops the loop.

A step's training loss (the loss the loop records for it, before its optimizer update) has
diverged when

- it is not finite (NaN or ±inf): rule ``non-finite``; or
- from the second step on, it is above ``EXPLOSION_RATIO`` times the reference loss: rule
  ``explosion``. The reference is the mean loss of the first ``REFERENCE_STEPS`` steps (of the
  steps before this one while there are fewer), floored at ``MIN_REFERENCE``.

The loop checks each step before its optimizer update: a diverged step's gradient is never
applied, and training stops at once with :class:`TrainingDiverged`, which the cell turns into
status ``diverged``. The rule reads only the loss history, which a checkpoint keeps: a resumed
run judges every step as the uninterrupted run would.
"""

from __future__ import annotations

import math
from typing import Any

from harness.result import Divergence

# The first steps' losses are the model's before fine-tuning has taught it much, and ordinary
# training lowers the loss from there. Five steps average out one unlucky first batch.
REFERENCE_STEPS = 5
# 100x: no step of an ordinary run comes near it. Over every loss history at hand (the demo's
# MiniLM and SmolLM2 cells, 100-300 steps; the test suite's tiny-llama/-t5/-bert cells, every
# method) the highest step loss is 1.52x this reference; a rate that blows training up lands
# far above it (tiny-llama at learning_rate 1e6: 1.84, then 1.26e7 at step 2, 6.8e6x).
EXPLOSION_RATIO = 100.0
# The reference's floor, in the loss's units (nats per token or example): a model that already
# fits its task (a first loss of 0.01) is not called diverged when an ordinary batch costs it
# 2 nats; the threshold is then 100 nats, far beyond a uniform guess over any vocabulary
# (ln 262144 = 12.5).
MIN_REFERENCE = 1.0

RULE_NON_FINITE = "non-finite"
RULE_EXPLOSION = "explosion"
RULE_TEXT = (
    f"a non-finite loss, or a loss above {EXPLOSION_RATIO:g}x the mean of the first {REFERENCE_STEPS} "
    f"steps' losses (at least {MIN_REFERENCE:g})"
)


class TrainingDiverged(RuntimeError):
    """Training stopped at a diverged step. ``divergence`` says where and by which rule;
    ``outcome`` is the loop's :class:`~harness.train.loop.TrainOutcome` up to the step before."""

    def __init__(self, divergence: Divergence, outcome: Any = None) -> None:
        self.divergence = divergence
        self.outcome = outcome
        super().__init__(describe(divergence))


def reference_loss(history: list[tuple[int, float]]) -> float | None:
    """The explosion rule's reference, from the losses recorded before the step judged; None
    before the first step."""
    first = [loss for _, loss in history[:REFERENCE_STEPS]]
    return max(sum(first) / len(first), MIN_REFERENCE) if first else None


def check_divergence(step: int, loss: float, history: list[tuple[int, float]]) -> Divergence | None:
    """Whether ``loss`` (of optimizer step ``step``) has diverged, given the (finite) losses of the
    steps before it; None when it has not."""
    reference = reference_loss(history)
    if math.isfinite(loss) and (reference is None or loss <= EXPLOSION_RATIO * reference):
        return None
    return Divergence(
        step=step,
        loss=loss,
        last_finite_loss=history[-1][1] if history else None,
        reference=reference,
        rule=RULE_EXPLOSION if math.isfinite(loss) else RULE_NON_FINITE,
    )


def describe(divergence: Divergence) -> str:
    """One line: the step, its loss, the last finite one and the rule that tripped."""
    last = "none" if divergence.last_finite_loss is None else f"{divergence.last_finite_loss:.4g}"
    text = f"training diverged at step {divergence.step}: loss {divergence.loss:.4g} (last finite loss {last})"
    if divergence.rule == RULE_EXPLOSION and divergence.reference is not None:
        return f"{text}, above {EXPLOSION_RATIO:g}x the first steps' loss {divergence.reference:.4g}"
    return f"{text}, not finite"
