"""The typed schema of a matrix file (``jobs/*.yaml``).

A matrix file names the axes (models x methods x tasks x seeds), the settings every
cell shares (``defaults``), targeted changes (per axis entry and ``overrides``),
exclusions with a reason, and where/how cells run (``resources``, ``executor``).
Every model forbids unknown keys, so a typo is an error that lists the valid keys.

Shape (every key but the axes is optional)::

    name: smoke                      # default: the file's stem; the MLflow parent run
    output_dir: outputs/smoke        # $VARS and ~ expand; relative to the working dir
    tracking: {uri: null, experiment: smoke, live: auto}
    executor: {cluster: slurm, array_parallelism: 16, max_requeues: 3,
               container: {runtime: apptainer, image: ~/images/harness.sif, binds: [/scratch/data]}}
    resources: {gpus: 1, cpus: 8, mem_gb: 64, time_min: 240, partition: gpu}
    models: [tiny-bert, {name: llama-3.2-3b, resources: {mem_gb: 96}}]
    methods: [lora, {name: ia3, set: {train.learning_rate: 3.0e-3}}]
    tasks: [emotion]
    seeds: [0, 1, 2]
    grids:                           # optional: the union of sub-products instead of the full one
      - {models: [tiny-bert], methods: [lora, ia3]}
      - {models: [llama-3.2-3b], methods: [lora], seeds: [0]}
    defaults: {train: {max_steps: 200}}          # CellConfig keys
    overrides:                                   # applied in order, after defaults
      - match: {model: llama-3.2-3b, method: [lora, loha]}
        set: {method_args: {r: 16}}
        resources: {time_min: 480}
    exclude:
      - match: {model: tiny-t5, method: prefix}
        reason: prefix tuning is not supported on this architecture
    sweep:                                       # two stages: see harness.matrix.sweep
      - values: {train.learning_rate: {log: [1.0e-5, 1.0e-2], n: 7}}
      - match: {method: ia3}
        values: {train.learning_rate: {log: [1.0e-4, 1.0e-1], n: 7}}
    select: {metric: f1_macro, split: validation, mode: max}
    extends: thesis.yaml                         # start from that file; keys given here replace its own
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from harness.config import DataSource, Line, SbatchKey, Seed, StrictModel
from harness.errors import clip, shorten
from harness.tasks.kinds import KINDS
from harness.tasks.registry import HeldOutDefinition, TaskDefinition

# CellConfig keys a matrix may not set through ``defaults``/``set``: they are the axes
# or are derived by the expansion (output_dir is the cell's folder).
RESERVED_KEYS: tuple[str, ...] = ("model", "method", "task", "seed", "output_dir")

# resources.mem_gb's range. --mem is rendered in whole MB (harness.dispatch.executor.mem_text), and
# SLURM reads --mem=0 as "all of the node's memory": below 1 MB a request would become the most
# there is. Above a pebibyte no node exists; a larger number is a typo, refused before sbatch sees it.
MIN_MEM_GB = 1 / 1024
MAX_MEM_GB = 1024.0**2

# The most entries in each list of rules (grids, overrides, exclude, sweep). Every cell is checked
# against every rule, so the expansion's work is cells x rules: with MAX_CELLS, at most 10 million
# checks (seconds). A hand-written matrix has tens (the thesis: 28 overrides, 7 grids).
MAX_RULES = 1_000


class Resources(StrictModel):
    """What one cell's job asks the scheduler for. Merged: resources -> axis entries -> overrides."""

    nodes: int = 1  # --nodes: a cell on more than one node trains with torch.distributed
    gpus: int = 0  # per node (--gpus-per-node)
    # --ntasks-per-node: one process per GPU (default), or on CPU several gloo processes (tests)
    tasks_per_node: int | None = None
    cpus: int = 2  # --cpus-per-task
    mem_gb: float | None = None  # --mem; None: the partition's default
    time_min: int = 60  # --time; also the local executor's per-cell time limit
    partition: Line | None = None
    account: Line | None = None
    qos: Line | None = None
    constraint: Line | None = None
    # extra sbatch flags without the leading dashes, e.g. {"mail-type": "END", "hold": true}
    sbatch_extra: dict[SbatchKey, Line | int | bool] = Field(default_factory=dict)
    # shell lines run before the cell (module load ..., export ...)
    setup: list[Line] = Field(default_factory=list)
    # seconds between the warning signal (checkpoint + requeue) and the kill at the time limit
    signal_delay_s: int = 120

    @property
    def tasks(self) -> int:
        """Processes per node: ``tasks_per_node``, else one per GPU (one on a CPU node)."""
        return self.tasks_per_node or max(self.gpus, 1)

    @property
    def world_size(self) -> int:
        return self.nodes * self.tasks

    @model_validator(mode="after")
    def _positive(self) -> Resources:
        if self.gpus < 0 or self.cpus < 1 or self.time_min < 1 or self.nodes < 1:
            raise ValueError("resources: nodes must be >= 1, gpus >= 0, cpus >= 1, time_min >= 1")
        if self.tasks_per_node is not None and self.tasks_per_node < 1:
            raise ValueError("resources: tasks_per_node must be >= 1")
        if self.gpus and self.tasks_per_node is not None and self.tasks_per_node != self.gpus:
            raise ValueError(
                f"resources: tasks_per_node {self.tasks_per_node} with gpus {self.gpus}: a cell runs one "
                "process per GPU (leave tasks_per_node out, or set it equal to gpus)"
            )
        if self.mem_gb is not None and not MIN_MEM_GB <= self.mem_gb <= MAX_MEM_GB:
            raise ValueError(
                f"resources: mem_gb {self.mem_gb:g} is out of range: give 0.001 (1 MB) to {MAX_MEM_GB:,.0f} (GB); "
                "below 1 MB, --mem would be 0, which SLURM reads as all of a node's memory"
            )
        if self.signal_delay_s < 0 or self.signal_delay_s >= self.time_min * 60:
            raise ValueError("resources: signal_delay_s must be >= 0 and shorter than time_min")
        return self


