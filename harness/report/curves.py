"""Loss curves: one PNG per (task, model), a line per cell (colour per method): the training loss of
every optimizer step (``efficiency.loss_history``) and, for cells with ``train.eval_every``, the
validation loss (``efficiency.eval_loss_history``, dashed, with markers). Matplotlib's object
API with the Agg canvas, as for the Pareto plots."""

from __future__ import annotations

from pathlib import Path

from harness.report.pareto import Plot, _slug, save_plot
from harness.report.tables import Group


def loss_curves(groups: list[Group], folder: Path) -> list[Plot]:
    """One plot per (task, model) whose finished cells logged a loss history."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    folder.mkdir(parents=True, exist_ok=True)
    plots: list[Plot] = []
    for task, model in dict.fromkeys((g.task, g.model) for g in groups):
        members = [g for g in groups if (g.task, g.model) == (task, model) and any(r.loss_history for r in g.ok)]
        if not members:
            continue
        figure = Figure(figsize=(6.4, 4.4), dpi=110)
        FigureCanvasAgg(figure)
        ax = figure.add_subplot()
        for index, group in enumerate(members):
            colour = f"C{index % 10}"
            for n, row in enumerate(r for r in group.ok if r.loss_history):
                steps, losses = zip(*row.loss_history)
                ax.plot(steps, losses, color=colour, linewidth=1.2, alpha=0.85, label=group.label if n == 0 else None)
                if row.eval_loss_history:
                    steps, losses = zip(*row.eval_loss_history)
                    ax.plot(
                        steps,
                        losses,
                        color=colour,
                        linewidth=1.2,
                        linestyle="--",
                        marker="o",
                        markersize=3,
                        label=f"{group.label} (validation)" if n == 0 else None,
                    )
        validated = any(r.eval_loss_history for g in members for r in g.ok)
        plots.append(
            save_plot(
                figure,
                ax,
                xlabel="optimizer step",
                ylabel="loss",
                title=f"{task} / {model}: training loss" + (" (dashed: validation)" if validated else ""),
                path=folder / f"loss_{_slug(task)}_{_slug(model)}.png",
                task=task,
                model=model,
                axis="loss",
            )
        )
    return plots
