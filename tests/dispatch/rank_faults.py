"""A cell runner for the distributed failure test: the real run_cell, except that rank 1's
second optimizer step raises (HARNESS_CELL_RUNNER=rank_faults:run_cell)."""

from __future__ import annotations

import os
from typing import Any


def run_cell(config: Any) -> Any:
    from harness import cell

    if os.environ.get("RANK") == "1":
        from harness.train.loop import Trainer

        real = Trainer._optimizer_step

        def breaking(self: Trainer, micro_batches: int, samples: int) -> None:
            if self.progress.step == 1:
                raise RuntimeError("rank 1 breaks at step 2")
            real(self, micro_batches, samples)

        Trainer._optimizer_step = breaking  # type: ignore[method-assign]
    return cell.run_cell(config)
