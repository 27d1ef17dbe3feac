"""Task presets (plain data), and tasks a matrix defines from its own files.

A task is a dataset, its canonical fields, its kind (see :mod:`harness.tasks.kinds`), its
labels and its prompt. Adding a bundled task is one entry in ``TASKS``, its data and its tests;
a user's task needs no code (``tasks: [{name: tweets, kind: classification, source: ...,
labels: [negative, positive]}]`` in a matrix).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field, ValidationError, model_validator

from harness.config import Line, StrictModel, format_validation_error
from harness.errors import ConfigError
from harness.heads import HeadName
from harness.tasks.extract import AnswerRule, answer_rule
from harness.tasks.kinds import KINDS, SCORINGS

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "data"
TASK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def _names(names: Any) -> str:
    return " or ".join(names)


class HeldOutDefinition(StrictModel):
    """``validation: {from: train, fraction: 0.1, seed: 0}`` (or ``count: N``): a defined task
    without a validation file declares a held-out slice of train (a :class:`HeldOut`), which
    sweeps select on and no stage trains on."""

    model_config = ConfigDict(populate_by_name=True)

    from_: str = Field("train", alias="from")
    fraction: float | None = None
    count: int | None = None
    seed: int = 0

    @model_validator(mode="after")
    def _one_size(self) -> HeldOutDefinition:
        if self.from_ != "train":
            raise ValueError(f"from {self.from_!r}: a held-out slice is carved from train (from: train)")
        if (self.fraction is None) == (self.count is None):
            raise ValueError("give either fraction (e.g. fraction: 0.1) or count (e.g. count: 100), not both")
        if self.fraction is not None and not 0 < self.fraction <= 0.5:
            raise ValueError(f"fraction {self.fraction}: a held-out share of train is in (0, 0.5], e.g. 0.1")
        if self.count is not None and self.count < 1:
            raise ValueError(f"count {self.count}: a held-out slice holds at least 1 row of train")
        return self


class TaskDefinition(StrictModel):
    """A task defined in a matrix or cell file, not bundled: its kind, labels and scoring.

    Its rows come from ``data.source`` (local files or a Hub dataset), mapped onto the kind's
    canonical fields: ``text`` and ``label`` for classification, ``text`` and ``target`` for
    generation. A cell config holds it as a plain mapping (``task_definition``), which
    :func:`harness.cell.resolve.resolve_cell_config` checks here and normalises to this model's
    dump (the form its cell id hashes). Every part of a cell that depends on the task (the
    head's size, label words, predictions, metrics, reports) reads it from here."""

    kind: str  # a key of harness.tasks.kinds.KINDS
    # a labelled kind (classification): the class names, in id order (a source's integer labels index them)
    labels: list[Line] | None = None
    # how outputs are scored, one of the kind's scorings (default: its first)
    metric: str | None = None
    # the prompt's question (classification, text-to-text models) or instruction (generation)
    instruction: str | None = None
    # a held-out slice of train to select on, for a task without a validation file
    validation: HeldOutDefinition | None = None
    # how to read the answer out of the target and the generated text before exact match: an
    # extractor of harness.tasks.extract.EXTRACTORS (answer: gsm8k, or answer: {regex: "..."})
    answer: str | dict[str, str] | None = None

    def dump(self) -> dict[str, Any]:
        """The form a cell config keeps (and its id hashes): without ``validation`` or ``answer``
        when none is declared, so the ids of tasks defined before they existed stay as they were."""
        dumped = self.model_dump(mode="json", by_alias=True)
        for key in ("validation", "answer"):
            if dumped[key] is None:
                del dumped[key]
        return dumped

    @property
    def answer_rule(self) -> AnswerRule | None:
        return answer_rule(self.answer) if self.answer is not None else None

    @property
    def scoring(self) -> str:
        """Its scoring: the one it names, else the kind's first that reads an extracted answer
        when it names an extractor, else the kind's default."""
        kind = KINDS[self.kind]
        extracting = [name for name in kind.scorings if SCORINGS[name].extracts]
        return self.metric or (extracting[0] if self.answer is not None and extracting else kind.scorings[0])

    @model_validator(mode="after")
    def _fits_kind(self) -> TaskDefinition:
        kind = KINDS.get(self.kind)
        if kind is None:
            raise ValueError(f"kind {self.kind!r}: valid: {', '.join(KINDS)}")
        labelled = _names(name for name, entry in KINDS.items() if entry.labelled)
        if kind.labelled:
            labels = self.labels or []
            if len(labels) < 2 or len(set(labels)) != len(labels) or not all(label.strip() for label in labels):
                raise ValueError(
                    f"a {kind.name} task needs labels: at least two distinct, non-empty class names "
                    "in id order, e.g. labels: [negative, positive]"
                )
        elif self.labels is not None:
            raise ValueError(
                f"labels are for {labelled} tasks; a {kind.name} task is scored on its target text "
                f"(metric: {_names(kind.scorings)})"
            )
        if self.metric is not None and (len(kind.scorings) == 1 or self.metric not in kind.scorings):
            if len(kind.scorings) == 1:
                choosing = _names(name for name, entry in KINDS.items() if len(entry.scorings) > 1)
                raise ValueError(
                    f"metric is for {choosing} tasks; {kind.name} is scored with {SCORINGS[kind.scorings[0]].measures}"
                )
            raise ValueError(f"metric {self.metric!r} for a {kind.name} task: valid: {', '.join(kind.scorings)}")
        if self.answer is not None:
            rule = self.answer_rule  # a ValueError names the problem and the valid extractors
            assert rule is not None
            if not SCORINGS[self.scoring].extracts:
                extracting = _names(name for name, entry in SCORINGS.items() if entry.extracts)
                raise ValueError(
                    f"answer ({rule.extractor}) is read out before {extracting}; a {kind.name} task scored with "
                    f"{self.scoring} scores the whole text (metric: {extracting} with answer:)"
                )
        return self


def parse_task_definition(data: Any, where: str = "cell config") -> TaskDefinition:
    """A checked task definition from its mapping, or a one-line ``ConfigError``."""
    try:
        return TaskDefinition.model_validate(data)
    except ValidationError as error:
        raise ConfigError(format_validation_error(error, TaskDefinition, f"{where}: task_definition")) from None


@dataclass(frozen=True)
class Prompt:
    """How a row becomes model input. Classification on text-to-text models asks
    ``"{question}: {labels}?\\nText: {text}"``; generation prefixes T5 inputs with ``t5_prefix``
    and wraps decoder-only inputs in an instruction/response template."""

    question: str = "Which label fits this text"
    t5_prefix: str = ""
    instruction: str = "Respond to the input."
    input_name: str = "Input"
    output_name: str = "Response"
    # a decoder-only prompt written out whole, ``{text}`` where the input goes, in place of the
    # instruction/response template (peft's MetaMathQA query template); None: that template
    template: str | None = None


@dataclass(frozen=True)
class HeldOut:
    """A split the dataset lacks, carved out of another one (BillSum has no validation split).

    The slice is a fixed share of ``of``, drawn with its own seed (independent of every training
    seed), and its rows are dropped from ``of`` wherever it is loaded: what selection scores on
    is never trained on, whichever stage or seed a cell belongs to."""

    name: str  # the split it provides, e.g. "validation"
    of: str  # the split it is carved from
    fraction: float | None  # a share of ``of``, or
    seed: str
    count: int | None = None  # a number of its rows

    def describe(self) -> str:
        size = f"{self.count} rows" if self.count is not None else f"{self.fraction:.0%}"
        return f"{self.name}: {size} of {self.of} (seed {self.seed!r})"


@dataclass(frozen=True)
class TaskSpec:
    name: str
    kind: str  # a key of harness.tasks.kinds.KINDS
    # canonical fields every source is mapped onto: (input, answer)
    fields: tuple[str, ...]
    scoring: str  # a key of harness.tasks.kinds.SCORINGS
    hub_id: str | None = None
    # split -> bundled offline file (real data, see harness/data/SOURCES.md)
    bundled: dict[str, Path] = field(default_factory=dict)
    label_names: tuple[str, ...] = ()
    prompt: Prompt = field(default_factory=Prompt)
    description: str = ""
    defined: bool = False  # defined by a matrix (TaskDefinition), not bundled
    held_out: HeldOut | None = None  # a selection split carved out of training data
    # how the scoring reads the answer out of target and generated text (harness.tasks.extract)
    answer: AnswerRule | None = None

    @property
    def heads(self) -> dict[str, HeadName]:
        return KINDS[self.kind].heads

    @property
    def labelled(self) -> bool:
        """Its answers are classes (its ``label_names``), not texts: see ``TaskKind.labelled``."""
        return KINDS[self.kind].labelled

    @property
    def target_field(self) -> str:
        return self.fields[1]


TASKS: dict[str, TaskSpec] = {
    "emotion": TaskSpec(
        name="emotion",
        kind="classification",
        fields=("text", "label"),
        scoring="classification",
        hub_id="dair-ai/emotion",
        bundled={split: BUNDLED_DIR / "emotion" / f"{split}.jsonl" for split in ("train", "validation", "test")},
        # the Hub ClassLabel order
        label_names=("sadness", "joy", "love", "anger", "fear", "surprise"),
        prompt=Prompt(question="Which emotion does this text express"),
        description="dair-ai/emotion, 6-class tweet emotion classification",
    ),
    "billsum": TaskSpec(
        name="billsum",
        kind="generation",
        fields=("text", "summary"),
        scoring="rouge",
        hub_id="FiscalNote/billsum",
        bundled={
            split: BUNDLED_DIR / "billsum" / f"{split}.jsonl" for split in ("train", "train_clean", "test", "ca_test")
        },
        prompt=Prompt(
            t5_prefix="summarize: ",
            instruction="Summarize the following bill.",
            input_name="Bill",
            output_name="Summary",
        ),
        description="BillSum, US Congressional bill summarization (278-bill bundled sample)",
        # BillSum ships no validation split: sweeps select on 10 % of train, never trained on
        held_out=HeldOut(name="validation", of="train", fraction=0.1, seed="billsum/validation"),
    ),
    "gsm8k": TaskSpec(
        name="gsm8k",
        kind="generation",
        # the files' text and target are GSM8K's question and answer (its worked solution, whose
        # final number follows "#### ")
        fields=("text", "target"),
        scoring="exact_match",
        # the full splits are bundled (openai/gsm8k on the Hub needs its config name, "main")
        bundled={split: BUNDLED_DIR / "gsm8k" / f"{split}.jsonl" for split in ("train", "test")},
        # peft's query template, for training and evaluation alike (the target follows "Answer:"
        # directly); a chat prompt has its wording in the user turn
        prompt=Prompt(
            instruction="Think step by step.",
            input_name="Question",
            output_name="Answer",
            template="Question: {text} Think step by step.\nAnswer:",
        ),
        description="GSM8K, grade-school math word problems, scored on the final number as peft's MetaMathQA benchmark",
        # GSM8K ships no validation split: like peft's benchmark (VALID_SIZE = 50 rows of GSM8K
        # train), sweeps select on 50 rows of train, never trained on; generation is slow
        held_out=HeldOut(name="validation", of="train", fraction=None, count=50, seed="gsm8k/validation"),
        answer=AnswerRule("gsm8k"),
    ),
}


def resolve_task(name: str, definition: TaskDefinition | Mapping[str, Any] | None = None) -> TaskSpec:
    """A bundled task by name, or the task a matrix defines (``definition``)."""
    if definition is not None:
        return defined_task(name, definition)
    if name not in TASKS:
        raise ConfigError(
            f"unknown task {name!r}; valid: {', '.join(TASKS)}, or define one in the matrix "
            f"(tasks: [{{name: ..., kind: {'|'.join(KINDS)}, source: ..., labels: [...]}}]) or in a cell file "
            f"for harness run --local --config (task_definition: {{kind: ..., labels: [...]}} and data.source)"
        )
    return TASKS[name]


def task_of(config: Any) -> TaskSpec:
    """The task of a cell config (a CellConfig, or its dump as result.json keeps it)."""
    if isinstance(config, dict):
        return resolve_task(str(config.get("task")), config.get("task_definition"))
    return resolve_task(config.task, config.task_definition)


def check_defined_task(name: str, source: Any) -> None:
    if name in TASKS:
        raise ConfigError(
            f"task {name!r} is a bundled task; give the task you define another name (bundled: {', '.join(TASKS)})"
        )
    if not TASK_NAME.fullmatch(name):
        raise ConfigError(f"task name {name[:40]!r}: use letters, digits, '_', '.' and '-' (it names the cell folders)")
    if source is None or not (source.files or source.hub_id):
        raise ConfigError(
            f"task {name!r} is defined in the matrix: give its data with source: {{files: {{train: ..., "
            "test: ...}}}} or source: {hub_id: ...}"
        )


def defined_task(name: str, definition: TaskDefinition | Mapping[str, Any]) -> TaskSpec:
    spec = definition if isinstance(definition, TaskDefinition) else TaskDefinition.model_validate(definition)
    kind = KINDS[spec.kind]
    scoring = spec.scoring
    assert scoring in SCORINGS and scoring in kind.scorings
    if kind.labelled:
        prompt = Prompt(question=spec.instruction or Prompt.question)
    else:
        instruction = spec.instruction or Prompt.instruction
        prompt = Prompt(t5_prefix=f"{instruction}\n" if spec.instruction else "", instruction=instruction)
    return TaskSpec(
        name=name,
        kind=spec.kind,
        fields=("text", kind.target_field),
        scoring=scoring,
        label_names=tuple(spec.labels or ()),
        prompt=prompt,
        defined=True,
        description=f"{spec.kind} task defined in the matrix",
        held_out=_held_out(spec.validation),
        answer=spec.answer_rule,
    )


def _held_out(validation: HeldOutDefinition | None) -> HeldOut | None:
    if validation is None:
        return None
    # seeded by the declaration alone (not the task's name): two tasks on one file hold out the same rows
    return HeldOut(
        name="validation",
        of=validation.from_,
        fraction=validation.fraction,
        count=validation.count,
        seed=f"validation/{validation.seed}",
    )


def head_for(task: TaskSpec, family: str, model_name: str) -> HeadName:
    try:
        return task.heads[family]
    except KeyError:
        raise ConfigError(
            f"task {task.name!r} cannot run on model {model_name!r}: a {family} model has no head for "
            f"{task.kind}; families that can: {', '.join(task.heads)}"
        ) from None
