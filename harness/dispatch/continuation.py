"""``python -m harness.dispatch.continuation MATRIX --output-dir DIR --executor NAME``: submit a
sweep's stage 2 once its stage 1 has ended (started by the executor's ``schedule``, see
``harness.dispatch.stages``). Nothing imports this module: it is the top of dispatch."""

from __future__ import annotations

import argparse
import sys
import time

from harness.dispatch.commands import render_submit, status, submit
from harness.matrix import Limits

POLL_S = 5.0


def continue_matrix(
    path: str,
    output_dir: str,
    executor: str,
    only: str | None,
    poll_s: float = POLL_S,
    limits: Limits | None = None,
) -> str:
    """Wait until no grid point of a waiting selection is queued or running, then submit."""
    while True:
        report = status(path, output_dir=output_dir, only=only, limits=limits)
        points = {c.cell_id for s in report.matrix.waiting for c in s.points}
        if not any(state.cell.cell_id in points for state in report.active):
            break
        time.sleep(poll_s)
    text = render_submit(submit(path, output_dir=output_dir, only=only, executor=executor, limits=limits))
    print(text, flush=True)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="submit a matrix's stage 2 once its stage 1 has ended")
    parser.add_argument("matrix")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--executor", required=True)
    parser.add_argument("--only")
    parser.add_argument("--max-cells", type=int, default=Limits.cells)
    parser.add_argument("--max-grid-points", type=int, default=Limits.grid_points)
    args = parser.parse_args(argv)
    limits = Limits(cells=args.max_cells, grid_points=args.max_grid_points)
    continue_matrix(args.matrix, args.output_dir, args.executor, args.only, limits=limits)
    return 0


if __name__ == "__main__":
    sys.exit(main())
