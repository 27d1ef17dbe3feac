"""The checks on synthetic result sets: quality over seeds (paired or Welch t interval against a
tolerance in points), efficiency against relative bounds, and what gates the exit status."""

from __future__ import annotations

import math

import pytest
from compare_helpers import GIB, cpu_facts, f1_side, sample, side

from harness.compare.checks import FAILED, IMPROVEMENT, NOT_COMPARABLE, OK, REGRESSION, UNTESTED, quality_difference
from harness.compare.comparison import compare_sides
from harness.compare.gate import Gate
from harness.report.stats import t_quantile

REF = {0: 0.800, 1: 0.805, 2: 0.795}  # tight seeds: ±0.5 point


def _finding(comparison, name):
    (finding,) = [f for f in comparison.findings if f.name == name]
    return finding


def test_a_three_point_drop_with_tight_seeds_is_a_regression():
    new = f1_side("NEW", {s: v - 0.03 + 0.001 * s for s, v in REF.items()})
    comparison = compare_sides(new, f1_side("REFERENCE", REF))
    finding = _finding(comparison, "f1_macro")
    assert finding.verdict == REGRESSION and finding.gated and finding.test == "paired t, 3 seeds"
    # paired differences -3.0, -2.9, -2.8 points: mean -2.9, s = 0.1, t(0.975, 2) = 4.303
    assert finding.change == pytest.approx(-2.9)
    half = t_quantile(2) * 0.1 / math.sqrt(3)
    assert (finding.low, finding.high) == pytest.approx((-2.9 - half, -2.9 + half))
    assert finding.high < -1.0  # wholly below minus the default tolerance
    assert comparison.exit_code == 1


def test_a_one_point_drop_inside_the_seed_noise_is_not():
    noisy = {0: 0.80, 1: 0.76, 2: 0.84}
    paired = f1_side("NEW", {0: 0.77, 1: 0.78, 2: 0.82})  # -3, +2, -2: mean -1
    welch = f1_side("NEW", {3: 0.78, 4: 0.83, 5: 0.76})  # other seeds: mean 0.79
    for new, test in ((paired, "paired t, 3 seeds"), (welch, "Welch t, 3 vs 3 seeds")):
        comparison = compare_sides(new, f1_side("REFERENCE", noisy))
        finding = _finding(comparison, "f1_macro")
        assert finding.change == pytest.approx(-1.0) and finding.test == test
        assert finding.low < -1.0 < finding.high and finding.verdict == OK
        assert comparison.exit_code == 0


def test_the_tolerance_decides_how_large_a_drop_counts():
    new = f1_side("NEW", {s: v - 0.03 for s, v in REF.items()})  # exactly -3 points on every seed
    assert (
        _finding(compare_sides(new, f1_side("REFERENCE", REF), Gate(tolerance={"f1_macro": 5})), "f1_macro").verdict
        == OK
    )
    assert (
        _finding(compare_sides(new, f1_side("REFERENCE", REF), Gate(tolerance={"*": 2})), "f1_macro").verdict
        == REGRESSION
    )


def test_welch_interval_uses_welch_satterthwaite_degrees_of_freedom():
    new, ref = {0: 0.70, 1: 0.72, 2: 0.74, 3: 0.71}, {5: 0.80, 6: 0.90}
    diff, test = quality_difference(new, ref)
    mean_a, mean_b = sum(new.values()) / 4, 0.85
    sa2 = sum((x - mean_a) ** 2 for x in new.values()) / 3
    sb2 = sum((x - mean_b) ** 2 for x in ref.values()) / 1
    va, vb = sa2 / 4, sb2 / 2
    df = (va + vb) ** 2 / (va**2 / 3 + vb**2 / 1)
    assert test == "Welch t, 4 vs 2 seeds"
    assert diff.mean == pytest.approx(mean_a - mean_b)
    assert diff.half_width == pytest.approx(t_quantile(df) * math.sqrt(va + vb))


def test_one_seed_on_each_side_is_untested_and_a_failed_row_fails():
    comparison = compare_sides(f1_side("NEW", {0: 0.5}), f1_side("REFERENCE", {0: 0.8}))
    assert _finding(comparison, "f1_macro").verdict == UNTESTED and comparison.exit_code == 0
    failed = side("NEW", [sample(s, status="diverged") for s in REF])
    comparison = compare_sides(failed, f1_side("REFERENCE", REF))
    finding = _finding(comparison, "f1_macro")
    assert finding.verdict == FAILED and "diverged" in finding.reason and comparison.exit_code == 1


def test_a_fifteen_percent_memory_increase_is_a_regression():
    ref = side("REFERENCE", [sample(s, v, train_peak_bytes=10 * GIB) for s, v in REF.items()])
    new = side("NEW", [sample(s, v, train_peak_bytes=11.5 * GIB) for s, v in REF.items()])
    comparison = compare_sides(new, ref)
    memory = _finding(comparison, "train_peak_bytes")
    assert memory.verdict == REGRESSION and memory.gated and memory.change == pytest.approx(0.15)
    assert _finding(comparison, "f1_macro").verdict == OK  # identical quality
    assert comparison.exit_code == 1
    # within a wider bound it is not
    assert compare_sides(new, ref, Gate(bounds={"memory": (-0.1, 0.2)})).exit_code == 0


def test_a_fifteen_percent_throughput_gain_is_an_improvement():
    ref = side("REFERENCE", [sample(s, v, train_samples_per_s=100.0) for s, v in REF.items()])
    new = side("NEW", [sample(s, v, train_samples_per_s=115.0) for s, v in REF.items()])
    comparison = compare_sides(new, ref)
    throughput = _finding(comparison, "train_samples_per_s")
    assert throughput.verdict == IMPROVEMENT and throughput.change == pytest.approx(0.15)
    assert comparison.exit_code == 0
    slower = side("NEW", [sample(s, v, train_samples_per_s=85.0) for s, v in REF.items()])
    assert _finding(compare_sides(slower, ref), "train_samples_per_s").verdict == REGRESSION


def test_cpu_timings_are_reported_not_gated_unless_asked():
    ref = side("REFERENCE", [sample(s, v, facts=cpu_facts(), train_wall_s=10.0) for s, v in REF.items()])
    new = side("NEW", [sample(s, v, facts=cpu_facts(), train_wall_s=13.0) for s, v in REF.items()])
    finding = _finding(compare_sides(new, ref), "train_wall_s")
    assert finding.verdict == REGRESSION and not finding.gated
    assert compare_sides(new, ref).exit_code == 0
    assert compare_sides(new, ref, Gate(cpu_timings=True)).exit_code == 1
    # and an aspect left out of the gate is reported only
    quality_only = Gate(aspects=frozenset({"quality"}))
    gpu_ref = side("REFERENCE", [sample(s, v, train_peak_bytes=10 * GIB) for s, v in REF.items()])
    gpu_new = side("NEW", [sample(s, v, train_peak_bytes=20 * GIB) for s, v in REF.items()])
    assert compare_sides(gpu_new, gpu_ref, quality_only).exit_code == 0


def test_memory_measured_differently_is_not_comparable():
    ref = side("REFERENCE", [sample(s, v, train_peak_bytes=10 * GIB) for s, v in REF.items()])
    new = side("NEW", [sample(s, v, train_peak_bytes=20 * GIB) for s, v in REF.items()])
    for s in new.samples:
        s.row.train_peak_measure = "rss"
    finding = _finding(compare_sides(new, ref), "train_peak_bytes")
    assert finding.verdict == NOT_COMPARABLE and "gpu vs rss" in finding.reason
