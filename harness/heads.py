"""Model heads as a registry of behaviour: what differs between a sequence-classification head,
a causal language model and an encoder-decoder, in one entry each.

A head supplies the transformers Auto class, the peft task type, the families that have it,
how training batches hold their labels (class ids or token sequences) and whether the answer is
a sequence of its own (encoder-decoder) or continues the prompt, how it predicts (an
argmax over class logits, or generation from left- or right-padded prompts), its class-weighted
loss, and why padding-free packing cannot apply to it. Models, methods, tasks and the trainer
read these fields and name no head.

Plain data at import (torch is imported inside the loss functions).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

HeadName = Literal["seq2seq", "causal", "seqcls"]
IGNORE_INDEX = -100  # label positions the loss skips (prompt tokens, padding)


@dataclass(frozen=True)
class HeadSpec:
    name: str
    auto_class: str  # transformers class that builds it: AutoModelFor...
    peft_task_type: str  # peft's TaskType value
    families: tuple[str, ...]  # model families that have this head
    missing: str  # why a model of another family cannot use it
    # labels are one class id per example (a new, randomly initialised classifier); otherwise
    # token sequences the language-model head already predicts
    class_labels: bool
    # generation: prompts padded on the left (decoder-only models continue each prompt) and the
    # output repeats the prompt; None for a head that does not generate
    prompt_padding: Literal["left", "right"] | None
    # (model, batch without class ids, class weights, class ids) -> loss, for data.class_weighted_loss
    weighted_loss: Callable[[Any, dict[str, Any], Any, Any], Any]
    # (batch, class weights or None, class ids) -> what the head's loss averages over in this batch
    # (examples, label tokens, class weights): a rank of a distributed cell scales its loss by its
    # share of the global batch's units, so the averaged gradient is the one-process gradient
    loss_units: Callable[[dict[str, Any], Any, Any], float] = lambda batch, weights, class_ids: float(
        len(batch["labels"])
    )
    # why padding-free packing (one flattened row per batch) cannot apply; None: it can
    packing_refusal: str | None = None
    # the answer is a sequence of its own (an encoder-decoder's decoder input), not a continuation
    # of the prompt in one sequence (a decoder-only model's) nor a class id
    separate_target: bool = False
    # (model, tokenizer, texts, max_tokens, device) -> (summed next-token cross-entropy, tokens
    # scored): the language-model loss on plain text that data.forgetting measures; None: the
    # head has no language-model loss, and ``no_text_loss`` says what it is instead
    text_loss: Callable[[Any, Any, list[str], int, Any], tuple[float, int]] | None = None
    no_text_loss: str | None = None

    @property
    def generates(self) -> bool:
        return self.prompt_padding is not None

    @property
    def continues_prompt(self) -> bool:
        """The answer continues a prompt in one sequence (a decoder-only language model): the
        prompt is built from a template (``data.prompt_template``)."""
        return not self.class_labels and not self.separate_target


def _class_loss(model: Any, batch: dict[str, Any], weights: Any, class_ids: Any) -> Any:
    import torch.nn.functional as F  # noqa: N812

    logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits.float()
    return F.cross_entropy(logits, batch["labels"], weight=weights)


def _text_to_text_loss(model: Any, batch: dict[str, Any], weights: Any, class_ids: Any) -> Any:
    """Text-to-text classification: each example's mean token loss, weighted by its class."""
    import torch.nn.functional as F  # noqa: N812

    labels = batch["labels"]
    logits = model(**batch).logits.float()
    token_loss = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=IGNORE_INDEX, reduction="none")
    per_example = token_loss.sum(1) / (labels != IGNORE_INDEX).sum(1).clamp(min=1)
    example_weights = weights[class_ids]
    return (per_example * example_weights).sum() / example_weights.sum()


def _example_units(batch: dict[str, Any], weights: Any, class_ids: Any) -> float:
    """cross_entropy's mean: over examples, or over their class weights."""
    return float(weights[batch["labels"]].sum()) if weights is not None else float(len(batch["labels"]))


def _token_units(batch: dict[str, Any], weights: Any, class_ids: Any) -> float:
    """An encoder-decoder loss: the mean over label tokens, or over examples' class weights."""
    if weights is not None:
        return float(weights[class_ids].sum())
    return float((batch["labels"] != IGNORE_INDEX).sum())


def _shifted_token_units(batch: dict[str, Any], weights: Any, class_ids: Any) -> float:
    """A decoder-only loss: the mean over label tokens after the one-position shift."""
    return float((batch["labels"][..., 1:] != IGNORE_INDEX).sum())


