"""The harness gates itself: the CI gate's small real run (bench/gate.yaml: MiniLM-L6 IA3 on
emotion on a CPU, three seeds, one thread, and the bare loop timed after the last seed) against the
committed reference bench/results/reference-minilm-emotion-cpu.json, with the tolerances and
bounds that file carries (bench/gate.py says why those: quality within its seeds' spread, CPU
efficiency only as the harness-to-bare-loop ratio measured in this run)."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

from harness.compare.checks import NOT_COMPARABLE
from harness.compare.comparison import compare_sides
from harness.compare.render import console, summary_lines
from harness.compare.sources import load_side

REPO = Path(__file__).resolve().parents[2]


def _gate():
    spec = importlib.util.spec_from_file_location("bench_gate", REPO / "bench" / "gate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_small_real_run_matches_the_committed_reference(tmp_path):
    gate = _gate()
    reference = load_side(str(gate.REFERENCE), "REFERENCE")
    assert reference.gate is not None and reference.gate.aspects == {"quality", "ratio"}
    started = time.perf_counter()
    new = gate.run_gate(tmp_path / "gate")
    comparison = compare_sides(new, reference, reference.gate)
    print(console(comparison), f"\ngate run and comparison: {time.perf_counter() - started:.1f} s")
    assert [s.row.status for s in new.samples] == ["success"] * 3
    measured = {f.name: f for f in comparison.findings}
    # every quality metric was tested over three paired seeds, and the bare loop was timed
    assert {f.test for f in comparison.findings if f.aspect == "quality"} == {"paired t, 3 seeds"}
    assert measured["speed_vs_bare_loop"].verdict != NOT_COMPARABLE
    assert comparison.exit_code == 0, "\n".join(summary_lines(comparison))
