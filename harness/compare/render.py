"""A comparison as tables, in the style of ``harness report``: each table has raw figures (CSV:
quality in [0, 1], memory in bytes, changes as fractions) and a formatted view (console, HTML:
quality in points, memory in GiB, changes in percent), and the HTML is one self-contained page
whose comparison is one ``<section>`` (the report's styles)."""

from __future__ import annotations

import html
from collections import Counter
from pathlib import Path

import pandas as pd

from harness.compare.checks import FAILING, IMPROVEMENT, NOT_COMPARABLE, POINTS, Finding
from harness.compare.comparison import Comparison
from harness.compare.measures import ASPECTS, DEFAULT_TOLERANCE_POINTS, MEASURES, QUALITY_ASPECT
from harness.compare.sides import key_label
from harness.report.render import STYLE, html_table
from harness.report.tables import DASH, Table, fmt_ci
from harness.result import now_iso
from harness.tasks.kinds import LABELS

QUALITY_NOTE = (
    "NEW − REFERENCE per metric, in points (×100), with its 95 % interval: paired t when both sides finished the "
    "same seeds, Welch t otherwise. A regression: the whole interval lies below −tolerance (a drop larger than the "
    f"tolerance with 95 % confidence; default tolerance {DEFAULT_TOLERANCE_POINTS:g} point). Means are ± the "
    "half-width of each side's own 95 % interval."
)
EFFICIENCY_NOTE = (
    "Change of the mean over seeds, NEW / REFERENCE − 1, against the measure's bound (lo … hi, ReFrame-style; "
    "default ±10 %). Beyond it on the worse side (higher memory, time and energy; lower throughput): a "
    "regression; on the better side: an improvement. A different accelerator, or memory measured differently "
    '(GPU allocator vs host RSS), makes a figure "not comparable". Timings on a CPU are reported, not gated, '
    "unless asked (--gate-cpu)."
)
DIFFERENCES_NOTE = (
    "What differs between the sides besides the code under test: the environment result.json records "
    "(packages, accelerator, Python, platform, harness commit and uncommitted changes, container) and the settings "
    "of paired rows (a changed default shows here)."
)
UNPAIRED_NOTE = "Rows (task / model / method [swept values]) that only one side has: not compared."


def _verdict(finding: Finding) -> str:
    text = finding.verdict
    if finding.verdict in FAILING and not finding.gated:
        text += " (reported, not gated)"
    return text + (f": {finding.reason}" if finding.reason else "")


def _interval(finding: Finding) -> str:
    if finding.change is None:
        return DASH
    if finding.low is None or finding.high is None:
        return f"{finding.change:+.2f}"
    return f"{finding.change:+.2f} [{finding.low:+.2f}, {finding.high:+.2f}]"


def _figures(finding: Finding) -> dict[str, float | int | None]:
    """Each side's mean, 95 % half-width and seed count: the CSV columns both tables share."""
    return {
        "new_mean": finding.new.mean,
        "new_ci95": finding.new.half_width,
        "new_seeds": finding.new.n,
        "reference_mean": finding.ref.mean,
        "reference_ci95": finding.ref.half_width,
        "reference_seeds": finding.ref.n,
    }


def quality_table(findings: list[Finding]) -> Table:
    chosen = [f for f in findings if f.aspect == QUALITY_ASPECT]
    data = [
        {
            "row": f.row,
            "metric": f.name,
            **_figures(f),
            "difference_points": f.change,
            "difference_low": f.low,
            "difference_high": f.high,
            "test": f.test,
            "tolerance": f.threshold,
            "verdict": f.verdict,
            "gated": f.gated,
            "reason": f.reason,
        }
        for f in chosen
    ]
    display = [
        {
            "Row": f.row,
            "Metric": LABELS.get(f.name, f.name),
            "NEW": fmt_ci(f.new, POINTS),
            "REFERENCE": fmt_ci(f.ref, POINTS),
            "Δ points [95 % CI]": _interval(f),
            "Test": f.test or DASH,
            "Tolerance": f.threshold,
            "Verdict": _verdict(f),
        }
        for f in chosen
    ]
    return Table(
        "compare_quality",
        "Quality",
        QUALITY_NOTE,
        pd.DataFrame(data),
        pd.DataFrame(display),
        [f.verdict in FAILING for f in chosen],
    )


def efficiency_table(findings: list[Finding]) -> Table:
    chosen = [f for f in findings if f.aspect != QUALITY_ASPECT]
    data, display = [], []
    for f in chosen:
        measure = MEASURES[f.name]
        data.append(
            {
                "row": f.row,
                "measure": f.name,
                "aspect": f.aspect,  # raw figures in the unit the measure's name says (bytes, s, J)
                **_figures(f),
                "change": f.change,
                "bound": f.threshold,
                "better": measure.better,
                "verdict": f.verdict,
                "gated": f.gated,
                "reason": f.reason,
            }
        )
        scale = 1 / measure.scale
        display.append(
            {
                "Row": f.row,
                "Measure": f"{measure.label} ({measure.unit})",
                "NEW": fmt_ci(f.new, scale, measure.digits),
                "REFERENCE": fmt_ci(f.ref, scale, measure.digits),
                "Change": DASH if f.change is None else f"{f.change:+.1%}",
                "Bound": f.threshold,
                "Gated": "yes" if f.gated else "no",
                "Verdict": _verdict(f),
            }
        )
    return Table(
        "compare_efficiency",
        "Efficiency",
        EFFICIENCY_NOTE,
        pd.DataFrame(data),
        pd.DataFrame(display),
        [f.verdict in FAILING for f in chosen],
    )


