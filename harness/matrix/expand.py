"""Load a matrix file, validate it as a whole, and expand it into cells.

Everything is checked before anything is returned: the file's schema, every axis
name, every ``set``/``resources`` fragment (errors name the fragment, not the
first cell that happens to use it), and every expanded cell as a ``CellConfig``.
An invalid file therefore never yields a partial list of cells to submit.

Sizes are bounded before any work: the number of cells and each sweep's grid points are
counted by multiplying list lengths, and refused above :class:`Limits` (``--max-cells``,
``--max-grid-points``) with the count that would have been made.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from harness.cell.resolve import parse_cell_config
from harness.config import CellConfig, format_validation_error, read_yaml_mapping
from harness.dotted import deep_merge, expand_dotted
from harness.errors import ConfigError, clip, shorten
from harness.matrix.cells import Cell, describe_point
from harness.matrix.schema import (
    BUDGET_KEYS,
    RESERVED_KEYS,
    AxisEntry,
    Grid,
    MatrixSpec,
    MethodEntry,
    Resources,
    SelectSpec,
    TaskEntry,
    axis_name,
    grid_values,
)
from harness.matrix.sweep import Selection, grid_axes, grid_of, grid_size
from harness.names import (
    FINAL_STAGE,
    MATRIX_KEY_TAG,
    MATRIX_TAG,
    RETRAIN_TAG,
    REUSE_TAG,
    SELECT_STAGE,
    SELECT_TAG,
    SELECTED_TAG,
    STAGE_TAG,
    SWEEP_TAG,
    VARIANT_TAG,
    default_tracking_uri,
    matrix_key,
)

# The most cells one matrix may make (each sweep's stage-1 grid points and stage-2 seeds included)
# and the most points one sweep grid may have. The thesis matrix makes 198 cells with grids of
# 7 points; a matrix beyond these is a typo (6 keys x 50 values is 15,625,000 points) more often
# than a plan. `harness plan/matrix/status ... --max-cells N --max-grid-points N` raise them.
MAX_CELLS = 10_000
MAX_GRID_POINTS = 1_000


@dataclass(frozen=True)
class Limits:
    """The caps a matrix is expanded under (see :data:`MAX_CELLS`, :data:`MAX_GRID_POINTS`)."""

    cells: int = MAX_CELLS
    grid_points: int = MAX_GRID_POINTS

    def __post_init__(self) -> None:
        if self.cells < 1 or self.grid_points < 1:
            raise ConfigError(f"--max-cells and --max-grid-points must be >= 1, not {self.cells}, {self.grid_points}")

    def flags(self) -> list[str]:
        """The command-line flags that give these limits (none for the defaults): a stage-2
        continuation loads the matrix under the limits it was submitted with."""
        return [
            *(["--max-cells", str(self.cells)] if self.cells != MAX_CELLS else []),
            *(["--max-grid-points", str(self.grid_points)] if self.grid_points != MAX_GRID_POINTS else []),
        ]


@dataclass
class Matrix:
    """A validated, expanded matrix file."""

    spec: MatrixSpec
    path: Path | None
    name: str
    output_dir: Path
    tracking_uri: str
    experiment: str
    cells: list[Cell]
    warnings: list[str] = field(default_factory=list)
    # one per swept (task, model, method): stage 1's grid in ``cells``, stage 2's once selected
    selections: list[Selection] = field(default_factory=list)
    limits: Limits = field(default_factory=Limits)  # the caps it was expanded under

    @property
    def active(self) -> list[Cell]:
        """The cells that run (not excluded)."""
        return [c for c in self.cells if c.excluded is None]

    @property
    def waiting(self) -> list[Selection]:
        """Selections whose grid has not finished: their stage-2 cells are not in ``cells`` yet."""
        return [s for s in self.selections if s.state == "waiting"]

    @property
    def continuing(self) -> list[Cell]:
        """Halving: the paused grid points due to continue to their sweep's next rung."""
        return [c for s in self.waiting for c in s.points if c.continues]

    def resolve_selections(self, final_statuses: dict[str, str] | None = None) -> list[Cell]:
        """Choose where stage 1 has finished and add those stage-2 cells; returns the cells added.
        ``final_statuses``: the scheduler's final state of points that left no result.json."""
        open_ = [s for s in self.selections if s.state == "waiting" or s.reopens]
        added = [cell for selection in open_ for cell in selection.resolve(final_statuses)]
        self.cells.extend(added)
        return added

    @property
    def submitit_folder(self) -> Path:
        folder = self.spec.executor.folder
        return Path(expand_path(folder)).absolute() if folder else self.output_dir / ".submitit"


