"""The two sides of a comparison and the cells they hold (read by :mod:`harness.compare.sources`).

Each cell becomes a :class:`Sample`: the report's row of it (quality and efficiency figures,
read by :func:`harness.report.load.row_from_result`), the facts of its environment (result.json's
``environment``, flattened: ``packages.torch``, ``accelerator.name``, ...) and its settings (the
config that decides results, flattened, without the seed). A reference file stores the same, so
every side reads alike.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.report.load import MISSING, UNREADABLE, CellRow, row_from_result
from harness.result import Result

if TYPE_CHECKING:
    from harness.compare.gate import Gate
    from harness.compare.measures import Measure

# config sections that say where a cell's files and logs go, not what it computes (as in
# CellConfig.identity, used for a config that no longer validates)
NOT_SETTINGS = ("seed", "output_dir", "tracking", "telemetry", "tags")

# (task, model, method, sweep stage, swept values as JSON): what a row of either side is paired
# on. Not the cell id: a changed default or harness version changes the id, not the row
RowKey = tuple[str, str, str, str, str]


def row_key(row: CellRow) -> RowKey:
    point = json.dumps(row.point, sort_keys=True, default=str) if row.point else ""
    return (row.task, row.model, row.method, row.stage or "", point)


def key_label(key: RowKey) -> str:
    task, model, method, stage, point = key
    label = f"{task} / {model} / {method}"
    if stage or point:
        values = ", ".join(f"{k}={v}" for k, v in json.loads(point).items()) if point else ""
        label += f" [{' '.join(p for p in (stage, values) if p)}]"
    return label


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": "1"}``; lists and scalars as JSON (strings as they are)."""
    flat: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return flat


def settings_of(config: Mapping[str, Any]) -> dict[str, str]:
    """The settings that decide a cell's results, flattened, without the seed: the cell id's
    input (``CellConfig.identity``), or the config less its output sections when it no longer
    validates (a result of another harness version)."""
    from harness.config import CellConfig, without_training
    from harness.methods.registry import known_method

    try:
        identity = CellConfig.model_validate(dict(config)).identity()
    except (ValueError, TypeError):
        identity = {k: v for k, v in config.items() if k not in NOT_SETTINGS}
    identity.pop("seed", None)
    method = known_method(str(config.get("method")))
    if method is not None and not method.trains:
        # recorded without its training settings (CellConfig.public_dump): none are compared, so
        # a result recorded with them (an older harness) and one without are alike
        identity = without_training(identity)
    return flatten(identity)


@dataclass
class Sample:
    """One cell of a side: its figures, the facts of its environment, its settings."""

    row: CellRow
    facts: dict[str, str] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)
    # figures a run attaches itself (a measure with read_from_row False), e.g. the bare-loop ratio
    figures: dict[str, float] = field(default_factory=dict)
    started_at: str = ""  # when its result began (ISO time): the latest of a cell run twice wins

    @property
    def key(self) -> RowKey:
        return row_key(self.row)

    @property
    def finished(self) -> bool:
        return self.row.finished

    def value(self, measure: Measure) -> float | None:
        value = getattr(self.row, measure.name, None) if measure.read_from_row else self.figures.get(measure.name)
        return None if value is None else float(value)

    def measured_by(self, measure: Measure) -> str | None:
        return getattr(self.row, measure.measured_by) if measure.measured_by else None


@dataclass
class Side:
    name: str  # NEW | REFERENCE: how tables and messages call it
    source: str  # where its results came from, in words
    samples: list[Sample]
    gate: Gate | None = None  # a reference file's own tolerances and bounds
    notes: list[str] = field(default_factory=list)
    # where a comparison's files go by default (a matrix's or a folder's output); None: ./compare
    output_dir: Path | None = None

    @property
    def has_results(self) -> bool:
        """Whether any cell of it left a result (finished or not): a side without is bad input."""
        return any(s.row.status not in (MISSING, UNREADABLE) for s in self.samples)


def sample_from_result(result: Result, folder: Path | None = None, source: str = "file") -> Sample:
    return Sample(
        row=row_from_result(result, folder, source),
        facts=flatten(result.environment),
        settings=settings_of(result.config),
        started_at=result.started_at,
    )
