"""GPU/host telemetry sampled in a side process, with phase markers and per-phase summaries.

Usage (see :class:`TelemetrySampler`)::

    sampler = TelemetrySampler(out_dir=cell_dir, interval_s=0.2, backend="auto")
    sampler.start(); sampler.set_phase("train"); ...; sampler.stop()
    sampler.summary(); sampler.metrics(); sampler.artifacts

Kept import-light (no matplotlib/pandas at import): the sampling child imports
this package.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .host import HostBackend
from .nvml import DeviceRef, NvmlBackend, NvmlUnavailable, proc_tree_memory, resolve_visible_devices
from .process_tree import process_tree_pids
from .sampler import TelemetrySampler
from .schema import CSV_NAME, HOST_COLUMNS, META_NAME, NVML_COLUMNS, PNG_NAME, PhaseMarker, read_rows
from .summary import IDLE_THRESHOLD_PCT, metrics_from_summary, percentile, summarize


def plot_timeline(
    rows: Any,
    out_path: str | Path,
    *,
    markers: Iterable[Any] | None = None,
    t_end_rel_s: float | None = None,
    backend: str | None = None,
    title: str | None = None,
) -> Path:
    """Lazy wrapper of :func:`harness.telemetry.plot.plot_timeline` (imports matplotlib on call)."""
    from .plot import plot_timeline as _plot

    return _plot(rows, out_path, markers=markers, t_end_rel_s=t_end_rel_s, backend=backend, title=title)


__all__ = [
    "CSV_NAME",
    "DeviceRef",
    "HOST_COLUMNS",
    "HostBackend",
    "IDLE_THRESHOLD_PCT",
    "META_NAME",
    "NVML_COLUMNS",
    "NvmlBackend",
    "NvmlUnavailable",
    "PNG_NAME",
    "PhaseMarker",
    "TelemetrySampler",
    "metrics_from_summary",
    "percentile",
    "plot_timeline",
    "proc_tree_memory",
    "process_tree_pids",
    "read_rows",
    "resolve_visible_devices",
    "summarize",
]
