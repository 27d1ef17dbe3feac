"""Batch order: every example once per epoch, reproducible per (seed, epoch), and length
grouping that trades padding for how much of the length distribution each batch sees."""

from __future__ import annotations

import statistics

import pytest

from harness.config import DataConfig
from harness.tasks import resolve_task
from harness.tasks.data import load_split
from harness.train.batching import MEGABATCH_FACTOR, batch_order, padding_fraction


@pytest.fixture(scope="module")
def lengths() -> list[int]:
    """Word counts of emotion's 16,000 training tweets (real data, no tokenizer needed)."""
    rows = load_split(resolve_task("emotion"), DataConfig(), "train", limit=None)
    return [len(row["text"].split()) for row in rows]


@pytest.mark.parametrize("group_by_length, group_batches", [(False, 1), (True, 1), (True, 4), (True, MEGABATCH_FACTOR)])
def test_every_example_once_per_epoch(lengths: list[int], group_by_length: bool, group_batches: int) -> None:
    order = batch_order(lengths, 32, seed=0, epoch=0, group_by_length=group_by_length, group_batches=group_batches)
    assert sorted(i for batch in order for i in batch) == list(range(len(lengths)))
    assert max(map(len, order)) == 32


def test_the_order_is_a_function_of_seed_and_epoch(lengths: list[int]) -> None:
    def order(seed: int, epoch: int) -> list[list[int]]:
        return batch_order(lengths, 32, seed, epoch, group_by_length=True, group_batches=4)

    assert order(0, 0) == order(0, 0)
    assert order(0, 0) != order(0, 1)
    assert order(0, 0) != order(1, 0)


def test_one_batch_per_mega_batch_is_random_batches(lengths: list[int]) -> None:
    grouped = batch_order(lengths, 32, 3, 0, group_by_length=True, group_batches=1)
    plain = batch_order(lengths, 32, 3, 0, group_by_length=False, group_batches=1)
    assert sorted(map(sorted, grouped)) == sorted(map(sorted, plain))


def test_larger_mega_batches_pad_less_but_narrow_each_batch(lengths: list[int]) -> None:
    padding, spread = {}, {}
    for group_batches in (1, 4, MEGABATCH_FACTOR):
        order = batch_order(lengths, 32, 0, 0, group_by_length=True, group_batches=group_batches)
        padding[group_batches] = padding_fraction(lengths, order)
        # how much of the length distribution one batch covers: its standard deviation of lengths
        spread[group_batches] = statistics.mean(statistics.pstdev([lengths[i] for i in b]) for b in order if len(b) > 1)
    assert padding[1] > padding[4] > padding[MEGABATCH_FACTOR]
    assert spread[1] > spread[4] > spread[MEGABATCH_FACTOR]
