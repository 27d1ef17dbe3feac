"""The harness's CI gate: a small real run (bench/gate.yaml: MiniLM-L6 IA3 on emotion on a CPU,
three seeds, one torch thread) held against the committed reference
bench/results/reference-minilm-emotion-cpu.json with ``harness compare``'s checks.

What it gates, and why (the reference file carries these settings, ReFrame-style):

- **Quality**, every classification metric, with a tolerance per metric sized from the
  reference's own seed interval (its 95 % half-width, at least 1 point). On the machine that
  wrote the reference a clean run is identical to the digit (the paired differences are 0); on
  another machine each seed's trajectory differs as a fresh seed's would, so only a drop that is
  larger than the seeds' own spread, with 95 % confidence, fails. A run that stops learning
  (a broken loss, optimizer, learning rate or data path) drops far more than that.
- **Efficiency as a ratio within the run**: the CPU time a bare hand-written loop needs for the
  last seed's cell (bench/bare_loop.py: the same model, method, settings, training and evaluation
  rows; loaded, trained and scored right after the harness's cell, in the same process, both with
  imports and caches warm) over the CPU
  time the harness's cell needs, bound -25 % / +25 %. The machine's speed cancels out, and CPU
  time (one thread) hardly moves with the machine's load, which wall time does. An absolute time
  or a CPU RSS (this process also holds whatever else ran in it) is reported, never gated.

    .venv/bin/python bench/gate.py            # run and compare: exit 0 clean, 1 regression
    .venv/bin/python bench/gate.py --save     # run and write the reference again (same machine, same threads)
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from harness.compare.gate import Gate  # noqa: E402
from harness.compare.measures import DEFAULT_TOLERANCE_POINTS, MEASURES, quality_metrics  # noqa: E402
from harness.compare.sides import Side  # noqa: E402

GATE_MATRIX = REPO / "bench" / "gate.yaml"
REFERENCE = REPO / "bench" / "results" / "reference-minilm-emotion-cpu.json"
THREADS = 1  # results depend on the thread count (summation order): the reference's is this one
RATIO_SEED = 2  # the cell timed against the bare loop: the last, when imports and caches are warm for both
RATIO = MEASURES["speed_vs_bare_loop"]
RATIO_BOUND = (-0.25, 0.25)
GATED = frozenset({"quality", "ratio"})


def bare_loop_cpu_seconds(config) -> float:
    """CPU seconds of bench/bare_loop.py doing the cell's work: the same model, method, settings,
    training rows and evaluation rows, loaded, trained and scored in this process."""
    from bare_loop import train_and_score

    from harness.cell.plan import prepare_cell
    from harness.models import resolve_model
    from harness.models.loading import materialise

    started = time.process_time()  # reading the rows is part of the work on both sides
    plan, train = prepare_cell(config), config.train
    train_and_score(
        materialise(resolve_model(config.model)),
        plan.train_rows,
        plan.eval_rows,
        seed=config.seed,
        steps=int(train.max_steps),
        batch_size=train.batch_size,
        lr=float(train.learning_rate),
        max_length=config.data.max_source_tokens,
        clip=train.max_grad_norm or 0.0,
        method=config.method,
    )
    return time.process_time() - started


def run_gate(output_dir: Path, matrix: Path = GATE_MATRIX) -> Side:
    """Run the gate's cells (and the bare loop after the last one's) in this process; the side they
    make, the last seed's cell carrying the speed ratio. ``matrix``: a variant of the gate's (to see it fail).

    The ratio is of CPU time (this process's), not wall time: a busy machine stretches the wall
    time of whichever side it happens to slow, but hardly the CPU time each needs (one thread)."""
    import torch

    from harness.cell import run_cell
    from harness.compare.sources import matrix_side
    from harness.matrix import load_matrix

    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    ratio = None
    try:
        for cell in sorted(load_matrix(matrix, output_dir=output_dir).active, key=lambda c: c.seed):
            started = time.process_time()
            result = run_cell(cell.config)
            harness_cpu = time.process_time() - started
            if cell.seed == RATIO_SEED and result.status == "success":
                ratio = bare_loop_cpu_seconds(cell.config) / harness_cpu
    finally:
        torch.set_num_threads(threads)
    side = matrix_side(matrix, "NEW", output_dir)
    for sample in side.samples:
        if sample.row.seed == RATIO_SEED and ratio is not None:
            sample.figures[RATIO.name] = ratio
    return side


def reference_gate(side: Side) -> Gate:
    """The gate the reference is saved with: quality tolerances from its seeds' 95 % half-widths."""
    from harness.report.stats import summarize

    finished = [s for s in side.samples if s.finished]
    tolerance = {}
    for metric in quality_metrics(finished[0].row.scoring):
        half = summarize([s.row.metrics.get(metric) for s in finished]).half_width or 0.0
        tolerance[metric] = max(DEFAULT_TOLERANCE_POINTS, math.ceil(half * 1000) / 10)  # points, rounded up
    return Gate(aspects=GATED, tolerance=tolerance, bounds={RATIO.name: RATIO_BOUND})


def main() -> int:
    from harness.compare.comparison import compare_sides
    from harness.compare.reference import save_reference
    from harness.compare.render import console
    from harness.compare.sources import load_side

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--save", action="store_true", help=f"write the reference ({REFERENCE.relative_to(REPO)})")
    parser.add_argument("--output", type=Path, help="the run's cell folders (default: a temporary folder)")
    parser.add_argument(
        "--matrix", type=Path, default=GATE_MATRIX, help="a variant of bench/gate.yaml, to see the gate fail"
    )
    args = parser.parse_args()
    output = args.output or Path(tempfile.mkdtemp(prefix="gate-"))
    started = time.perf_counter()
    new = run_gate(output, args.matrix)
    print(f"gate run: {time.perf_counter() - started:.1f} s, cells in {output}")
    if args.save:
        if args.matrix != GATE_MATRIX:
            parser.error("--save writes the reference from bench/gate.yaml only")
        save_reference(new, REFERENCE, reference_gate(new))
        print(f"reference written to {REFERENCE}")
        return 0
    reference = load_side(str(REFERENCE), "REFERENCE")
    comparison = compare_sides(new, reference, reference.gate)
    print(console(comparison))
    return comparison.exit_code


if __name__ == "__main__":
    sys.exit(main())