# --------------------------------------------------------------------------- loading


def load_matrix(path: Path | str, *, output_dir: Path | str | None = None, limits: Limits | None = None) -> Matrix:
    """Read, validate and expand a matrix file. Raises ``ConfigError`` (one line) on any problem."""
    path = Path(path)
    return matrix_from_dict(read_matrix_file(path), path=path, output_dir=output_dir, limits=limits)


EXTENDS_KEY = "extends"
MAX_EXTENDS = 8


def read_matrix_file(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A matrix file's mapping. ``extends: other.yaml`` (relative to this file) starts from that
    file's mapping; every top-level key given here replaces the base's (so ``thesis-tuned.yaml``
    is ``thesis.yaml`` plus its sweep, and the study's settings live in one file)."""
    data = read_yaml_mapping(path, what="matrix file")
    base_name = data.pop(EXTENDS_KEY, None)
    if base_name is None:
        return data
    if not isinstance(base_name, str) or not base_name.strip():
        raise ConfigError(f"{path}: extends: give the path of a matrix file, relative to this one")
    base = (path.parent / expand_path(base_name)).resolve()
    if base in chain or base == path.resolve():
        raise ConfigError(f"{path}: extends: {base_name} extends this file again (a cycle)")
    if len(chain) >= MAX_EXTENDS:
        raise ConfigError(f"{path}: extends: more than {MAX_EXTENDS} files deep")
    return {**read_matrix_file(base, (*chain, path.resolve())), **data}


def matrix_from_dict(
    data: dict[str, Any],
    *,
    path: Path | None = None,
    output_dir: Path | str | None = None,
    limits: Limits | None = None,
) -> Matrix:
    where = str(path) if path else "matrix"
    try:
        spec = MatrixSpec.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_format_spec_error(error, where)) from None
    return expand(spec, path=path, output_dir=output_dir, limits=limits)


def _format_spec_error(error: ValidationError, where: str) -> str:
    return format_validation_error(error, MatrixSpec, where)


# --------------------------------------------------------------------------- names


def _validate_model(name: str) -> None:
    from harness.models.registry import validate_model_name

    validate_model_name(name)


def _check_names(spec: MatrixSpec, where: str) -> None:
    from harness.methods.registry import method_names
    from harness.tasks.registry import TASKS as TASK_TABLE

    # the registries' name lists, and the tasks this matrix defines itself (checked with their cells)
    methods = method_names()
    tasks = (*TASK_TABLE, *(e.name for e in spec.axis("tasks") if isinstance(e, TaskEntry) and e.defined))
    known_methods, known_tasks = set(methods), set(tasks)  # looked up once per name: linear in the file
    for entry in spec.axis("methods"):
        if method_of(entry) not in known_methods:
            raise ConfigError(
                f"{where}: methods: unknown method {shorten(method_of(entry))}; valid: {', '.join(methods)}"
            )
    for entry in spec.axis("tasks"):
        if entry.name not in known_tasks:
            raise ConfigError(f"{where}: tasks: unknown task {shorten(entry.name)}; valid: {', '.join(tasks)}")
    for entry in spec.axis("models"):
        try:
            _validate_model(entry.name)
        except ConfigError as error:
            raise ConfigError(f"{where}: models: {error}") from None
    # Rules that name a method/task/model that does not exist are typos, not no-ops.
    rules = [(f"overrides[{i}]", o.match) for i, o in enumerate(spec.overrides)]
    rules += [(f"exclude[{i}]", e.match) for i, e in enumerate(spec.exclude)]
    rules += [(f"sweep[{i}]", e.match) for i, e in enumerate(spec.sweep)]
    models = {e.name for e in spec.axis("models")}
    labelled = {e.name for e in spec.axis("methods")} - known_methods  # labels of methods' configurations
    for label, match in rules:
        for method in _as_list(match.method):
            if method not in known_methods and method not in labelled:
                raise ConfigError(
                    f"{where}: {label}.match: unknown method {shorten(method)}; valid: {', '.join(methods)}"
                )
        for task in _as_list(match.task):
            if task not in known_tasks:
                raise ConfigError(f"{where}: {label}.match: unknown task {shorten(task)}; valid: {', '.join(tasks)}")
        for model in _as_list(match.model):
            if model not in models:
                raise ConfigError(
                    f"{where}: {label}.match: model {shorten(model)} is not on the models axis; "
                    f"valid: {', '.join(sorted(models))}"
                )


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


# --------------------------------------------------------------------------- merging


# --------------------------------------------------------------------------- expansion


def expand_path(value: str) -> str:
    return os.path.expanduser(os.path.expandvars(value))


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def model_slug(model: str) -> str:
    """A folder name for a model: hub ids keep their org (``org--name``), local dirs their basename."""
    if os.sep in model and Path(model).exists():
        model = Path(model).name
    return _UNSAFE.sub("_", model.replace("/", "--")).strip("._") or "model"


def cell_folder(output_dir: Path, config: CellConfig, cell_id: str) -> Path:
    return output_dir / config.task / model_slug(config.model) / config.method / f"seed{config.seed}-{cell_id[:8]}"


def expand(
    spec: MatrixSpec, *, path: Path | None = None, output_dir: Path | str | None = None, limits: Limits | None = None
) -> Matrix:
    where = str(path) if path else "matrix"
    limits = limits or Limits()
    _check_names(spec, where)
    name = spec.matrix_name(path)
    out = Path(expand_path(str(output_dir if output_dir is not None else spec.output_dir))).absolute()
    uri = spec.tracking.uri or default_tracking_uri(out)
    experiment = spec.tracking.experiment or name
    live = spec.tracking.live == "on" or (spec.tracking.live == "auto" and uri.startswith(("http://", "https://")))

    models, methods, tasks = spec.axis("models"), spec.axis("methods"), spec.axis("tasks")
    # sizes first, by arithmetic: nothing below is built for a matrix beyond its limits
    grids = _grid_sets(spec, where, models, methods, tasks)
    _check_cell_count(spec, where, grids, limits)
    _check_sweep_sizes(spec, where, limits)
    base_resources = spec.resources.model_dump()
    defaults = expand_dotted(spec.defaults)

    # Validate each fragment once, against a probe cell, so that an error names the
    # fragment (``overrides[2].set``) rather than the first cell that uses it.
    probe = {"model": models[0].name, "method": method_of(methods[0]), "task": tasks[0].name}
    if (
        isinstance(tasks[0], TaskEntry) and tasks[0].defined
    ):  # a task the matrix defines: the probe needs its definition and data
        first = expand_dotted(tasks[0].set)
        defined = {"task_definition": first["task_definition"]}
        if first.get("data", {}).get("source") is not None:
            defined["data"] = {"source": first["data"]["source"]}
        probe = deep_merge(defined, probe)
    fragments: list[tuple[str, dict[str, Any], dict[str, Any]]] = [("defaults", spec.defaults, {})]
    for axis, entries in (("models", models), ("methods", methods), ("tasks", tasks)):
        fragments += [(f"{axis}[{entry.name}]", entry.set, entry.resources) for entry in entries]
    fragments += [(f"overrides[{i}]", o.set, o.resources) for i, o in enumerate(spec.overrides)]
    own_method = {f"methods[{e.name}]": method_of(e) for e in methods}  # its settings are checked with its method
    for label, settings, resources in fragments:
        method_probe = {**probe, "method": own_method[label]} if label in own_method else probe
        _check_fragment(f"{where}: {label}", expand_dotted(settings), method_probe)
        _resolve_resources(f"{where}: {label}.resources", base_resources, [resources])
    if spec.select is not None and spec.select.set:
        _check_fragment(f"{where}: select.set", expand_dotted(spec.select.set), probe)
    for i, entry in enumerate(spec.sweep):
        for key, values in entry.values.items():
            for value in grid_values(values):
                _check_fragment(f"{where}: sweep[{i}].values.{key}", expand_dotted({key: value}), probe)

    sets = {
        (axis, e.name): expand_dotted(e.set)
        for axis, entries in (("model", models), ("method", methods), ("task", tasks))
        for e in entries
    }
    override_sets = [expand_dotted(o.set) for o in spec.overrides]
    used_overrides: set[int] = set()
    used_exclusions: set[int] = set()
    builder = _CellBuilder(where, out, base_resources)
    cells: list[Cell] = []
    # (task, model, method) -> its swept seeds' settings, in product order
    swept: dict[tuple[str, str, str], list[_Planned]] = {}
    used_sweeps: set[int] = set()
    not_swept: set[str] = set()

    unswept: list[_Planned] = []
    stage1_points: dict[tuple[str, str, str], int] = {}  # a swept group's grid size on its first seed
    for task, model, method, seed in _products(spec, grids, models, methods, tasks):
        data = deep_merge(defaults, sets["model", model.name])
        data = deep_merge(data, sets["task", task.name])
        data = deep_merge(data, sets["method", method.name])
        patches: list[dict[str, Any]] = [model.resources, task.resources, method.resources]
        for i, override in enumerate(spec.overrides):
            if override.match.matches(model.name, method.name, task.name, seed):
                used_overrides.add(i)
                data = deep_merge(data, override_sets[i])
                patches.append(override.resources)
        data.update(model=model.name, method=method_of(method), task=task.name, seed=seed)
        tracking = dict(data.get("tracking") or {})
        tracking.setdefault("experiment", experiment)
        if live:
            tracking.setdefault("uri", uri)
        else:
            tracking["enabled"] = False  # ``collect`` logs these cells afterwards
        data["tracking"] = tracking
        data["tags"] = {**(data.get("tags") or {}), MATRIX_TAG: name, MATRIX_KEY_TAG: matrix_key(name)}
        if method.name != method_of(method):  # a labelled configuration of a method (MethodEntry)
            data["tags"][VARIANT_TAG] = method.name
        reason = None
        for i, exclusion in enumerate(spec.exclude):
            if exclusion.match.matches(model.name, method.name, task.name, seed):
                used_exclusions.add(i)
                reason = exclusion.reason
                break
        planned = _Planned(data, patches, reason, f"{task.name}/{model.name}/{method.name}/seed{seed}")
        axes, sweeps_matched = grid_axes(spec.sweep, model.name, method.name, task.name, seed)
        if axes and not _trains(method_of(method)):
            not_swept.add(method.name)
            axes = {}
        if axes:
            points = grid_size(axes)
            if points > limits.grid_points:
                raise ConfigError(
                    f"{where}: sweep: the grid of {planned.label} would have {points:,} points "
                    f"({_sizes(axes)}), over the cap of {limits.grid_points:,}; raise it with --max-grid-points N"
                )
            used_sweeps.update(sweeps_matched)
            stage1_points.setdefault((task.name, model.name, method.name), points)
            swept.setdefault((task.name, model.name, method.name), []).append(planned)
            continue
        unswept.append(planned)

    # every cell the matrix makes, stage 2 included, counted before one is validated
    stage1 = sum(stage1_points[group] for group, planned in swept.items() if planned[0].excluded is None)
    total = len(unswept) + stage1 + sum(len(planned) for planned in swept.values())
    if total > limits.cells:
        raise ConfigError(
            f"{where}: the matrix would make {total:,} cells ({len(unswept):,} unswept, {stage1:,} stage-1 grid "
            f"points, {total - len(unswept) - stage1:,} swept seeds), over the cap of {limits.cells:,}; "
            "raise it with --max-cells N"
        )
    cells.extend(builder.cell(planned) for planned in unswept)

    selections = []
    for group, seeds_planned in swept.items():
        if seeds_planned[0].excluded is not None:  # an excluded first seed: nothing to select on, cells as written
            cells.extend(builder.cell(p) for p in seeds_planned)
        else:
            selections.append(_selection(spec, builder, group, seeds_planned, cells))

    warnings = [
        f"sweep[{i}] ({e.match.describe()}) matches no cell" for i, e in enumerate(spec.sweep) if i not in used_sweeps
    ]
    warnings += [f"sweep: {m} does not train, so its cells are not swept" for m in sorted(not_swept)]
    warnings += [
        f"overrides[{i}] ({o.match.describe()}) matches no cell"
        for i, o in enumerate(spec.overrides)
        if i not in used_overrides
    ]
    warnings += [
        f"exclude[{i}] ({e.match.describe()}) matches no cell"
        for i, e in enumerate(spec.exclude)
        if i not in used_exclusions
    ]
    matrix = Matrix(
        spec=spec,
        path=path,
        name=name,
        output_dir=out,
        tracking_uri=uri,
        experiment=experiment,
        cells=cells,
        warnings=warnings,
        selections=selections,
        limits=limits,
    )
    matrix.resolve_selections()
    return matrix


@dataclass
class _Planned:
    """One (task, model, method, seed) of the product, merged but not yet validated."""

    data: dict[str, Any]
    patches: list[dict[str, Any]]
    excluded: str | None
    label: str


class _CellBuilder:
    """Validates merged settings into cells; remembers ids (two cells with one config are an
    error) and resolved resources (500 cells share a handful of resource sets)."""

    def __init__(self, where: str, out: Path, base_resources: dict[str, Any]) -> None:
        self.where, self.out, self.base_resources = where, out, base_resources
        self.seen: dict[str, str] = {}
        self.resources: dict[str, Resources] = {}

    def cell(self, planned: _Planned, extra: dict[str, Any] | None = None, label: str | None = None) -> Cell:
        label = label or planned.label
        data = deep_merge(planned.data, extra) if extra else planned.data
        key = repr(planned.patches)
        if key not in self.resources:
            self.resources[key] = _resolve_resources(
                f"{self.where}: cell {label}.resources", self.base_resources, planned.patches
            )
        resources = self.resources[key]
        if resources.world_size > 1 and (data.get("train") or {}).get("distributed", "none") == "none":
            data = deep_merge(data, {"train": {"distributed": "ddp"}})  # more than one process: DDP unless told
        config = parse_cell_config(data, where=f"{self.where}: cell {label}")
        reason = distributed_refusal(config, resources) if planned.excluded is None else None
        if reason:
            raise ConfigError(f"{self.where}: cell {label}: {reason}")
        cell_id = config.cell_id
        if cell_id in self.seen:
            raise ConfigError(
                f"{self.where}: cells {self.seen[cell_id]} and {label} resolve to the same config (cell {cell_id})"
            )
        self.seen[cell_id] = label
        config.output_dir = cell_folder(self.out, config, cell_id)
        return Cell(config=config, resources=resources, excluded=planned.excluded)


def distributed_refusal(config: CellConfig, resources: Resources) -> str | None:
    """Why a cell cannot run as its resources' processes, or None (checks of the config alone;
    the executor's are in harness.dispatch.executors.executor_refusal)."""
    from harness.methods.build import is_prompt_learning
    from harness.methods.registry import resolve_method

    world, mode = resources.world_size, config.train.distributed
    if config.train.fsdp_cpu_offload and mode != "fsdp":
        return f"train.fsdp_cpu_offload offloads FSDP's shards: it needs train.distributed fsdp, not {mode}"
    if world == 1:
        if mode != "none":
            return (
                f"train.distributed {mode} needs more than one process: set resources.gpus > 1, nodes > 1 or "
                "(on CPU) tasks_per_node > 1"
            )
        return None
    method = resolve_method(config.method)
    where = f"{resources.nodes} node(s) x {resources.tasks} process(es)"
    if mode == "none":
        return f"train.distributed none with {where}: every process would train its own copy; use ddp or fsdp"
    if not method.trains:
        return f"{config.method} does not train: it runs in one process, not {where}"
    if config.train.batch_size % world:
        return (
            f"train.batch_size {config.train.batch_size} is the global batch, which {world} processes cannot share "
            f"evenly; use a multiple of {world}"
        )
    if mode == "fsdp" and method.peft_type is not None and is_prompt_learning(method):
        return (
            f"train.distributed fsdp cannot shard {config.method}: its virtual tokens live outside the wrapped "
            "layers; use ddp"
        )
    if mode == "fsdp" and (method.hooks.after_step is not None or method.hooks.optimizer is not None):
        return (
            f"train.distributed fsdp cannot shard {config.method}: its per-step hook or optimizer reads whole "
            "weights and gradients, which FSDP holds in shards; use ddp"
        )
    return None


def method_of(entry: AxisEntry) -> str:
    """The registry method of a methods-axis entry: its ``method`` when it is a labelled configuration."""
    return entry.registry_name if isinstance(entry, MethodEntry) else entry.name


def _trains(method: str) -> bool:
    from harness.methods.registry import resolve_method

    return resolve_method(method).trains


def _check_selection_split(where: str, task: str, split: str, data: dict[str, Any]) -> None:
    """A defined task on local files selects on a file of that split or on the held-out slice of
    train it declares; with neither, the sweep is refused here, naming the fix (Hub datasets
    are not read at plan time: their splits are checked when the cell runs)."""
    definition = data.get("task_definition")
    source = (data.get("data") or {}).get("source") or {}
    if definition is None or source.get("hub_id") or split in (source.get("files") or {}):
        return
    if definition.get("validation") is not None and split == "validation":
        return
    raise ConfigError(
        f"{where}: select.split {split!r}: task {task} has no {split} file to select on; declare a held-out "
        f"slice of train in its definition (validation: {{from: train, fraction: 0.1}}) or give "
        f"source.files.{split}"
    )


def _selection(
    spec: MatrixSpec, builder: _CellBuilder, key: tuple[str, str, str], planned: list[_Planned], cells: list[Cell]
) -> Selection:
    """Stage 1 of one swept (task, model, method): its grid on the first seed, scored on the
    selection split; stage 2 is built by the Selection once the grid has finished."""
    task, model, method = key
    select = spec.select or SelectSpec()
    first = planned[0]
    headline, produced = _task_metrics(first.data)
    metric = select.metric_for(task, headline)
    where = builder.where
    if metric not in produced:
        raise ConfigError(
            f"{where}: select.metric {metric!r}: task {task} does not produce it; its metrics: "
            f"{', '.join(produced)} (one per task: metric: {{{task}: {headline}, ...}})"
        )
    eval_split = first.data.get("data", {}).get("eval_split", "test")
    if select.split == eval_split:
        raise ConfigError(
            f"{where}: select.split {select.split!r} is the split {task}/{model}/{method} is scored on; "
            "selection needs another one (validation)"
        )
    _check_selection_split(where, task, select.split, first.data)
    seed = first.data["seed"]
    points, _ = grid_of(spec.sweep, model, method, task, seed)
    tags = {SELECT_TAG: select.describe(metric)}
    stage1 = []
    for point in points:
        extra = deep_merge(expand_dotted(select.set), expand_dotted(point))
        extra = deep_merge(
            extra,
            {"data": {"eval_split": select.split}, "tags": {**tags, STAGE_TAG: SELECT_STAGE, SWEEP_TAG: _json(point)}},
        )
        stage1.append(builder.cell(first, extra, label=f"{first.label} [{describe_point(point)}]"))
    cells.extend(stage1)
    rungs = _halving_rungs(where, select, f"{task}/{model}/{method}", points, stage1)

    def build(point: dict[str, Any]) -> list[Cell]:
        extra = deep_merge(expand_dotted(point), {"tags": {**tags, STAGE_TAG: FINAL_STAGE, SELECTED_TAG: _json(point)}})
        finals = [builder.cell(p, extra) for p in planned]
        winner = next(cell for cell in stage1 if cell.point == point)
        finals[0] = reuse_winner(winner, finals[0])  # the first seed's run is the winner's (tags: same id)
        return finals

    return Selection(
        task=task,
        model=model,
        method=method,
        metric=metric,
        split=select.split,
        mode=select.mode,
        points=stage1,
        seeds=[p.data["seed"] for p in planned],
        build=build,
        retrains=_retrains(first, points, stage1),
        rungs=rungs,
        eta=select.halving.eta if select.halving is not None else 0,
    )


def _halving_rungs(
    where: str, select: SelectSpec, label: str, points: list[dict[str, Any]], stage1: list[Cell]
) -> list[int]:
    """The rungs (step counts, the full budget last) of a sweep with ``select.halving``; [] without.
    Every rung is planned on the full budget, train.max_steps, which the plan must know (epochs
    would need the training set's size)."""
    halving = select.halving
    if halving is None or not stage1:
        return []
    from harness.methods.registry import resolve_method

    budget = sorted({k for point in points for k in point} & set(BUDGET_KEYS))
    if budget:
        raise ConfigError(
            f"{where}: select.halving over {', '.join(budget)} in {label}: a key that sets the budget gives each grid "
            "point another step count, so its rungs would not compare; sweep it without halving"
        )
    reason = resolve_method(stage1[0].config.method).resume_refusal
    if reason:
        raise ConfigError(
            f"{where}: select.halving with method {stage1[0].config.method} ({label}): its training cannot stop "
            f"at a rung and continue exactly: {reason}"
        )
    max_steps = stage1[0].config.train.max_steps
    if max_steps is None:
        raise ConfigError(
            f"{where}: select.halving in {label}: needs train.max_steps (the full budget the rungs divide; "
            "with epochs it depends on the training set's size)"
        )
    try:
        return halving.steps(max_steps, len(points))
    except ValueError as error:
        raise ConfigError(f"{where}: select.halving in {label}: {error}") from None


def _retrains(first: _Planned, points: list[dict[str, Any]], stage1: list[Cell]) -> str:
    """Why stage 2's first seed will train again rather than reuse the winner's run ("": it will
    reuse it), from the first grid point: the differences that decide it (select.set, the method)
    are the same at every point. The stage-2 config is parsed here, not built: its id is not taken."""
    from harness.cell.reuse import reuse_refusal

    if not points:
        return ""
    distributed = {"train": {"distributed": stage1[0].config.train.distributed}}
    data = deep_merge(deep_merge(first.data, expand_dotted(points[0])), distributed)
    return reuse_refusal(stage1[0].config, parse_cell_config(data, where=first.label)) or ""


def reuse_winner(winner: Cell, final: Cell) -> Cell:
    """Stage 2's first seed: tagged to evaluate the stage-1 winner's weights (REUSE_TAG, its
    folder) when nothing its training reads differs, else tagged with why it trains again."""
    from harness.cell.reuse import reuse_refusal

    reason = reuse_refusal(winner.config, final.config)
    tag = {RETRAIN_TAG: reason} if reason else {REUSE_TAG: str(Path(winner.folder).absolute())}
    final.config = final.config.model_copy(update={"tags": {**final.config.tags, **tag}})
    return final


def _json(point: dict[str, Any]) -> str:
    return json.dumps(point, sort_keys=False, default=str)


def _task_metrics(data: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    """(headline metric, every quality metric) of a cell's task, bundled or defined."""
    from harness.tasks.kinds import SCORINGS
    from harness.tasks.registry import task_of

    scoring = SCORINGS[task_of(data).scoring]
    return scoring.headline, scoring.columns


AXES = ("tasks", "models", "methods", "seeds")  # the product's order: task, model, method, seed


def _grid_sets(
    spec: MatrixSpec, where: str, models: list[AxisEntry], methods: list[AxisEntry], tasks: list[AxisEntry]
) -> list[dict[str, set[Any]]]:
    """Each grid as the set of names per axis (the full product is one grid of every name), its
    names checked against the axes; a grid with an empty axis makes nothing and is left out."""
    grids = spec.grids if spec.grids is not None else [Grid()]
    if not grids:
        raise ConfigError(f"{where}: grids: needs at least one entry (or leave it out for the full product)")
    axes: dict[str, list[Any]] = {
        "models": [e.name for e in models],
        "methods": [e.name for e in methods],
        "tasks": [e.name for e in tasks],
        "seeds": list(spec.seeds),
    }
    valid = {axis: set(names) for axis, names in axes.items()}
    chosen: list[dict[str, set[Any]]] = []
    for i, grid in enumerate(grids):
        picked: dict[str, set[Any]] = {}
        for axis, names in axes.items():
            given = getattr(grid, axis)
            for name in given or []:
                if name not in valid[axis]:
                    raise ConfigError(
                        f"{where}: grids[{i}].{axis}: {shorten(name)} is not on the {axis} axis; "
                        f"valid: {', '.join(map(str, names))}"
                    )
            picked[axis] = set(given) if given is not None else valid[axis]
        if all(picked.values()):
            chosen.append(picked)
    return chosen


def _check_cell_count(spec: MatrixSpec, where: str, grids: list[dict[str, set[Any]]], limits: Limits) -> None:
    """Refuse a product or union of grids above ``limits.cells``, counted by multiplying the axes'
    lengths (the union of grids: at most the sum of their products; counted exactly, up to the cap,
    only when that sum is over it). Sweeps add their grid points later (see :func:`expand`)."""
    sizes = [len(spec.tasks), len(spec.models), len(spec.methods), len(spec.seeds)]
    full = math.prod(sizes)
    if spec.grids is None:
        if full > limits.cells:
            raise ConfigError(
                f"{where}: the matrix would make {full:,} cells ({sizes[0]:,} tasks x {sizes[1]:,} models x "
                f"{sizes[2]:,} methods x {sizes[3]:,} seeds), over the cap of {limits.cells:,}; "
                "raise it with --max-cells N"
            )
        return
    bound = min(full, sum(math.prod(len(grid[axis]) for axis in AXES) for grid in grids))
    if bound <= limits.cells:
        return
    # overlapping grids: their union is smaller than the sum; count its names, never more than the cap
    count = 0
    for _ in _names_in_grids(grids, {axis: _positions(spec, axis) for axis in AXES}):
        count += 1
        if count > limits.cells:
            raise ConfigError(
                f"{where}: the matrix's grids would make more than {limits.cells:,} cells (up to {bound:,}), "
                f"over the cap of {limits.cells:,}; raise it with --max-cells N"
            )


def _check_sweep_sizes(spec: MatrixSpec, where: str, limits: Limits) -> None:
    """Refuse a sweep entry whose own grid is over ``limits.grid_points`` (a cell's grid, which
    may combine entries, is counted when the cell is planned), before a value is checked."""
    for i, entry in enumerate(spec.sweep):
        axes = {key: grid_values(values) for key, values in entry.values.items()}
        points = grid_size(axes)
        if points > limits.grid_points:
            raise ConfigError(
                f"{where}: sweep[{i}] would make {points:,} grid points ({_sizes(axes)}), over the cap of "
                f"{limits.grid_points:,}; raise it with --max-grid-points N"
            )


def _sizes(axes: dict[str, list[Any]]) -> str:
    """``7 train.learning_rate x 3 method_args.r``: how a grid's size comes about."""
    return " x ".join(f"{len(values):,} {clip(key)}" for key, values in axes.items())


def _positions(spec: MatrixSpec, axis: str) -> dict[Any, int]:
    return {axis_name(entry): index for index, entry in enumerate(getattr(spec, axis))}


def _names_in_grids(
    grids: list[dict[str, set[Any]]], positions: dict[str, dict[Any, int]]
) -> Iterator[tuple[Any, ...]]:
    """(task, model, method, seed) names in the union of the grids, in axis order. Each level
    keeps only the grids still matching, so the work follows the cells made, not the full product."""

    def walk(level: int, alive: list[dict[str, set[Any]]], prefix: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
        axis = AXES[level]
        names = set().union(*(grid[axis] for grid in alive)) if len(alive) > 1 else alive[0][axis]
        for name in sorted(names, key=positions[axis].__getitem__):
            if level == len(AXES) - 1:
                yield (*prefix, name)
            else:
                yield from walk(level + 1, [grid for grid in alive if name in grid[axis]], (*prefix, name))

    if grids:
        yield from walk(0, grids, ())


def _products(
    spec: MatrixSpec,
    grids: list[dict[str, set[Any]]],
    models: list[AxisEntry],
    methods: list[AxisEntry],
    tasks: list[AxisEntry],
) -> Iterator[tuple[AxisEntry, AxisEntry, AxisEntry, int]]:
    """(task, model, method, seed) in a stable order: the full product, or the union of the grids."""
    entries = {
        "tasks": {e.name: e for e in tasks},
        "models": {e.name: e for e in models},
        "methods": {e.name: e for e in methods},
    }
    for task, model, method, seed in _names_in_grids(grids, {axis: _positions(spec, axis) for axis in AXES}):
        yield entries["tasks"][task], entries["models"][model], entries["methods"][method], seed


def _check_fragment(where: str, settings: dict[str, Any], probe: dict[str, Any]) -> None:
    reserved = [k for k in settings if k in RESERVED_KEYS]
    if reserved:
        raise ConfigError(
            f"{where}: {reserved[0]!r} cannot be set here (it is an axis or derived); reserved: {', '.join(RESERVED_KEYS)}"
        )
    parse_cell_config(deep_merge(settings, probe), where=where)


def _resolve_resources(where: str, base: dict[str, Any], patches: Iterable[dict[str, Any]]) -> Resources:
    data = base
    for patch in patches:
        if patch:
            data = deep_merge(data, expand_dotted(patch))
    try:
        return Resources.model_validate(data)
    except ValidationError as error:
        raise ConfigError(format_validation_error(error, Resources, where)) from None
