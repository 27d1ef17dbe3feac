"""Turn canonical rows into token ids for one head, and batches into padded tensors.

Formulations (the study's), with each task's own prompt (:class:`harness.tasks.registry.Prompt`):
- generation, T5: ``prompt.t5_prefix + text`` -> target (BillSum: ``"summarize: "``);
- generation, decoder-only: an instruction/response template (``data.prompt_template: plain``) or
  the tokenizer's chat template (``chat``), loss on the response only;
- classification, T5: text-to-text with the label word as target, decoded back to a label;
- classification, Llama/BERT: a sequence-classification head over the text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from harness.config import DataConfig
from harness.errors import ConfigError
from harness.heads import HEADS, IGNORE_INDEX, HeadName
from harness.tasks.registry import TaskSpec


def t5_classification_prompt(task: TaskSpec, text: str) -> str:
    return f"{task.prompt.question}: {', '.join(task.label_names)}?\nText: {text}"


def causal_template(task: TaskSpec) -> tuple[str, str]:
    """(before the input, after it) of the decoder-only instruction/response template, or of the
    task's own ``prompt.template``."""
    prompt = task.prompt
    if prompt.template is not None:
        before, after = prompt.template.split("{text}", 1)
        return before, after
    return f"### Instruction:\n{prompt.instruction}\n\n### {prompt.input_name}:\n", f"\n\n### {prompt.output_name}:\n"


def chat_user_message(task: TaskSpec, text: str) -> str:
    """The user turn of a chat prompt: the task's instruction, then its input."""
    prompt = task.prompt
    return f"{prompt.instruction}\n\n{prompt.input_name}:\n{text}"


@dataclass
class Example:
    """One tokenized example. ``labels`` is a token list (generative) or a class id."""

    input_ids: list[int]
    labels: list[int] | int
    # generation prompt for decoder-only evaluation (the template without the response)
    prompt_ids: list[int] | None
    reference: str | int
    class_id: int | None = None
    # where it came from, for predictions.jsonl: the row's index in its split as read (None for a
    # row built in code) and its input text
    source_row: int | None = None
    text: str = ""

    @property
    def length(self) -> int:
        return len(self.input_ids) + (
            len(self.labels) if isinstance(self.labels, list) and self.prompt_ids is None else 0
        )


class Formatter:
    def __init__(self, task: TaskSpec, head: HeadName, tokenizer: Any, data: DataConfig) -> None:
        self.task, self.head, self.tokenizer, self.data = task, head, tokenizer, data
        self.eos = tokenizer.eos_token_id
        self.pad = tokenizer.pad_token_id
        # the tokens that end a generated answer: EOS, and a chat template's end of turn
        self.stop = [self.eos]
        self.chat = data.prompt_template == "chat" and HEADS[head].continues_prompt
        if self.chat:
            if not getattr(tokenizer, "chat_template", None):
                raise ConfigError(
                    "data.prompt_template: chat: the model's tokenizer has no chat template; valid: plain, auto"
                )
            end = self._chat_turn("", "x")[1]  # what the template appends after an answer
            if end and end[0] not in self.stop and end[0] in tokenizer.all_special_ids:
                self.stop.append(end[0])

    def _ids(self, text: str, *, special: bool, limit: int | None = None) -> list[int]:
        ids = self.tokenizer(text, add_special_tokens=special, truncation=limit is not None, max_length=limit)[
            "input_ids"
        ]
        return list(ids)

    def _with_eos(self, ids: list[int], limit: int) -> list[int]:
        ids = [i for i in ids if i != self.eos][: limit - 1]
        return ids + [self.eos]

    def encode(self, row: dict[str, Any]) -> Example:
        example = self._encode(row)
        example.source_row = getattr(row, "index", None)  # a SourceRow (harness.tasks.data) knows it
        example.text = row["text"]
        return example

    def _encode(self, row: dict[str, Any]) -> Example:
        data, task, head = self.data, self.task, HEADS[self.head]
        answer = task.target_field
        if head.class_labels:  # the text alone; the head predicts the class id
            ids = self._ids(row["text"], special=True, limit=data.max_source_tokens)
            return Example(ids, int(row[answer]), None, int(row[answer]), int(row[answer]))
        if head.separate_target:  # encoder input and decoder target: text-to-text
            if task.labelled:  # the label word is the target
                label = int(row[answer])
                source, target = t5_classification_prompt(task, row["text"]), task.label_names[label]
                reference, class_id = label, label
            else:
                source, target, reference, class_id = (
                    task.prompt.t5_prefix + row["text"],
                    row[answer],
                    row[answer],
                    None,
                )
            ids = self._with_eos(
                self._ids(source, special=True, limit=data.max_source_tokens + 1), data.max_source_tokens
            )
            target_ids = self._with_eos(self._ids(target, special=False), data.max_target_tokens)
            return Example(ids, target_ids, None, reference, class_id)
        if self.chat:
            return self._encode_chat(row)
        # decoder-only generation: prompt (with the truncated input) + response + EOS
        before, after = causal_template(task)
        all_text_ids = self._ids(row["text"], special=False)
        text_ids = all_text_ids[: data.max_source_tokens]
        if task.prompt.template is not None:
            # a prompt written out whole is tokenized as one string, as peft tokenizes its query
            # template (pieces tokenized apart differ at their seams); a long input is cut first
            text = row["text"] if len(text_ids) == len(all_text_ids) else self.tokenizer.decode(text_ids)
            prompt = self._ids(before + text + after, special=True)
        else:
            prompt = self._ids(before, special=True) + text_ids + self._ids(after, special=False)
        response = self._with_eos(self._ids(row[answer], special=False), data.max_target_tokens)
        return Example(prompt + response, [IGNORE_INDEX] * len(prompt) + response, prompt, row[answer])

    def _chat_turn(self, text: str, answer: str) -> tuple[list[int], list[int], list[int]]:
        """(prompt, response, end of turn) token ids of the chat template: the prompt is the user
        turn and the assistant header (``add_generation_prompt``); the response is what the
        template renders after it for an assistant turn holding ``answer``, its end-of-turn
        included; the end of turn is what follows the answer's text in that response."""
        user = [{"role": "user", "content": chat_user_message(self.task, text)}]
        render = self.tokenizer.apply_chat_template
        prompt = render(user, tokenize=False, add_generation_prompt=True)
        full = render([*user, {"role": "assistant", "content": answer}], tokenize=False)
        if not full.startswith(prompt):
            raise ConfigError(
                "data.prompt_template: chat: the model's chat template renders an answer that does not "
                "continue its generation prompt; valid: plain"
            )
        response = full[len(prompt) :]
        cut = response.rfind(answer.strip()) if answer.strip() else -1
        end = response[cut + len(answer.strip()) :] if cut >= 0 else ""
        ids = self._ids  # the template writes the special tokens itself, as apply_chat_template tokenizes
        return ids(prompt, special=False), ids(response, special=False), ids(end, special=False) if end else []

    def _encode_chat(self, row: dict[str, Any]) -> Example:
        """The chat template's prompt (with the input truncated to ``max_source_tokens``) and its
        assistant turn holding the answer (truncated to ``max_target_tokens``, its end of turn kept)."""
        data, answer = self.data, self.task.target_field
        text = row["text"]
        text_ids = self._ids(text, special=False)
        if len(text_ids) > data.max_source_tokens:
            text = self.tokenizer.decode(text_ids[: data.max_source_tokens])
        prompt, response, end = self._chat_turn(text, row[answer])
        if len(response) > data.max_target_tokens:
            keep = max(data.max_target_tokens - len(end), 0)
            response = response[:keep] + end
        return Example(prompt + response, [IGNORE_INDEX] * len(prompt) + response, prompt, row[answer])

    def decode_label(self, text: str) -> int:
        """Map generated text back to a class id; -1 when it names no label."""
        cleaned = text.strip().lower().strip(".!,;:\"' ")
        for index, name in enumerate(self.task.label_names):
            if cleaned == name or cleaned.split(" ")[0] == name:
                return index
        return -1


