"""Deterministic batch order per (seed, epoch), optionally grouped by length.

Grouping (``train.group_by_length``, off by default) sorts the examples of each
shuffled mega-batch (``MEGABATCH_FACTOR`` batches, as Hugging Face's
LengthGroupedSampler does; peft's benchmark uses 20) by length and cuts it into
batches, so little compute is spent on padding. The price: each batch is one narrow
length stratum rather than a sample of the data, which adds gradient noise, and that
cost quality in the parity benchmark (``harness.config.TrainConfig.group_by_length``).

The order is a pure function of (seed, epoch), which is what makes an exact resume
possible: a resumed run recomputes the order and skips the batches it already consumed.
"""

from __future__ import annotations

import random

MEGABATCH_FACTOR = 50


def batch_order(
    lengths: list[int],
    batch_size: int,
    seed: int,
    epoch: int,
    group_by_length: bool,
    group_batches: int = MEGABATCH_FACTOR,
) -> list[list[int]]:
    """Every index once, in batches of ``batch_size``; grouped: sorted by length within
    mega-batches of ``group_batches`` batches (1: the random batches' contents)."""
    rng = random.Random(f"batches/{seed}/{epoch}")
    indices = list(range(len(lengths)))
    rng.shuffle(indices)
    if not group_by_length:
        return [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]
    mega = batch_size * group_batches
    batches: list[list[int]] = []
    for start in range(0, len(indices), mega):
        chunk = sorted(indices[start : start + mega], key=lambda i: lengths[i], reverse=True)
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    # Shuffle batch order so the long batches are not all at the start of an epoch.
    rng.shuffle(batches)
    return batches


def padding_fraction(lengths: list[int], batches: list[list[int]]) -> float:
    """Share of token slots that are padding when each batch is padded to its longest example."""
    slots = sum(max(lengths[i] for i in batch) * len(batch) for batch in batches)
    real = sum(lengths[i] for batch in batches for i in batch)
    return 1.0 - real / slots if slots else 0.0
