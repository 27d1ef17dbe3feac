"""``timeline.png``: utilisation, memory and power (host: CPU and RSS) over time, phases shaded.

Uses the Agg canvas directly (no pyplot) so it neither needs a display nor
touches the training process's global matplotlib state; matplotlib is imported
lazily because the sampler child must stay light.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .summary import _markers, _normalize_rows, infer_backend

_GIB = 1024.0**3
_PHASE_COLORS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7")


def phase_spans(
    rows: list[dict[str, Any]], markers: Iterable[Any] | None = None, t_end_rel_s: float | None = None
) -> list[tuple[str, float, float]]:
    """(phase, start, end) intervals, from the markers if any, else from runs of sample phases."""
    marks = _markers(markers)
    t_last = max((r["t_rel_s"] for r in rows), default=0.0)
    if marks:
        end = max(t_end_rel_s if t_end_rel_s is not None else t_last, marks[-1][1])
        return [(p, t, t_next) for (p, t), (_, t_next) in zip(marks, marks[1:] + [("", end)]) if t_next > t]
    spans: list[tuple[str, float, float]] = []
    for r in rows:
        phase = str(r.get("phase") or "")
        if spans and spans[-1][0] == phase:
            spans[-1] = (phase, spans[-1][1], r["t_rel_s"])
        else:
            if spans:  # close the previous run where this one begins
                spans[-1] = (spans[-1][0], spans[-1][1], r["t_rel_s"])
            spans.append((phase, r["t_rel_s"], r["t_rel_s"]))
    return spans


def plot_timeline(
    rows: Any,
    out_path: str | Path,
    *,
    markers: Iterable[Any] | None = None,
    t_end_rel_s: float | None = None,
    backend: str | None = None,
    title: str | None = None,
) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.transforms import blended_transform_factory

    rows = _normalize_rows(rows)
    backend = backend or infer_backend(rows) or "host"
    out_path = Path(out_path)

    # one series per device (NVML) or a single series (host)
    series: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        key = f"cuda:{r.get('device_index')}" if backend == "nvml" else "tree"
        series[key].append(r)
    multi = len(series) > 1

    def line(ax: Any, col: str, label: str, scale: float = 1.0, **kw: Any) -> None:
        for dev, rs in series.items():
            pts = [(r["t_rel_s"], r[col] / scale) for r in rs if r.get(col) is not None]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, label=f"{label} {dev}" if multi else label, linewidth=1.2, **kw)

    if backend == "nvml":
        panels: list[tuple[str, list[tuple[str, str, float, dict[str, Any]]]]] = [
            (
                "utilization [%]",
                [
                    ("util_kernel_active_pct", "kernel active", 1.0, {}),
                    ("util_mem_ctrl_pct", "memory controller", 1.0, {}),
                ],
            ),
            (
                "GPU memory [GiB]",
                [
                    ("mem_used_bytes", "device used", _GIB, {}),
                    ("proc_mem_bytes", "this job", _GIB, {}),
                    ("mem_total_bytes", "total", _GIB, {"linestyle": "--", "color": "grey"}),
                ],
            ),
            ("power [W]", [("power_mw", "power", 1000.0, {})]),
        ]
    else:
        panels = [
            ("CPU [% of one core]", [("cpu_util_pct", "process tree", 1.0, {})]),
            ("RSS [GiB]", [("rss_bytes", "process tree", _GIB, {})]),
        ]

    fig = Figure(figsize=(11, 2.4 * len(panels) + 0.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes: list[Any] = list(fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0])
    spans = phase_spans(rows, markers, t_end_rel_s)
    colors: dict[str, str] = {}
    for phase, _, _ in spans:
        colors.setdefault(phase, _PHASE_COLORS[len(colors) % len(_PHASE_COLORS)])

    for ax, (ylabel, cols) in zip(axes, panels):
        for phase, start, end in spans:
            ax.axvspan(start, end, color=colors[phase], alpha=0.12, linewidth=0)
        for col, label, scale, kw in cols:
            line(ax, col, label, scale, **kw)
        ax.set_ylim(bottom=0)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper right", fontsize="small")
    top = axes[0]
    trans = blended_transform_factory(top.transData, top.transAxes)
    for phase, start, end in spans:
        top.text(
            (start + end) / 2,
            1.02,
            phase,
            transform=trans,
            ha="center",
            va="bottom",
            fontsize="small",
            color=colors[phase],
            clip_on=False,
        )
    axes[-1].set_xlabel("time since sampler start [s]")
    if not rows:
        top.text(0.5, 0.5, "no samples", transform=top.transAxes, ha="center", va="center")
    fig.suptitle(title or f"telemetry ({backend})")
    # written beside and renamed, so a full disk leaves no truncated timeline.png behind
    out_path = Path(out_path)
    partial = out_path.with_name(f".{out_path.name}.partial")
    try:
        fig.savefig(partial, dpi=100, format="png")
        os.replace(partial, out_path)
    finally:
        partial.unlink(missing_ok=True)
    return out_path