def pad_batch(sequences: list[list[int]], pad: int, left: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if left:
            ids[row, width - len(seq) :] = torch.tensor(seq)
            mask[row, width - len(seq) :] = 1
        else:
            ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
    return ids, mask


def collate_train(examples: list[Example], head: HeadName, pad: int) -> dict[str, torch.Tensor]:
    """Right-padded training batch; padded label positions are ignored by the loss."""
    input_ids, attention_mask = pad_batch([e.input_ids for e in examples], pad)
    batch = {"input_ids": input_ids, "attention_mask": attention_mask}
    if HEADS[head].class_labels:
        batch["labels"] = torch.tensor([e.labels for e in examples], dtype=torch.long)
    else:
        labels, _ = pad_batch([e.labels for e in examples], IGNORE_INDEX)  # type: ignore[misc]
        batch["labels"] = labels
    if all(e.class_id is not None for e in examples):
        batch["class_ids"] = torch.tensor([e.class_id for e in examples], dtype=torch.long)
    return batch


def collate_packed(examples: list[Example], *, flash_attention: bool = False) -> dict[str, torch.Tensor]:
    """A padding-free batch for a decoder-only head: the examples concatenated into one row,
    position ids restarting at each example, and the first label of each example ignored (it
    would be predicted from the previous example's last token). The loss over the row is the
    padded batch's loss: the same targets, each seen only by its own example's tokens (SDPA
    and eager attention read the boundaries from the position ids, flash-attention varlen
    from the ``cu_seq_lens`` it is given). Call the model with ``use_cache=False``: with a
    KV cache transformers does not look for packed sequences and attends across them."""
    from transformers import DataCollatorWithFlattening

    collator = DataCollatorWithFlattening(return_flash_attn_kwargs=flash_attention, return_tensors="pt")
    return collator([{"input_ids": e.input_ids, "labels": e.labels} for e in examples])


def count_tokens(batch: dict[str, torch.Tensor]) -> tuple[int, int]:
    """(non-padding tokens, all token slots) of a batch, inputs and generative labels together."""
    if "attention_mask" not in batch:  # a packed row has no padding
        return int(batch["input_ids"].numel()), int(batch["input_ids"].numel())
    real = int(batch["attention_mask"].sum())
    slots = batch["attention_mask"].numel()
    labels = batch.get("labels")
    if labels is not None and labels.dim() == 2 and labels.shape != batch["input_ids"].shape:
        real += int((labels != IGNORE_INDEX).sum())
        slots += labels.numel()
    return real, slots