def differences_table(comparison: Comparison) -> Table:
    rows = comparison.differences
    data = [
        {
            "kind": d.kind,
            "key": d.key,
            "what": d.label,
            "reference": "; ".join(d.ref),
            "new": "; ".join(d.new),
            "effect": d.effect,
            "rows": d.rows or None,
        }
        for d in rows
    ]
    display = [
        {
            "What": d.label if d.label == d.key else f"{d.label} ({d.key})",
            "REFERENCE": ", ".join(d.ref),
            "NEW": ", ".join(d.new),
            "Effect": d.effect or (f"{d.rows} paired row(s)" if d.rows else DASH),
        }
        for d in rows
    ]
    columns = ["kind", "key", "what", "reference", "new", "effect", "rows"]
    return Table(
        "compare_differences",
        "Differences besides the code",
        DIFFERENCES_NOTE,
        pd.DataFrame(data, columns=columns),
        pd.DataFrame(display),
        [bool(d.effect) for d in rows],
    )


def unpaired_table(comparison: Comparison) -> Table:
    pairing = comparison.pairing
    data = [
        {
            "side": side.name,
            "row": key_label(key),
            "seeds": " ".join(str(s.row.seed) for s in samples),
            "statuses": ", ".join(
                f"{n} {status}" for status, n in sorted(Counter(s.row.status for s in samples).items())
            ),
        }
        for side, rows in ((comparison.new, pairing.only_new), (comparison.ref, pairing.only_ref))
        for key, samples in rows.items()
    ]
    frame = pd.DataFrame(data, columns=["side", "row", "seeds", "statuses"])
    return Table(
        "compare_unpaired",
        "Rows on one side only",
        UNPAIRED_NOTE,
        frame,
        frame.rename(columns={"side": "Only in", "row": "Row", "seeds": "Seeds", "statuses": "Status"}),
    )


def summary_lines(comparison: Comparison) -> list[str]:
    pairing, findings = comparison.pairing, comparison.findings
    failures = comparison.failures
    by_aspect = Counter(f.aspect for f in failures)
    reported = [f for f in findings if f.verdict in FAILING and not f.gated]
    improvements = [f for f in findings if f.verdict == IMPROVEMENT]
    not_comparable = [f for f in findings if f.verdict == NOT_COMPARABLE]
    gate = comparison.gate
    gated = ", ".join(a for a in ASPECTS if a in gate.aspects) or "nothing"
    lines = [
        f"NEW: {comparison.new.source}",
        f"REFERENCE: {comparison.ref.source}",
        f"{len(pairing.pairs)} paired row(s); {len(pairing.only_new)} only in NEW, {len(pairing.only_ref)} only in "
        f"REFERENCE. Gated: {gated}" + ("" if gate.cpu_timings else " (timings on a GPU only)") + ".",
    ]
    if failures:
        parts = ", ".join(f"{n} {aspect}" for aspect, n in sorted(by_aspect.items()))
        lines.append(f"REGRESSION: {len(failures)} gated finding(s) ({parts}):")
        lines += [f"  {f.row}: {f.label} {_verdict(f)} ({_change(f)})" for f in failures]
    else:
        lines.append("No gated regression.")
    if reported:
        lines.append(f"{len(reported)} regression(s) reported, not gated: " + "; ".join(_short(f) for f in reported))
    if improvements:
        lines.append(f"{len(improvements)} improvement(s): " + "; ".join(_short(f) for f in improvements))
    if not_comparable:
        lines.append(f"{len(not_comparable)} figure(s) not comparable (see the reasons in the tables).")
    return lines


def _change(finding: Finding) -> str:
    if finding.change is None:
        return DASH
    if finding.aspect == QUALITY_ASPECT:
        return f"Δ {_interval(finding)} points, tolerance {finding.threshold}"
    return f"{finding.change:+.1%}, bound {finding.threshold}"


def _short(finding: Finding) -> str:
    return f"{finding.row}: {finding.label} {_change(finding)}"


def tables(comparison: Comparison) -> list[Table]:
    return [
        quality_table(comparison.findings),
        efficiency_table(comparison.findings),
        differences_table(comparison),
        unpaired_table(comparison),
    ]


def console(comparison: Comparison) -> str:
    lines = ["harness compare", *summary_lines(comparison), *comparison.notes]
    for table in tables(comparison):
        lines += ["", f"== {table.title}", table.note]
        lines.append(table.display.to_string(index=False) if not table.display.empty else "(none)")
    return "\n".join(lines)


def html_section(comparison: Comparison) -> str:
    esc = html.escape
    parts = ['<section id="harness-compare">', "<h2>Comparison against a reference</h2>"]
    parts.append("<p>" + "<br>".join(esc(line) for line in summary_lines(comparison)) + "</p>")
    parts += [f'<p class="note">{esc(note)}</p>' for note in comparison.notes]
    for table in tables(comparison):
        parts += [f"<h3>{esc(table.title)}</h3>", f'<p class="note">{esc(table.note)}</p>', html_table(table)]
    return "\n".join([*parts, "</section>"])


def html_page(comparison: Comparison) -> str:
    title = "harness compare"
    return "\n".join(
        [
            f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>',
            f"<style>{STYLE}</style></head><body>",
            f"<h1>{title}</h1><p>Generated: {html.escape(now_iso())}</p>",
            html_section(comparison),
            "</body></html>",
        ]
    )


def write(comparison: Comparison, folder: Path) -> Path:
    """CSV per table and ``compare.html`` into ``folder``; returns it."""
    folder.mkdir(parents=True, exist_ok=True)
    for table in tables(comparison):
        table.data.to_csv(folder / f"{table.name}.csv", index=False)
    (folder / "compare.html").write_text(html_page(comparison))
    return folder
