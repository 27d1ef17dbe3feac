"""Phase ``eval``: the model scored on the evaluation split; metrics and reports into the result,
every prediction into ``predictions.jsonl``."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.cell.load import Loaded
from harness.cell.plan import CellPlan
from harness.heads import HEADS
from harness.result import Forgetting, Result

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


class ForgettingPass:
    """data.forgetting: the record begun before training (the base model's loss) and the articles
    to score again after it."""

    def __init__(self, record: Forgetting, texts: list[str]) -> None:
        self.record, self.texts = record, texts


def forgetting_before(plan: CellPlan, loaded: Loaded, device: Any) -> ForgettingPass | None:
    """The base model's loss on the sample, before training (peft's ``wiki_loss_before``); None
    when data.forgetting is off or the method does not train (nothing to forget)."""
    setting = plan.config.data.forgetting
    if setting is None or not plan.method.trains:
        return None
    head = HEADS[plan.head]
    if head.text_loss is None:  # the report shows "n/a (<why>)" where the figure would be
        record = Forgetting(sample=setting.sample, max_tokens=setting.max_tokens, not_applicable=head.no_text_loss)
        return ForgettingPass(record, [])
    from harness.tasks.forgetting import base_model, load_sample, mean_token_loss

    sample = load_sample(setting)
    with base_model(loaded.model):  # peft: the adapter disabled; a model trained whole: not yet trained
        before, tokens = mean_token_loss(
            loaded.model,
            loaded.tokenizer,
            plan.head,
            sample.texts,
            max_tokens=setting.max_tokens,
            batch_size=plan.config.train.batch_size,  # peft: the training batch, so the memory peak stays
            device=device,
        )
    record = Forgetting(
        sample=sample.name,
        source=sample.source,
        articles=len(sample.texts),
        max_tokens=setting.max_tokens,
        tokens=tokens,
        before=before,
    )
    log.info("forgetting: base model's loss %.4f on %d tokens of %s", before, tokens, sample.name)
    return ForgettingPass(record, sample.texts)


def forgetting_after(
    forgetting: ForgettingPass | None, plan: CellPlan, loaded: Loaded, model: Any, device: Any
) -> Forgetting | None:
    """The trained model's loss on the same articles (peft's ``wiki_loss_after``: the adapter enabled)."""
    if forgetting is None:
        return None
    record = forgetting.record
    if record.before is not None:
        from harness.tasks.forgetting import mean_token_loss

        record.after, _ = mean_token_loss(
            model,
            loaded.tokenizer,
            plan.head,
            forgetting.texts,
            max_tokens=record.max_tokens,
            batch_size=plan.config.train.batch_size,
            device=device,
        )
    return record


def keep_forgetting(record: Forgetting | None, result: Result) -> None:
    """The record into the result; ``metrics["forgetting"]`` = after - before (peft's figure)."""
    if record is None:
        return
    result.forgetting = record
    if record.before is not None and record.after is not None:
        result.metrics["forgetting"] = record.after - record.before
        log.info("forgetting: %.4f (loss %.4f -> %.4f)", record.after - record.before, record.before, record.after)
