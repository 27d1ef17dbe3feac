"""Per-step memory (peft's method_comparison records the reserved memory after every step, and
reports its average, 99th percentile and maximum): sampled after each optimizer step of the
train phase, the process RSS on a CPU, beside the phase's peak."""

from __future__ import annotations

import numpy as np
import pytest

from harness.result import PhaseStats
from harness.train.memory import record_step_memory


def test_the_summary_of_step_samples_is_numpys():
    samples = [100, 300, 200, 1_000, 250]
    stats = PhaseStats()
    record_step_memory(stats, samples, "reserved")
    assert stats.step_memory_measure == "reserved"
    assert stats.step_memory_avg_bytes == pytest.approx(370.0)
    assert stats.step_memory_p99_bytes == pytest.approx(float(np.percentile(samples, 99))) == pytest.approx(972.0)
    assert stats.step_memory_max_bytes == 1_000
    empty = PhaseStats()
    record_step_memory(empty, [], "rss")
    assert empty.step_memory_measure is None and empty.step_memory_avg_bytes is None


def test_a_cell_records_its_per_step_rss_beside_the_peak(make_cell):
    from harness.cell import run_cell

    config = make_cell("tiny-bert", "lora", "emotion")
    result = run_cell(config)
    assert result.status == "success", result.traceback
    train = result.efficiency.phases["train"]
    assert train.step_memory_measure == "rss"
    assert train.peak_rss_bytes is not None and train.step_memory_max_bytes is not None
    assert 0 < train.step_memory_avg_bytes <= train.step_memory_p99_bytes <= train.step_memory_max_bytes
    assert train.step_memory_max_bytes <= train.peak_rss_bytes  # the poller's peak covers every step
    assert result.efficiency.phases["eval"].step_memory_measure is None  # no optimizer step there
