"""Column layout of ``telemetry.csv`` and its (crash-tolerant) reader and writer.

The CSV is the ground truth: the summary is recomputed from it, so a report can
re-summarize an old run. Kept free of heavy imports because the sampler child
imports it.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

CSV_NAME = "telemetry.csv"
PNG_NAME = "timeline.png"
META_NAME = "telemetry_meta.json"

# Stamped by the sampler on every row, whatever the backend.
COMMON_COLUMNS: tuple[str, ...] = ("seq", "t_wall", "t_mono", "t_rel_s", "phase")

NVML_COLUMNS: tuple[str, ...] = (
    "device_index",  # CUDA ordinal inside this job (position in CUDA_VISIBLE_DEVICES)
    "nvml_index",  # NVML (PCI bus order) index; None for MIG devices
    "device_uuid",
    "device_name",
    "util_kernel_active_pct",  # share of time a kernel ran, NOT SM occupancy
    "util_mem_ctrl_pct",
    "mem_used_bytes",
    "mem_total_bytes",
    "proc_mem_bytes",  # device memory of this job's process tree
    "power_mw",
    "energy_mj",  # NVML total-energy counter since driver load
    "sm_clock_mhz",
    "temp_c",
    "throttle_reasons",  # NVML clocks-event / throttle bitmask
)

HOST_COLUMNS: tuple[str, ...] = (
    "n_procs",
    "cpu_util_pct",  # percent of ONE core, summed over the process tree
    "cpu_util_norm_pct",  # cpu_util_pct / usable cores
    "rss_bytes",  # resident memory summed over the process tree
    "node_cpu_util_pct",  # whole machine, for context
    "node_mem_used_bytes",
)

_TEXT_COLUMNS = frozenset({"phase", "device_uuid", "device_name"})
_INT_COLUMNS = frozenset(
    {
        "seq",
        "device_index",
        "nvml_index",
        "mem_used_bytes",
        "mem_total_bytes",
        "proc_mem_bytes",
        "power_mw",
        "energy_mj",
        "sm_clock_mhz",
        "temp_c",
        "throttle_reasons",
        "n_procs",
        "rss_bytes",
        "node_mem_used_bytes",
    }
)


@dataclass(frozen=True)
class PhaseMarker:
    """A ``set_phase`` call as seen by the parent: exact, unlike sample stamps."""

    phase: str
    t_rel_s: float
    t_wall: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_value(column: str, raw: Any) -> Any:
    """Convert one CSV cell to its type; empty / unparsable -> None."""
    if raw is None or (isinstance(raw, float) and math.isnan(raw)):
        return None
    if column in _TEXT_COLUMNS:
        return str(raw)
    if isinstance(raw, str):
        raw = raw.strip()
        if raw == "":
            return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    if math.isnan(value):
        return None
    if column in _INT_COLUMNS and value.is_integer():
        return int(value)
    return value


def read_rows(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read ``telemetry.csv`` into typed dicts.

    Tolerates a truncated last line (the child may be SIGKILLed mid-write): rows
    with the wrong number of cells or without a timestamp are skipped.
    """
    p = Path(path)
    if not p.exists():
        return []
    rows: list[dict[str, Any]] = []
    with p.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header:
            return []
        for cells in reader:
            if len(cells) != len(header):
                continue
            row = {col: parse_value(col, cell) for col, cell in zip(header, cells)}
            if row.get("t_rel_s") is None or row.get("seq") is None:
                continue
            rows.append(row)
    return rows


class CsvSink:
    """Incremental CSV writer; the caller decides when to flush."""

    def __init__(self, path: Path, columns: Iterable[str]) -> None:
        self.path = path
        self.columns = tuple(columns)
        self._file: TextIO = path.open("w", newline="", buffering=1 << 16)
        self._writer = csv.writer(self._file)
        self._writer.writerow(self.columns)
        self._file.flush()

    def write(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            self._writer.writerow([_fmt(row.get(c)) for c in self.columns])

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            self._file.close()


def _fmt(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6f}".rstrip("0").rstrip(".") if math.isfinite(value) else ""
    return value


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
