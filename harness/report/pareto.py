"""Pareto plots: quality against cost (trainable parameters, peak memory, energy) per
model and task, the frontier (no other method is both cheaper and better) marked.

Uses matplotlib's object API with the Agg canvas, so no display and no global backend
switch is needed (the report may run inside a process that plots elsewhere).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.report.load import HEADLINE
from harness.report.tables import GIB, PEAK_MEASURES, Group, reference
from harness.tasks.kinds import LABELS

# axis name -> (x label, Group attribute, scale, log x)
AXES: dict[str, tuple[str, str, float, bool]] = {
    "params": ("trainable parameters (log)", "trainable_params", 1.0, True),
    "memory": ("train-phase peak memory (GiB)", "train_peak_bytes", 1.0 / GIB, False),
    "energy": ("train-phase GPU energy (kJ)", "train_energy_j", 1e-3, False),
}


@dataclass(frozen=True)
class Point:
    method: str
    x: float
    y: float  # quality in points (×100)
    yerr: float | None = None


@dataclass(frozen=True)
class Plot:
    task: str
    model: str
    axis: str
    path: Path
    title: str


def frontier(points: list[Point]) -> list[Point]:
    """Points no other point dominates (lower or equal cost and higher quality), by cost."""
    best: list[Point] = []
    for point in sorted(points, key=lambda p: (p.x, -p.y)):
        if not best or point.y > best[-1].y:
            best.append(point)
    return best


def _points(groups: list[Group], axis: str) -> list[Point]:
    _, attribute, scale, log = AXES[axis]
    points = []
    skipped = reference().name  # drawn as a line across the plot, not a point
    for group in groups:
        if group.method == skipped:
            continue
        value = group.first(attribute) if attribute == "trainable_params" else group.mean(attribute)
        quality = group.summary(HEADLINE[group.scoring])
        if value is None or quality.mean is None or (log and float(value) <= 0):
            continue
        err = None if quality.half_width is None else quality.half_width * 100
        points.append(Point(group.label, float(value) * scale, quality.mean * 100, err))
    return points


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def save_plot(
    figure: Any, ax: Any, *, xlabel: str, ylabel: str, title: str, path: Path, task: str, model: str, axis: str
) -> Plot:
    """Label, lay out and write a report figure (the Pareto plots' and the loss curves' style)."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    figure.tight_layout()
    figure.savefig(path)
    return Plot(task, model, axis, path, title)


def pareto_plots(groups: list[Group], folder: Path) -> list[Plot]:
    """One PNG per (task, model, axis) that has at least two points; energy only with telemetry."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    folder.mkdir(parents=True, exist_ok=True)
    plots: list[Plot] = []
    pairs = list(dict.fromkeys((g.task, g.model) for g in groups))
    for task, model in pairs:
        members = [g for g in groups if (g.task, g.model) == (task, model)]
        headline = HEADLINE[members[0].scoring]
        metric = LABELS[headline]
        ref = reference()
        base_group = next((g for g in members if g.method == ref.name and g.ok), None)
        for axis, (xlabel, _, _, log) in AXES.items():
            points = _points(members, axis)
            if len(points) < 2:
                continue
            figure = Figure(figsize=(6.4, 4.4), dpi=110)
            FigureCanvasAgg(figure)
            ax = figure.add_subplot()
            on_frontier = frontier(points)
            for p in points:
                ax.errorbar(
                    p.x,
                    p.y,
                    yerr=p.yerr,
                    fmt="o",
                    color="tab:red" if p in on_frontier else "tab:gray",
                    ecolor="0.7",
                    capsize=3,
                    zorder=3,
                )
                ax.annotate(p.method, (p.x, p.y), textcoords="offset points", xytext=(5, 4), fontsize=8)
            ax.step(
                [p.x for p in on_frontier],
                [p.y for p in on_frontier],
                where="post",
                color="tab:red",
                linewidth=1.2,
                label="Pareto frontier",
                zorder=2,
            )
            if base_group is not None:
                base = base_group.summary(headline).mean
                if base is not None:
                    ax.axhline(base * 100, color="tab:blue", linestyle="--", linewidth=1, label=ref.shown_as)
            if log:
                ax.set_xscale("log")
            if axis == "memory":  # say what was measured: GPU allocator or host RSS
                measures = {m for g in members if (m := g.peak_measure("train")) is not None}
                measure = PEAK_MEASURES.get(measures.pop(), "mixed") if len(measures) == 1 else "mixed measures"
                xlabel = f"{xlabel[:-1]}, {measure})"
            plots.append(
                save_plot(
                    figure,
                    ax,
                    xlabel=xlabel,
                    ylabel=f"{metric} (×100, mean ± 95 % CI)",
                    title=f"{task} / {model}: {metric} vs {axis}",
                    path=folder / f"pareto_{_slug(task)}_{_slug(model)}_{axis}.png",
                    task=task,
                    model=model,
                    axis=axis,
                )
            )
    return plots