class ContainerSpec(StrictModel):
    """Where each cell's python runs: ``executor.container`` (see harness.dispatch.container).

    ``{runtime: apptainer, image: /shared/images/harness.sif, binds: [/scratch/data], env: {K: V}}``
    """

    runtime: Literal["none", "apptainer", "docker"] = "none"
    # apptainer: a .sif path ($VARS and ~ expand); docker: an image reference (harness:gpu)
    image: Line | None = None
    # extra bind mounts, ``SRC[:DST[:ro]]`` (both runtimes accept this form); the output
    # folder, submitit folder and model/data caches are bound at their own paths already
    binds: list[Line] = Field(default_factory=list)
    # extra flags for ``apptainer exec`` / ``docker run``, e.g. [--shm-size=8g]
    options: list[Line] = Field(default_factory=list)
    env: dict[str, Line] = Field(default_factory=dict)
    # the runtime's command; default: apptainer (or singularity) / docker from the PATH
    executable: Line | None = None

    @model_validator(mode="after")
    def _image(self) -> ContainerSpec:
        if self.runtime != "none" and not (self.image or "").strip():
            raise ValueError(f"executor.container: runtime {self.runtime} needs an image")
        if any(not b.strip() for b in self.binds):
            raise ValueError("executor.container.binds: empty entry")
        bad = [k for k in self.env if not k.isidentifier()]
        if bad:
            raise ValueError(f"executor.container.env: invalid variable name(s) {', '.join(bad)}")
        return self


OLD_CLUSTER_KEY = "kind"  # what executor.cluster was called before


