"""Reference files: a run's figures frozen into a small JSON file to commit (``harness compare
--save REF.json``), read back as a side like any other.

The file keeps every seed's figures (a paired test needs them), each row's mean and 95 %
interval for a person reading it, the environment (the facts every cell shares once, a cell's
own where it differs), the settings that decide results, and optionally the gate it is meant to
be checked with (tolerances and bounds, ReFrame-style: the reference carries its bounds). It is
versioned: a file of a version this harness does not know is refused, not guessed at.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.compare.gate import Gate
from harness.compare.measures import MEASURES, quality_metrics
from harness.compare.sides import Sample, Side, key_label
from harness.errors import ConfigError, error_line, shorten
from harness.jsonfile import write_json_atomic
from harness.report.load import CellRow
from harness.report.stats import summarize
from harness.result import now_iso

SCHEMA = "harness-compare-reference"
REFERENCE_VERSION = 1


def _common(dicts: list[dict[str, str]]) -> dict[str, str]:
    """The items every one of the dicts has, with the same value."""
    if not dicts:
        return {}
    first, rest = dicts[0], dicts[1:]
    return {k: v for k, v in first.items() if all(d.get(k, None) == v for d in rest)}


def _cell(sample: Sample, environment: dict[str, str], settings: dict[str, str]) -> dict[str, Any]:
    row = sample.row
    efficiency = {m.name: sample.value(m) for m in MEASURES.values() if sample.value(m) is not None}
    cell: dict[str, Any] = {
        "seed": row.seed,
        "status": row.status,
        "cell_id": row.cell_id,
        "metrics": dict(row.metrics),
        "efficiency": efficiency,
        "measured_by": {m.name: sample.measured_by(m) for m in MEASURES.values() if sample.measured_by(m)},
    }
    if row.error:
        cell["error"] = row.error
    own_env = {k: v for k, v in sample.facts.items() if environment.get(k) != v}
    own_settings = {k: v for k, v in sample.settings.items() if settings.get(k) != v}
    cell |= {"environment": own_env} if own_env else {}
    cell |= {"settings": own_settings} if own_settings else {}
    return cell


def _summary(samples: list[Sample]) -> dict[str, dict[str, float | int | None]]:
    """Mean and 95 % half-width of every figure over the finished seeds (for people reading the file)."""
    finished = [s for s in samples if s.finished]
    out: dict[str, dict[str, float | int | None]] = {}
    names = [*quality_metrics(samples[0].row.scoring), *MEASURES]
    for name in names:
        measure = MEASURES.get(name)
        values = [s.value(measure) if measure else s.row.metrics.get(name) for s in finished]
        summary = summarize(values)
        if summary.n:
            out[name] = {"n": summary.n, "mean": summary.mean, "half_width": summary.half_width}
    return out


def reference_json(side: Side, gate: Gate | None = None) -> dict[str, Any]:
    environment = _common([s.facts for s in side.samples if s.facts])
    rows: dict[Any, list[Sample]] = {}
    for sample in side.samples:
        rows.setdefault(sample.key, []).append(sample)
    out_rows = []
    for key, samples in rows.items():
        samples.sort(key=lambda s: s.row.seed)
        settings = _common([s.settings for s in samples if s.settings])
        first = samples[0].row
        out_rows.append(
            {
                "row": key_label(key),
                "task": first.task,
                "model": first.model,
                "method": first.method,
                "stage": first.stage,
                "point": first.point,
                "select": first.select,
                "scoring": first.scoring,
                "classes": first.classes,
                "summary": _summary(samples),
                "settings": settings,
                "cells": [_cell(s, environment, settings) for s in samples],
            }
        )
    data: dict[str, Any] = {
        "schema": SCHEMA,
        "schema_version": REFERENCE_VERSION,
        "created_at": now_iso(),
        "source": side.source,
    }
    if gate is not None:
        data["gate"] = gate.as_json()
    return data | {"environment": environment, "rows": out_rows}


def save_reference(side: Side, path: Path, gate: Gate | None = None) -> Path:
    """Freeze a side into ``path`` (written atomically); ``gate``: the settings it is to be checked with."""
    if not side.has_results:
        raise ConfigError(f"{side.name}: no results to save ({side.source})")
    write_json_atomic(Path(path), reference_json(side, gate), indent=1)
    return Path(path)


def load_reference(path: Path, name: str) -> Side:
    where = f"{name}: {path}"
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise ConfigError(f"{where}: not a readable JSON file ({error_line(error)})") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ConfigError(f"{where}: not a reference file (written by `harness compare --save`: schema {SCHEMA!r})")
    version = data.get("schema_version")
    if version != REFERENCE_VERSION:
        raise ConfigError(
            f"{where}: reference schema version {shorten(version)} is not one this harness reads "
            f"(it reads {REFERENCE_VERSION}); save the reference again with this harness"
        )
    try:
        environment = dict(data.get("environment") or {})
        samples = [_sample(row, cell, environment) for row in data["rows"] for cell in row["cells"]]
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ConfigError(f"{where}: malformed reference file ({error_line(error)})") from None
    gate = Gate.from_json(data["gate"], where) if "gate" in data else None
    created = data.get("created_at", "an unknown date")
    return Side(
        name, f"reference file {path} (saved {created} from {data.get('source', 'an unknown source')})", samples, gate
    )


def _sample(row: dict[str, Any], cell: dict[str, Any], environment: dict[str, str]) -> Sample:
    efficiency = {str(k): float(v) for k, v in (cell.get("efficiency") or {}).items()}
    measured_by = cell.get("measured_by") or {}
    fields: dict[str, Any] = {}
    figures: dict[str, float] = {}
    for name, value in efficiency.items():
        measure = MEASURES.get(name)
        if measure is None:
            continue  # a measure this harness no longer has
        if measure.read_from_row:
            fields[name] = value
        else:
            figures[name] = value
        if measure.measured_by and name in measured_by:
            fields[measure.measured_by] = str(measured_by[name])
    record = CellRow(
        cell_id=str(cell.get("cell_id", "")),
        task=str(row["task"]),
        model=str(row["model"]),
        method=str(row["method"]),
        seed=int(cell["seed"]),
        status=str(cell["status"]),
        scoring=str(row.get("scoring") or "classification"),
        classes=row.get("classes"),
        error=cell.get("error"),
        source="reference",
        metrics={str(k): float(v) for k, v in (cell.get("metrics") or {}).items()},
        stage=row.get("stage"),
        point=dict(row.get("point") or {}),
        select=row.get("select"),
        **fields,
    )
    return Sample(
        row=record,
        facts={**environment, **(cell.get("environment") or {})},
        settings={**(row.get("settings") or {}), **(cell.get("settings") or {})},
        figures=figures,
    )
