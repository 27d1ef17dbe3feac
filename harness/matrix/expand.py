"""Load a matrix file, validate it as a whole, and expand it into cells.

Everything is checked before anything is returned: the file's schema, every axis
name, every ``set``/``resources`` fragment (errors name the fragment, not the
first cell that happens to use it), and every expanded cell as a ``CellConfig``.
An invalid file therefore never yields a partial list of cells to submit.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from pydantic import ValidationError

from harness.config import (
    CellConfig,
    ConfigError,
    format_validation_error,
    parse_cell_config,
    read_yaml_mapping,
)
from harness.dotted import deep_merge, expand_dotted
from harness.names import MATRIX_KEY_TAG, MATRIX_TAG, default_tracking_uri, matrix_key
from harness.matrix.schema import RESERVED_KEYS, AxisEntry, Grid, MatrixSpec, Resources



@dataclass
class Cell:
    """One expanded cell: its resolved config, what its job asks for, and whether it is excluded."""

    config: CellConfig
    resources: Resources
    excluded: str | None = None  # the stated reason

    @property
    def cell_id(self) -> str:
        return self._id

    def __post_init__(self) -> None:
        self._id = self.config.cell_id  # hashing is cheap but not free; 500 cells ask often

    @property
    def folder(self) -> Path:
        return self.config.output_dir

    @property
    def model(self) -> str:
        return self.config.model

    @property
    def method(self) -> str:
        return self.config.method

    @property
    def task(self) -> str:
        return self.config.task

    @property
    def seed(self) -> int:
        return self.config.seed

    def label(self) -> str:
        return f"{self.task}/{self.model}/{self.method}/seed{self.seed}"


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

    @property
    def active(self) -> list[Cell]:
        """The cells that run (not excluded)."""
        return [c for c in self.cells if c.excluded is None]

    @property
    def submitit_folder(self) -> Path:
        folder = self.spec.executor.folder
        return Path(expand_path(folder)).absolute() if folder else self.output_dir / ".submitit"


# --------------------------------------------------------------------------- loading


def load_matrix(path: Path | str, *, output_dir: Path | str | None = None) -> Matrix:
    """Read, validate and expand a matrix file. Raises ``ConfigError`` (one line) on any problem."""
    path = Path(path)
    data = read_yaml_mapping(path, kind="matrix file")
    return matrix_from_dict(data, path=path, output_dir=output_dir)


def matrix_from_dict(data: dict[str, Any], *, path: Path | None = None, output_dir: Path | str | None = None) -> Matrix:
    where = str(path) if path else "matrix"
    try:
        spec = MatrixSpec.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_format_spec_error(error, where)) from None
    return expand(spec, path=path, output_dir=output_dir)


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
    tasks = (*TASK_TABLE, *(e.name for e in spec.axis("tasks") if getattr(e, "kind", None)))
    for entry in spec.axis("methods"):
        if entry.name not in methods:
            raise ConfigError(f"{where}: methods: unknown method {entry.name!r}; valid: {', '.join(methods)}")
    for entry in spec.axis("tasks"):
        if entry.name not in tasks:
            raise ConfigError(f"{where}: tasks: unknown task {entry.name!r}; valid: {', '.join(tasks)}")
    for entry in spec.axis("models"):
        try:
            _validate_model(entry.name)
        except ConfigError as error:
            raise ConfigError(f"{where}: models: {error}") from None
    # Rules that name a method/task/model that does not exist are typos, not no-ops.
    rules = [(f"overrides[{i}]", o.match) for i, o in enumerate(spec.overrides)]
    rules += [(f"exclude[{i}]", e.match) for i, e in enumerate(spec.exclude)]
    models = {e.name for e in spec.axis("models")}
    for label, match in rules:
        for method in _as_list(match.method):
            if method not in methods:
                raise ConfigError(f"{where}: {label}.match: unknown method {method!r}; valid: {', '.join(methods)}")
        for task in _as_list(match.task):
            if task not in tasks:
                raise ConfigError(f"{where}: {label}.match: unknown task {task!r}; valid: {', '.join(tasks)}")
        for model in _as_list(match.model):
            if model not in models:
                raise ConfigError(f"{where}: {label}.match: model {model!r} is not on the models axis; valid: {', '.join(sorted(models))}")


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


def expand(spec: MatrixSpec, *, path: Path | None = None, output_dir: Path | str | None = None) -> Matrix:
    where = str(path) if path else "matrix"
    _check_names(spec, where)
    name = spec.matrix_name(path)
    out = Path(expand_path(str(output_dir if output_dir is not None else spec.output_dir))).absolute()
    uri = spec.tracking.uri or default_tracking_uri(out)
    experiment = spec.tracking.experiment or name
    live = spec.tracking.live == "on" or (spec.tracking.live == "auto" and uri.startswith(("http://", "https://")))

    models, methods, tasks = spec.axis("models"), spec.axis("methods"), spec.axis("tasks")
    base_resources = spec.resources.model_dump()
    defaults = expand_dotted(spec.defaults)

    # Validate each fragment once, against a probe cell, so that an error names the
    # fragment (``overrides[2].set``) rather than the first cell that uses it.
    probe = {"model": models[0].name, "method": methods[0].name, "task": tasks[0].name}
    if getattr(tasks[0], "kind", None):  # a task the matrix defines: the probe needs its definition and data
        first = expand_dotted(tasks[0].set)
        defined = {"task_definition": first["task_definition"]}
        if first.get("data", {}).get("source") is not None:
            defined["data"] = {"source": first["data"]["source"]}
        probe = deep_merge(defined, probe)
    fragments: list[tuple[str, dict[str, Any], dict[str, Any]]] = [("defaults", spec.defaults, {})]
    for axis, entries in (("models", models), ("methods", methods), ("tasks", tasks)):
        fragments += [(f"{axis}[{entry.name}]", entry.set, entry.resources) for entry in entries]
    fragments += [(f"overrides[{i}]", o.set, o.resources) for i, o in enumerate(spec.overrides)]
    for label, settings, resources in fragments:
        _check_fragment(f"{where}: {label}", expand_dotted(settings), probe)
        _resolve_resources(f"{where}: {label}.resources", base_resources, [resources])

    sets = {(axis, e.name): expand_dotted(e.set) for axis, entries in (("model", models), ("method", methods), ("task", tasks)) for e in entries}
    override_sets = [expand_dotted(o.set) for o in spec.overrides]
    used_overrides: set[int] = set()
    used_exclusions: set[int] = set()
    cells: list[Cell] = []
    seen: dict[str, str] = {}
    resource_cache: dict[str, Resources] = {}

    for task, model, method, seed in _products(spec, where, models, methods, tasks):
        data = deep_merge(defaults, sets["model", model.name])
        data = deep_merge(data, sets["task", task.name])
        data = deep_merge(data, sets["method", method.name])
        patches: list[dict[str, Any]] = [model.resources, task.resources, method.resources]
        for i, override in enumerate(spec.overrides):
            if override.match.matches(model.name, method.name, task.name, seed):
                used_overrides.add(i)
                data = deep_merge(data, override_sets[i])
                patches.append(override.resources)
        data.update(model=model.name, method=method.name, task=task.name, seed=seed)
        tracking = dict(data.get("tracking") or {})
        tracking.setdefault("experiment", experiment)
        if live:
            tracking.setdefault("uri", uri)
        else:
            tracking["enabled"] = False  # ``collect`` logs these cells afterwards
        data["tracking"] = tracking
        data["tags"] = {**(data.get("tags") or {}), MATRIX_TAG: name, MATRIX_KEY_TAG: matrix_key(name)}
        label = f"{task.name}/{model.name}/{method.name}/seed{seed}"
        config = parse_cell_config(data, where=f"{where}: cell {label}")
        cell_id = config.cell_id
        if cell_id in seen:
            raise ConfigError(f"{where}: cells {seen[cell_id]} and {label} resolve to the same config (cell {cell_id})")
        seen[cell_id] = label
        config.output_dir = cell_folder(out, config, cell_id)

        key = repr(patches)
        if key not in resource_cache:
            resource_cache[key] = _resolve_resources(f"{where}: cell {label}.resources", base_resources, patches)
        reason = None
        for i, exclusion in enumerate(spec.exclude):
            if exclusion.match.matches(model.name, method.name, task.name, seed):
                used_exclusions.add(i)
                reason = exclusion.reason
                break
        cells.append(Cell(config=config, resources=resource_cache[key], excluded=reason))

    warnings = [f"overrides[{i}] ({o.match.describe()}) matches no cell" for i, o in enumerate(spec.overrides) if i not in used_overrides]
    warnings += [f"exclude[{i}] ({e.match.describe()}) matches no cell" for i, e in enumerate(spec.exclude) if i not in used_exclusions]
    return Matrix(spec=spec, path=path, name=name, output_dir=out, tracking_uri=uri, experiment=experiment, cells=cells, warnings=warnings)


def _products(
    spec: MatrixSpec, where: str, models: list[AxisEntry], methods: list[AxisEntry], tasks: list[AxisEntry]
) -> Iterator[tuple[AxisEntry, AxisEntry, AxisEntry, int]]:
    """(task, model, method, seed) in a stable order: the full product, or the union of the grids."""
    grids = spec.grids if spec.grids is not None else [Grid()]
    if not grids:
        raise ConfigError(f"{where}: grids: needs at least one entry (or leave it out for the full product)")
    axes = {"models": models, "methods": methods, "tasks": tasks}
    chosen: list[dict[str, set[Any]]] = []
    for i, grid in enumerate(grids):
        picked: dict[str, set[Any]] = {}
        for axis, entries in axes.items():
            names = getattr(grid, axis)
            valid = [e.name for e in entries]
            for name in names or []:
                if name not in valid:
                    raise ConfigError(f"{where}: grids[{i}].{axis}: {name!r} is not on the {axis} axis; valid: {', '.join(valid)}")
            picked[axis] = set(names) if names is not None else set(valid)
        for seed in grid.seeds or []:
            if seed not in spec.seeds:
                raise ConfigError(f"{where}: grids[{i}].seeds: {seed} is not on the seeds axis; valid: {', '.join(map(str, spec.seeds))}")
        picked["seeds"] = set(grid.seeds) if grid.seeds is not None else set(spec.seeds)
        chosen.append(picked)
    for task in tasks:
        for model in models:
            for method in methods:
                for seed in spec.seeds:
                    if any(model.name in g["models"] and method.name in g["methods"] and task.name in g["tasks"]
                           and seed in g["seeds"] for g in chosen):
                        yield task, model, method, seed


def _check_fragment(where: str, settings: dict[str, Any], probe: dict[str, Any]) -> None:
    reserved = [k for k in settings if k in RESERVED_KEYS]
    if reserved:
        raise ConfigError(f"{where}: {reserved[0]!r} cannot be set here (it is an axis or derived); reserved: {', '.join(RESERVED_KEYS)}")
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
