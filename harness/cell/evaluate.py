"""Phase ``eval``: the model scored on the evaluation split; metrics and reports into the result,
every prediction into ``predictions.jsonl``."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.cell.load import Loaded
from harness.cell.plan import CellPlan
from harness.result import Result

if TYPE_CHECKING:  # imports torch: only once a cell evaluates
    from harness.tasks.evaluate import Evaluation

log = logging.getLogger("harness.cell")

PREDICTIONS_FILE = "predictions.jsonl"


def evaluate(plan: CellPlan, loaded: Loaded, model: Any, device: Any) -> Evaluation:
    """Score ``model`` on the evaluation examples."""
    from harness.tasks.evaluate import evaluate as score

    config = plan.config
    return score(
        model,
        loaded.formatter,
        loaded.eval_examples,
        data=config.data,
        batch_size=config.train.eval_batch_size,
        device=device,
    )


def keep(evaluation: Evaluation, cell_dir: Path, result: Result) -> None:
    """The evaluation into the result and ``predictions.jsonl``."""
    result.metrics = evaluation.metrics
    result.reports = evaluation.reports
    with (cell_dir / PREDICTIONS_FILE).open("w") as handle:
        for record in evaluation.predictions:
            handle.write(json.dumps(record) + "\n")
    result.artifacts["predictions"] = PREDICTIONS_FILE
    log.info("metrics: %s", {k: round(v, 4) for k, v in result.metrics.items()})
