"""Task presets (plain data), and tasks a matrix defines from its own files.

A task is a dataset, its canonical fields, its kind (see :mod:`harness.tasks.kinds`), its
labels and its prompt. Adding a bundled task is one entry in ``TASKS``, its data and its tests;
a user's task needs no code (``tasks: [{name: tweets, kind: classification, source: ...,
labels: [negative, positive]}]`` in a matrix).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness.config import TASK_NAME, TaskDefinition
from harness.errors import ConfigError
from harness.tasks.kinds import KINDS, SCORINGS

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "data"

TaskKind = Literal["classification", "generation"]
Family = Literal["t5", "llama", "bert"]
Head = Literal["seq2seq", "causal", "seqcls"]


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


@dataclass(frozen=True)
class HeldOut:
    """A split the dataset lacks, carved out of another one (BillSum has no validation split).

    The slice is a fixed share of ``of``, drawn with its own seed (independent of every training
    seed), and its rows are dropped from ``of`` wherever it is loaded: what selection scores on
    is never trained on, whichever stage or seed a cell belongs to."""

    name: str  # the split it provides, e.g. "validation"
    of: str  # the split it is carved from
    fraction: float
    seed: str

    def describe(self) -> str:
        return f"{self.name}: {self.fraction:.0%} of {self.of} (seed {self.seed!r})"


@dataclass(frozen=True)
class TaskSpec:
    name: str
    kind: TaskKind
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

    @property
    def heads(self) -> dict[str, str]:
        return KINDS[self.kind].heads

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
        bundled={split: BUNDLED_DIR / "billsum" / f"{split}.jsonl" for split in ("train", "train_clean", "test", "ca_test")},
        prompt=Prompt(t5_prefix="summarize: ", instruction="Summarize the following bill.", input_name="Bill",
                      output_name="Summary"),
        description="BillSum, US Congressional bill summarization (278-bill bundled sample)",
        # BillSum ships no validation split: sweeps select on 10 % of train, never trained on
        held_out=HeldOut(name="validation", of="train", fraction=0.1, seed="billsum/validation"),
    ),
}


def resolve_task(name: str, definition: TaskDefinition | dict[str, Any] | None = None) -> TaskSpec:
    """A bundled task by name, or the task a matrix defines (``definition``)."""
    if definition is not None:
        return defined_task(name, definition)
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; valid: {', '.join(TASKS)}, or define one in the matrix "
                          "(tasks: [{name: ..., kind: classification|generation, source: ..., labels: [...]}])")
    return TASKS[name]


def task_of(config: Any) -> TaskSpec:
    """The task of a cell config (a CellConfig, or its dump as result.json keeps it)."""
    if isinstance(config, dict):
        return resolve_task(str(config.get("task")), config.get("task_definition"))
    return resolve_task(config.task, config.task_definition)


def check_defined_task(name: str, source: Any) -> None:
    if name in TASKS:
        raise ConfigError(f"task {name!r} is a bundled task; give the task you define another name "
                          f"(bundled: {', '.join(TASKS)})")
    if not TASK_NAME.fullmatch(name):
        raise ConfigError(f"task name {name[:40]!r}: use letters, digits, '_', '.' and '-' (it names the cell folders)")
    if source is None or not (source.files or source.hub_id):
        raise ConfigError(f"task {name!r} is defined in the matrix: give its data with source: {{files: {{train: ..., "
                          "test: ...}}}} or source: {hub_id: ...}")


def defined_task(name: str, definition: TaskDefinition | dict[str, Any]) -> TaskSpec:
    spec = definition if isinstance(definition, TaskDefinition) else TaskDefinition.model_validate(definition)
    kind = KINDS[spec.kind]
    scoring = spec.metric or kind.scorings[0]
    assert scoring in SCORINGS and scoring in kind.scorings
    if spec.kind == "classification":
        prompt = Prompt(question=spec.instruction or Prompt.question)
    else:
        instruction = spec.instruction or Prompt.instruction
        prompt = Prompt(t5_prefix=f"{instruction}\n" if spec.instruction else "", instruction=instruction)
    return TaskSpec(name=name, kind=spec.kind, fields=("text", kind.target_field), scoring=scoring,
                    label_names=tuple(spec.labels or ()), prompt=prompt, defined=True,
                    description=f"{spec.kind} task defined in the matrix")


def head_for(task: TaskSpec, family: str, model_name: str) -> Head:
    try:
        return task.heads[family]  # type: ignore[return-value]
    except KeyError:
        raise ConfigError(
            f"task {task.name!r} cannot run on model {model_name!r}: a {family} model has no head for "
            f"{task.kind}; families that can: {', '.join(task.heads)}"
        ) from None
