"""What varies by task kind and by head is a field of its registry entry: rows, prompts and
training examples follow ``TaskKind.labelled`` and ``HeadSpec.class_labels`` /
``separate_target``, on the real path (bundled data, the tiny presets' tokenizers)."""

from __future__ import annotations

import pytest

from harness.config import DataConfig
from harness.errors import ConfigError
from harness.heads import HEADS, IGNORE_INDEX
from harness.tasks import kinds, load_split, registry
from harness.tasks.formatting import Formatter, causal_template, t5_classification_prompt
from harness.tasks.registry import TaskDefinition, head_for, resolve_task

DATA = DataConfig(max_source_tokens=48, max_target_tokens=16)


def _tokenizer(model: str):
    from transformers import AutoTokenizer

    from harness.models import materialise, resolve_model

    tokenizer = AutoTokenizer.from_pretrained(materialise(resolve_model(model)))
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    return tokenizer


@pytest.mark.parametrize(
    ("task_name", "model"),
    [("emotion", "tiny-bert"), ("emotion", "tiny-t5"), ("billsum", "tiny-t5"), ("billsum", "tiny-llama")],
)
def test_an_example_has_the_layout_its_head_declares(task_name: str, model: str) -> None:
    from harness.models import resolve_model

    task = resolve_task(task_name)
    head = HEADS[head_for(task, resolve_model(model).family, model)]
    tokenizer = _tokenizer(model)
    row = load_split(task, DATA, "test", limit=1)[0]
    example = Formatter(task, head.name, tokenizer, DATA).encode(row)
    answer = row[task.target_field]
    if head.class_labels:  # the text alone, one class id
        assert example.labels == answer and example.prompt_ids is None
        assert (
            example.input_ids == tokenizer(row["text"], truncation=True, max_length=DATA.max_source_tokens)["input_ids"]
        )
    elif head.separate_target:  # encoder input and decoder target, two sequences
        assert isinstance(example.labels, list) and example.prompt_ids is None
        target = task.label_names[answer] if task.labelled else answer
        source = t5_classification_prompt(task, row["text"]) if task.labelled else task.prompt.t5_prefix + row["text"]
        assert tokenizer.decode(example.labels, skip_special_tokens=True) == tokenizer.decode(
            tokenizer(target, add_special_tokens=False)["input_ids"][: DATA.max_target_tokens - 1],
            skip_special_tokens=True,
        )
        assert tokenizer.decode(example.input_ids, skip_special_tokens=True).strip().startswith(source[:16])
    else:  # one sequence: the prompt, then the answer the loss is taken on
        assert example.prompt_ids is not None and example.input_ids[: len(example.prompt_ids)] == example.prompt_ids
        assert example.labels[: len(example.prompt_ids)] == [IGNORE_INDEX] * len(example.prompt_ids)
        assert causal_template(task)[0].split("\n")[0] in tokenizer.decode(example.prompt_ids)
    assert (example.class_id is not None) == task.labelled


def test_a_labelled_kind_reads_class_ids_and_a_text_kind_texts() -> None:
    emotion, billsum = resolve_task("emotion"), resolve_task("billsum")
    assert emotion.labelled and not billsum.labelled
    assert all(isinstance(r["label"], int) for r in load_split(emotion, DATA, "test", limit=8))
    assert all(isinstance(r["summary"], str) for r in load_split(billsum, DATA, "test", limit=8))


def test_a_definition_is_checked_against_the_kinds_with_one_line_errors() -> None:
    with pytest.raises(ValueError, match=r"kind 'regression': valid: classification, generation"):
        TaskDefinition(kind="regression")
    with pytest.raises(
        ConfigError,
        match=r"^cell\.yaml: task_definition: metric 'bleu' for a generation task: "
        r"valid: rouge, exact_match$",
    ):
        registry.parse_task_definition({"kind": "generation", "metric": "bleu"}, "cell.yaml")
    # the form a cell id hashes: a definition without a validation slice dumps as it did before one existed
    dump = registry.parse_task_definition({"kind": "classification", "labels": ["no", "yes"]}).dump()
    assert dump == {"kind": "classification", "labels": ["no", "yes"], "metric": None, "instruction": None}


def test_a_new_task_kind_is_one_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    """A kind the harness lacks (text tagging, scored by exact match) becomes definable by adding
    its entry alone: definitions, the defined task, its heads and scoring follow it."""
    tagging = kinds.TaskKind("tagging", "target", {"t5": "seq2seq", "llama": "causal"}, ("exact_match",))
    monkeypatch.setitem(kinds.KINDS, "tagging", tagging)
    task = registry.defined_task("tags", {"kind": "tagging", "instruction": "Tag the text."})
    assert (task.kind, task.scoring, task.fields, task.labelled) == (
        "tagging",
        "exact_match",
        ("text", "target"),
        False,
    )
    assert head_for(task, "t5", "tiny-t5") == "seq2seq" and task.prompt.instruction == "Tag the text."
    with pytest.raises(ConfigError, match="a bert model has no head for tagging"):
        head_for(task, "bert", "tiny-bert")
    with pytest.raises(ValueError, match="labels are for classification tasks; a tagging task"):
        TaskDefinition(kind="tagging", labels=["a", "b"])