class ExecutorSpec(StrictModel):
    """How cells are run. ``cluster`` names the executor, in submitit's word: slurm, local
    (subprocesses here) or debug (in-process). The names are dispatch's registry
    (``harness.dispatch.executors``), which refuses an unknown one before anything is planned or
    submitted; this layer sits below dispatch, so it keeps the plain string."""

    cluster: Line = "slurm"
    # running tasks per job array (sbatch --array=0-N%P); the local executor runs at most P cells at once
    array_parallelism: int = 16
    # requeues after a time-out (each resumes from the cell's checkpoint); then the cell ends as timeout
    max_requeues: int = 3
    # requeues after preemption (not the cell's fault, so counted separately)
    max_preemptions: int = 10
    # submitit's folder (pickles, sbatch scripts, logs); default <output_dir>/.submitit
    folder: Line | None = None
    # command that starts python in the job; default: this interpreter
    python: Line | None = None
    job_name: Line | None = None  # default: harness-<name>
    use_srun: bool = True
    # without sbatch on the PATH, run a slurm matrix with the local executor
    fallback_to_local: bool = True
    # run each cell's python inside a pinned image (harness.dispatch.container); default: on the host
    container: ContainerSpec = Field(default_factory=lambda: ContainerSpec())

    @model_validator(mode="before")
    @classmethod
    def _old_key(cls, data: Any) -> Any:
        """``executor.kind`` is the old name of ``executor.cluster`` and still accepted."""
        if not isinstance(data, dict) or OLD_CLUSTER_KEY not in data:
            return data
        data = dict(data)
        old = data.pop(OLD_CLUSTER_KEY)
        if data.setdefault("cluster", old) != old:
            raise ValueError(
                f"executor.{OLD_CLUSTER_KEY} {old!r} and executor.cluster {data['cluster']!r} disagree; "
                f"give executor.cluster only"
            )
        return data

    @model_validator(mode="after")
    def _positive(self) -> ExecutorSpec:
        if self.array_parallelism < 1:
            raise ValueError("executor.array_parallelism must be >= 1")
        if self.max_requeues < 0 or self.max_preemptions < 0:
            raise ValueError("executor.max_requeues and executor.max_preemptions must be >= 0")
        return self


class TrackingSpec(StrictModel):
    # None: $MLFLOW_TRACKING_URI, else sqlite:///<output_dir>/mlflow.db
    uri: Line | None = None
    experiment: Line | None = None  # default: the matrix name
    # jobs log live to a tracking server: auto = only when the URI is http(s)
    # (many jobs writing one SQLite file lock each other); collect fills in the rest
    live: Literal["auto", "on", "off"] = "auto"


class AxisEntry(StrictModel):
    """An axis value with its own settings: ``{name: ia3, set: {...}, resources: {...}}``."""

    name: Line
    set: dict[str, Any] = Field(default_factory=dict)
    resources: dict[str, Any] = Field(default_factory=dict)


class MethodEntry(AxisEntry):
    """A methods-axis value. ``name`` is a method of the registry, or, with ``method``, the label of
    one configuration of that method, so that a matrix can hold several (peft's benchmark: one cell
    per experiment config)::

        {name: lora/rank32-dora, method: lora, set: {method_args: {from: experiments/.../adapter_config.json}}}

    Grids, overrides, exclusions and sweeps match such an entry by its label; its cells run the
    method and carry the label in their tags (``harness.names.VARIANT_TAG``), so that the report
    shows each configuration apart rather than as seeds of one method."""

    method: Line | None = None

    @property
    def registry_name(self) -> str:
        return self.method or self.name


