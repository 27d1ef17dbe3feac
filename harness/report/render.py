"""Render a report as Markdown (next to its PNGs and CSVs) and as one self-contained HTML
page (styles inline, plots as base64 data URIs: it can be mailed or opened offline)."""

from __future__ import annotations

import base64
import html
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from harness.report.pareto import Plot
from harness.report.tables import Table


@dataclass
class ReportContent:
    title: str
    source: str  # where the results came from, in words
    generated_at: str
    tables: list[Table]  # the study's tables, in order
    cells: Table
    not_finished: Table
    plots: list[Plot] = field(default_factory=list)
    curves: list[Plot] = field(default_factory=list)  # training loss per (task, model)
    sensitivity: list[Plot] = field(default_factory=list)  # sweeps: selection metric against the swept value
    excluded: list[tuple[str, str]] = field(default_factory=list)  # (cell label, reason)
    notes: list[str] = field(default_factory=list)

    def status_counts(self) -> Counter[str]:
        return Counter(self.cells.data["status"]) if len(self.cells.data) else Counter()


def _summary_line(content: ReportContent) -> str:
    counts = content.status_counts()
    total = sum(counts.values())
    parts = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    return f"{total} cells: {parts or 'none'}" + (f"; {len(content.excluded)} excluded" if content.excluded else "")


# --------------------------------------------------------------------------- Markdown


def _md_cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "_none_\n"
    header = "| " + " | ".join(_md_cell(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def markdown(content: ReportContent, folder: Path) -> str:
    lines = [
        f"# {content.title}",
        "",
        f"Source: {content.source}  ",
        f"Generated: {content.generated_at}  ",
        _summary_line(content),
        "",
    ]
    lines += [f"> {note}" for note in content.notes] + ([""] if content.notes else [])
    for table in content.tables:
        lines += [
            f"## {table.title}",
            "",
            table.note,
            "",
            markdown_table(table.display),
            f"CSV: `{table.name}.csv`",
            "",
        ]
    if content.plots:
        lines += [
            "## Pareto plots",
            "",
            "Quality against cost per model and task; red points and line: the Pareto frontier "
            "(no other method is both cheaper and better); dashed: zero-shot.",
            "",
        ]
        lines += [f"![{plot.title}]({plot.path.relative_to(folder).as_posix()})" for plot in content.plots]
        lines.append("")
    if content.sensitivity:
        lines += ["## Sensitivity to the swept value", "", SENSITIVITY_NOTE, ""]
        lines += [f"![{plot.title}]({plot.path.relative_to(folder).as_posix()})" for plot in content.sensitivity]
        lines.append("")
    if content.curves:
        lines += ["## Training loss", "", LOSS_NOTE, ""]
        lines += [f"![{plot.title}]({plot.path.relative_to(folder).as_posix()})" for plot in content.curves]
        lines.append("")
    lines += [
        f"## {content.not_finished.title}",
        "",
        content.not_finished.note,
        "",
        markdown_table(content.not_finished.display),
    ]
    if content.excluded:
        lines += ["## Excluded by the matrix", "", *(f"- {label}: {reason}" for label, reason in content.excluded), ""]
    lines += [
        "## Files",
        "",
        f"- `{content.cells.name}.csv`: every cell with its raw figures",
        *(f"- `{t.name}.csv`" for t in content.tables),
        f"- `{content.not_finished.name}.csv`",
        "- `report.html`: this report in one self-contained file",
        "",
    ]
    return "\n".join(lines)


SENSITIVITY_NOTE = (
    "Stage 1 of each sweep: the selection metric on the selection split (first seed) against the swept "
    "value, one line per method; the ringed point is the one selected. A flat line: the method does "
    "not mind the value; a sharp peak: a fixed value would have misjudged it."
)
LOSS_NOTE = (
    "Training loss of every optimizer step, per cell, one colour per method; each seed is its own line. "
    "Methods of a model and seed see the same batches in the same order, so their curves compare step by step. "
    "Dashed, with markers: the loss on the validation split every train.eval_every steps, where a cell sets it."
)


# --------------------------------------------------------------------------- HTML

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1400px;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; }
p.note { color: #555; font-size: 0.9em; max-width: 70em; }
/* a table wider than the page scrolls inside its own box: no column is cut off, the page stays put */
div.table-wrap { overflow-x: auto; max-width: 100%; margin: 0.5em 0 1em; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; white-space: nowrap; }
th { background: #f2f2f2; } td:first-child, td:nth-child(2) { text-align: left; }
tr.flag td { background: #fff4d6; }
figure { display: inline-block; margin: 0.5em; } figure img { max-width: 620px; border: 1px solid #eee; }
figcaption { font-size: 0.8em; color: #555; }
"""


def html_table(table: Table) -> str:
    frame = table.display
    if frame.empty:
        return "<p><em>none</em></p>"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for i, row in enumerate(frame.itertuples(index=False)):
        css = ' class="flag"' if i < len(table.flagged) and table.flagged[i] else ""
        rows.append(f"<tr{css}>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>")
    return f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'


def _image(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def html_page(content: ReportContent) -> str:
    esc = html.escape
    parts = [
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{esc(content.title)}</title>',
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{esc(content.title)}</h1>",
        f"<p>Source: {esc(content.source)}<br>Generated: {esc(content.generated_at)}<br>{esc(_summary_line(content))}</p>",
    ]
    parts += [f'<p class="note">{esc(note)}</p>' for note in content.notes]
    for table in content.tables:
        parts += [f"<h2>{esc(table.title)}</h2>", f'<p class="note">{esc(table.note)}</p>', html_table(table)]
    if content.plots:
        parts.append(
            '<h2>Pareto plots</h2><p class="note">Red: the Pareto frontier (no other method is both cheaper '
            "and better); dashed: zero-shot; error bars: 95 % CI over seeds.</p>"
        )
        parts += [
            f'<figure><img alt="{esc(p.title)}" src="{_image(p.path)}"><figcaption>{esc(p.title)}</figcaption></figure>'
            for p in content.plots
        ]
    if content.sensitivity:
        parts.append(f'<h2>Sensitivity to the swept value</h2><p class="note">{esc(SENSITIVITY_NOTE)}</p>')
        parts += [
            f'<figure><img alt="{esc(p.title)}" src="{_image(p.path)}"><figcaption>{esc(p.title)}</figcaption></figure>'
            for p in content.sensitivity
        ]
    if content.curves:
        parts.append(f'<h2>Training loss</h2><p class="note">{esc(LOSS_NOTE)}</p>')
        parts += [
            f'<figure><img alt="{esc(p.title)}" src="{_image(p.path)}"><figcaption>{esc(p.title)}</figcaption></figure>'
            for p in content.curves
        ]
    parts += [
        f"<h2>{esc(content.not_finished.title)}</h2>",
        f'<p class="note">{esc(content.not_finished.note)}</p>',
        html_table(content.not_finished),
    ]
    if content.excluded:
        parts.append(
            "<h2>Excluded by the matrix</h2><ul>"
            + "".join(f"<li>{esc(label)}: {esc(reason)}</li>" for label, reason in content.excluded)
            + "</ul>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)