def _causal_text_loss(model: Any, tokenizer: Any, texts: list[str], max_tokens: int, device: Any) -> tuple[float, int]:
    """peft's calculate_mean_per_token_loss (method_comparison/MetaMathQA/run.py L107-131, after
    #2986 and #3419) for one batch: each text tokenized as the tokenizer does by default (BOS
    included), truncated to ``max_tokens``, left-padded; logits[t] scored against ids[t + 1] on real
    tokens only. Differences, neither changing the figure beyond rounding: padding is built here
    (not ``tokenizer.pad``, which needs a pad token) and the cross-entropy is taken in float32
    (peft's runs in the model's dtype, bf16: rounding over a 128k vocabulary)."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    rows = [ids[:max_tokens] for ids in tokenizer(texts, truncation=True, max_length=max_tokens)["input_ids"]]
    width = max(len(ids) for ids in rows)
    input_ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    for row, ids in enumerate(rows):
        input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
        mask[row, width - len(ids) :] = 1
    input_ids, mask = input_ids.to(device), mask.to(device)
    # prompt-learning methods prepend virtual tokens: the last ``width`` positions are the text's
    logits = model(input_ids=input_ids, attention_mask=mask).logits[:, -width:]
    # a target counts when it and the position predicting it are real tokens (a row's first token
    # follows padding: nothing predicts it, as in peft's per-row slice)
    keep = (mask[:, 1:] * mask[:, :-1]).bool()
    loss = F.cross_entropy(logits[:, :-1][keep].float(), input_ids[:, 1:][keep], reduction="sum")
    return float(loss), int(keep.sum())


def _seq2seq_text_loss(model: Any, tokenizer: Any, texts: list[str], max_tokens: int, device: Any) -> tuple[float, int]:
    """An encoder-decoder's language-model loss on plain text: the text is the decoder's target
    (truncated to ``max_tokens``, its EOS included when the tokenizer adds one) after an empty
    encoder input (EOS alone),
    so every text token is predicted from the tokens before it, as a decoder-only model's are
    (the decoder input is the target shifted right, starting from the decoder start token). T5's
    pre-training objective (span corruption) scores masked spans instead; its figures would not
    be comparable with a causal model's."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    targets = [ids[:max_tokens] for ids in tokenizer(texts, truncation=True, max_length=max_tokens)["input_ids"]]
    # the empty text as the tokenizer encodes it (T5's: its EOS alone); EOS when that is nothing
    empty = tokenizer("")["input_ids"] or [tokenizer.eos_token_id]
    width = max(len(ids) for ids in targets)
    labels = torch.full((len(targets), width), IGNORE_INDEX, dtype=torch.long)
    for row, ids in enumerate(targets):
        labels[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    input_ids = torch.tensor([empty] * len(targets), dtype=torch.long).to(device)
    labels = labels.to(device)
    logits = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), labels=labels).logits
    keep = labels != IGNORE_INDEX
    loss = F.cross_entropy(logits[keep].float(), labels[keep], reduction="sum")
    return float(loss), int(keep.sum())


def _no_class_weights(model: Any, batch: dict[str, Any], weights: Any, class_ids: Any) -> Any:
    raise ValueError("a causal language-model head generates text; class weights apply to classification")


HEADS: dict[str, HeadSpec] = {
    head.name: head
    for head in (
        HeadSpec(
            "seq2seq",
            "AutoModelForSeq2SeqLM",
            "SEQ_2_SEQ_LM",
            ("t5",),
            "has no encoder-decoder head",
            class_labels=False,
            prompt_padding="right",
            weighted_loss=_text_to_text_loss,
            loss_units=_token_units,
            separate_target=True,
            text_loss=_seq2seq_text_loss,
            packing_refusal="an encoder-decoder example is two sequences (encoder input, decoder target), which "
            "one flattened row cannot hold",
        ),
        HeadSpec(
            "causal",
            "AutoModelForCausalLM",
            "CAUSAL_LM",
            ("llama",),
            "is not a decoder-only model",
            class_labels=False,
            prompt_padding="left",
            weighted_loss=_no_class_weights,
            loss_units=_shifted_token_units,
            text_loss=_causal_text_loss,
        ),
        HeadSpec(
            "seqcls",
            "AutoModelForSequenceClassification",
            "SEQ_CLS",
            ("t5", "llama", "bert"),
            "has no sequence-classification head",
            class_labels=True,
            prompt_padding=None,
            weighted_loss=_class_loss,
            loss_units=_example_units,
            no_text_loss="classification head",
            packing_refusal="a classification head pools one position per padded row (the last token, or "
            "[CLS]), which a row of several examples does not have",
        ),
    )
}


def auto_class(head: str) -> Any:
    import transformers

    return getattr(transformers, HEADS[head].auto_class)