class TaskEntry(AxisEntry):
    """A tasks-axis value. A bundled task by name (``emotion``), or a task the matrix defines from
    its own data, with no code::

        {name: tweets, kind: classification, labels: [negative, positive],
         source: {files: {train: tweets-train.csv, test: tweets-test.csv}, fields: {text: tweet, label: sentiment}}}

    ``kind`` (a task kind: classification | generation), ``labels`` (a labelled kind's classes),
    ``metric`` (one of the kind's scorings, e.g. rouge | exact_match), ``instruction``, ``validation`` and
    ``answer`` (an extractor read before exact match: gsm8k, or {regex: "..."}) make its
    ``task_definition`` (:class:`harness.tasks.registry.TaskDefinition` checks them); ``source`` is
    its ``data.source``. Both go into every cell of the task (and its id)."""

    kind: str | None = None
    labels: list[Line] | None = None
    metric: str | None = None
    instruction: str | None = None
    # a held-out slice of train to select on: {from: train, fraction: 0.1, seed: 0} (or count: N)
    validation: HeldOutDefinition | None = None
    # how to read the answer out of target and generation before exact match: answer: gsm8k, or
    # answer: {regex: "..."} with one capture group (harness.tasks.extract.EXTRACTORS)
    answer: str | dict[str, str] | None = None
    source: DataSource | None = None

    @property
    def defined(self) -> bool:
        """A task the matrix defines (it has a kind), not a bundled one."""
        return self.kind is not None

    @model_validator(mode="after")
    def _defined_task(self) -> TaskEntry:
        given = [
            key
            for key in ("labels", "metric", "instruction", "validation", "answer", "source")
            if getattr(self, key) is not None
        ]
        if self.kind is None:
            if given:
                raise ValueError(
                    f"task {shorten(self.name)}: {', '.join(given)} define a task of your own, which also needs "
                    f"kind: {' or '.join(KINDS)}"
                )
            return self
        try:
            definition = TaskDefinition(
                kind=self.kind,
                labels=self.labels,
                metric=self.metric,
                instruction=self.instruction,
                validation=self.validation,
                answer=self.answer,
            ).model_dump(exclude_none=True, by_alias=True)
        except ValidationError as error:
            raise ValueError(
                f"task {shorten(self.name)}: {error.errors()[0]['msg'].removeprefix('Value error, ')}"
            ) from None
        # the same shape any cell's settings have: merged into every cell of this task (in place:
        # assigning would validate this entry again)
        self.set["task_definition"] = definition
        if self.source is not None:
            self.set["data.source"] = self.source.model_dump(exclude_defaults=True)
        return self


Selector = Line | list[Line] | None  # printed back (a rule that matches no cell): one visible line


class Match(StrictModel):
    """Which cells a rule applies to; an omitted key matches everything, a list any of its values."""

    model: Selector = None
    method: Selector = None
    task: Selector = None
    seed: int | list[int] | None = None

    def matches(self, model: str, method: str, task: str, seed: int) -> bool:
        for want, have in ((self.model, model), (self.method, method), (self.task, task), (self.seed, seed)):
            if want is None:
                continue
            if isinstance(want, list) and have not in want:
                return False
            if not isinstance(want, list) and have != want:
                return False
        return True

    def describe(self) -> str:
        parts = [
            f"{k}={v if not isinstance(v, list) else '|'.join(map(str, v))}"
            for k, v in self.model_dump().items()
            if v is not None
        ]
        return ",".join(parts) or "*"


class Override(StrictModel):
    match: Match = Field(default_factory=Match)
    set: dict[str, Any] = Field(default_factory=dict)
    resources: dict[str, Any] = Field(default_factory=dict)


