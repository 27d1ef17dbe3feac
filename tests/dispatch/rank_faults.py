"""A cell runner for the distributed failure tests: the real run_cell, except that rank 1 raises
before optimizer step ``HARNESS_FAULT_STEP`` (default 2) (HARNESS_CELL_RUNNER=rank_faults:run_cell)."""

from __future__ import annotations

import os
from typing import Any


def run_cell(config: Any) -> Any:
    from harness import cell

    if os.environ.get("RANK") == "1":
        from harness.train.loop import Trainer

        real = Trainer._optimizer_step
        fault = int(os.environ.get("HARNESS_FAULT_STEP", "2"))

        def breaking(self: Trainer, micro_batches: int, samples: int) -> None:
            if self.progress.step == fault - 1:
                raise RuntimeError(f"rank 1 breaks at step {fault}")
            real(self, micro_batches, samples)

        Trainer._optimizer_step = breaking  # type: ignore[method-assign]
    return cell.run_cell(config)