class Exclusion(StrictModel):
    match: Match
    reason: Line  # printed by plan and status: no escape sequence or bidi override reaches a terminal

    @field_validator("reason")
    @classmethod
    def _stated(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("an exclusion needs a non-empty reason")
        return value


class LogGrid(StrictModel):
    """``{log: [low, high], n: N}``: N values evenly spaced in log scale, both ends included."""

    log: tuple[float, float]
    n: int = Field(ge=2, le=100)

    @model_validator(mode="after")
    def _range(self) -> LogGrid:
        low, high = self.log
        if not (0 < low < high) or not all(math.isfinite(v) for v in self.log):
            raise ValueError(f"log: [{low}, {high}]: needs 0 < low < high")
        return self

    def values(self) -> list[float]:
        low, high = (math.log10(v) for v in self.log)
        # three significant digits: the values are read in tables and cell folders
        return [float(f"{10 ** (low + (high - low) * i / (self.n - 1)):.3g}") for i in range(self.n)]


SweepValues = list[Any] | LogGrid


class SweepEntry(StrictModel):
    """Values per dotted cell key (``train.learning_rate``, ``method_args.r``), for the cells
    its ``match`` selects (omitted: every cell)."""

    match: Match = Field(default_factory=Match)
    values: dict[str, SweepValues]

    @field_validator("values", mode="before")
    @classmethod
    def _shapes(cls, values: Any) -> Any:
        """A list, or a log grid: the grid's own error, not the union's first branch's."""
        if not isinstance(values, dict):
            return values
        shaped = {}
        for key, value in values.items():
            if isinstance(value, dict):
                try:
                    value = LogGrid.model_validate(value)
                except ValidationError as error:
                    detail = error.errors()[0]
                    where = ".".join(map(str, detail["loc"]))
                    raise ValueError(
                        f"{key}: {where + ': ' if where else ''}{detail['msg'].removeprefix('Value error, ')}"
                        " (a log grid is {log: [low, high], n: N})"
                    ) from None
            elif not isinstance(value, list):
                raise ValueError(f"{key}: give a list of values or {{log: [low, high], n: N}}, not {shorten(value)}")
            shaped[key] = value
        return shaped

    @model_validator(mode="after")
    def _non_empty(self) -> SweepEntry:
        if not self.values:
            raise ValueError("a sweep entry needs values: {key: [v1, v2, ...] or {log: [low, high], n: N}}")
        for key, values in self.values.items():
            listed = grid_values(values)
            if not listed:
                raise ValueError(f"{key}: empty list; give at least one value or {{log: [low, high], n: N}}")
            seen = Counter(json.dumps(v, sort_keys=True, default=str) for v in listed)
            if len(seen) != len(listed):
                repeated = next(text for text, count in seen.items() if count > 1)
                raise ValueError(f"{key}: duplicate values in its {len(listed):,} values, e.g. {clip(repeated)}")
        return self


# keys that set the budget the rungs divide: halving over one would give its grid points
# different step counts, so a rung would mean something else for each
BUDGET_KEYS = ("train.max_steps", "train.epochs", "data.max_train_samples", "train.batch_size", "train.grad_accum")


class HalvingSpec(StrictModel):
    """Successive halving of a sweep's stage 1: every grid point trains to the first rung, and the
    best ceil(n/eta) of each rung continue to the next, up to the full budget (train.max_steps).
    The rungs: ``min_steps``, ``min_steps*eta``, ... below max_steps, or ``rungs`` as given."""

    eta: int = 3
    min_steps: int | None = Field(default=None, ge=1)
    rungs: list[int] | None = None

    @model_validator(mode="after")
    def _valid(self) -> HalvingSpec:
        if self.eta < 2:
            raise ValueError(f"eta {self.eta}: must be 2 or more (the share of a rung that continues is 1/eta)")
        if (self.min_steps is None) == (self.rungs is None):
            raise ValueError("give either min_steps (rungs min_steps, min_steps*eta, ...) or rungs: [N1, N2, ...]")
        if self.rungs is not None and (
            not self.rungs or self.rungs[0] < 1 or any(b <= a for a, b in zip(self.rungs, self.rungs[1:]))
        ):
            raise ValueError(f"rungs {self.rungs}: must be increasing step counts of 1 or more")
        return self

    def steps(self, max_steps: int, points: int) -> list[int]:
        """The rungs' step counts for ``points`` grid points and a budget of ``max_steps``, the full
        budget last; ValueError when a rung is not below it. Given rungs are kept as given (each
        point's metric there is in the selection table); of those ``min_steps`` makes, a rung that
        one point alone would reach is left out: it selects nothing, and that point trains on to
        the same state."""
        if self.rungs is not None:
            if self.rungs[-1] >= max_steps:
                raise ValueError(f"rung {self.rungs[-1]} is not below train.max_steps {max_steps} (the last rung)")
            return [*self.rungs, max_steps]
        assert self.min_steps is not None
        if self.min_steps >= max_steps:
            raise ValueError(f"min_steps {self.min_steps} is not below train.max_steps {max_steps}")
        rungs, step, reaching = [], self.min_steps, points
        while step < max_steps and reaching > 1:
            rungs.append(step)
            step, reaching = step * self.eta, math.ceil(reaching / self.eta)
        return [*rungs, max_steps]


class SelectSpec(StrictModel):
    """How stage 1 picks a grid point: the metric (one for every task, or one per task; default:
    each task's headline metric), the split it is read on, and whether higher or lower wins."""

    metric: str | dict[str, str] | None = None
    split: str = "validation"
    mode: Literal["max", "min"] = "max"
    # settings of the stage-1 cells only, e.g. a smaller selection set {data.max_eval_samples: 500}
    set: dict[str, Any] = Field(default_factory=dict)
    # successive halving of stage 1 (None: every grid point runs its full budget)
    halving: HalvingSpec | None = None

    @model_validator(mode="after")
    def _not_test(self) -> SelectSpec:
        if self.split == "test":
            raise ValueError(
                "split 'test': selection never sees the test split; use validation (emotion's "
                "validation split, BillSum's held-out 10 % of train) or another split of your data"
            )
        return self

    def metric_for(self, task: str, headline: str) -> str:
        if isinstance(self.metric, dict):
            return self.metric.get(task, headline)
        return self.metric or headline

    def describe(self, metric: str) -> str:
        return f"{metric}/{self.split}/{self.mode}"


def grid_values(values: SweepValues) -> list[Any]:
    return values.values() if isinstance(values, LogGrid) else list(values)


class Grid(StrictModel):
    """A sub-product of the axes: names from the top-level axes (omitted: all of that axis)."""

    models: list[str] | None = None
    methods: list[str] | None = None
    tasks: list[str] | None = None
    seeds: list[int] | None = None


class MatrixSpec(StrictModel):
    """A matrix file as written (before expansion)."""

    name: Line | None = None
    description: str | None = None
    output_dir: Line = "outputs/matrix"
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)
    executor: ExecutorSpec = Field(default_factory=ExecutorSpec)
    resources: Resources = Field(default_factory=Resources)
    models: list[Line | AxisEntry]
    methods: list[Line | MethodEntry]
    tasks: list[Line | TaskEntry]
    seeds: list[Seed] = Field(default_factory=lambda: [0])
    # Without grids the matrix is the full product of the axes; with grids, the union of
    # these sub-products (so a demo need not exclude most of a product)
    grids: list[Grid] | None = Field(None, max_length=MAX_RULES)
    defaults: dict[str, Any] = Field(default_factory=dict)
    overrides: list[Override] = Field(default_factory=list, max_length=MAX_RULES)
    exclude: list[Exclusion] = Field(default_factory=list, max_length=MAX_RULES)
    # grids of values per cell key, and how stage 1 selects among them (harness.matrix.sweep)
    sweep: list[SweepEntry] = Field(default_factory=list, max_length=MAX_RULES)
    select: SelectSpec | None = None

    @model_validator(mode="after")
    def _non_empty_unique(self) -> MatrixSpec:
        if self.select is not None and self.select.halving is not None and not self.sweep:
            raise ValueError("select.halving: needs a sweep section (halving prunes a sweep's grid points)")
        if self.select is not None and not self.sweep:
            raise ValueError("select: needs a sweep section (the values to select among)")
        for axis in ("models", "methods", "tasks", "seeds"):
            counts = Counter(axis_name(v) for v in getattr(self, axis))  # linear: 100,000 seeds are a count away
            if not counts:
                raise ValueError(f"{axis}: needs at least one entry")
            duplicates = sorted(str(v) for v, n in counts.items() if n > 1)
            if duplicates:
                raise ValueError(f"{axis}: duplicate entries {clip(', '.join(duplicates))}")
        return self

    def axis(self, axis: str) -> list[AxisEntry]:
        """The entries of one axis (models/methods/tasks), plain names made into entries."""
        plain = MethodEntry if axis == "methods" else AxisEntry
        return [plain(name=v) if isinstance(v, str) else v for v in getattr(self, axis)]

    def matrix_name(self, path: Path | None) -> str:
        return self.name or (path.stem if path else "matrix")


def axis_name(value: str | int | AxisEntry) -> str | int:
    return value.name if isinstance(value, AxisEntry) else value
