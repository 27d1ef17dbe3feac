"""The report's tables: the study's four (quality and efficiency per scoring) plus the
figures the study lacked (confidence intervals, seeds, gains over the zero-shot reference,
memory and energy relative to the efficiency baseline (LoRA), per-phase peaks, throughput),
every cell, and what did not finish. Which method plays which part is its registry entry's
``report_role``; a method this peft no longer has is reported like any other.

Each table has raw numbers (``data``, for CSV: quality in [0, 1] as in result.json,
memory in bytes, energy in joules) and a formatted view (``display``, for Markdown and
HTML: quality in points ×100, mean ± 95 % CI).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from harness.methods.registry import MethodSpec, method_in_role, method_names
from harness.report.load import HEADLINE, NOT_RECORDED, QUALITY, CellRow
from harness.report.stats import Summary, difference, mean, summarize
from harness.tasks.kinds import LABELS, SCORINGS

GIB = 1024**3
DASH = "—"
NOT_FINISHED_MARK = "⚠"
SCORING_TITLES = {name: scoring.title for name, scoring in SCORINGS.items()}
TABLE_IDS = {name: scoring.table for name, scoring in SCORINGS.items()}
PEAK_MEASURES = {"gpu": "GPU allocator", "rss": "host RSS"}


def reference() -> MethodSpec:
    """The zero-shot reference: every table's first row, each method's quality gain is over it."""
    return method_in_role("reference")


def efficiency_baseline() -> MethodSpec:
    """The method train memory and energy are given relative to (LoRA)."""
    return method_in_role("efficiency_baseline")


@dataclass
class Group:
    """The seeds of one (task, model, method): every planned cell, finished or not."""

    task: str
    model: str
    method: str
    scoring: str
    rows: list[CellRow] = field(default_factory=list)
    variant: str | None = None  # a labelled configuration of the method (CellRow.variant)

    @property
    def label(self) -> str:
        """What tables and plots call it: its variant's label, else the method."""
        return self.variant or self.method

    @property
    def ok(self) -> list[CellRow]:
        return [r for r in self.rows if r.finished]

    def summary(self, metric: str) -> Summary:
        return summarize([r.metrics.get(metric) for r in self.ok])

    def mean(self, attribute: str) -> float | None:
        return mean([getattr(r, attribute) for r in self.ok])

    def first(self, attribute: str) -> Any:
        return next((getattr(r, attribute) for r in self.rows if getattr(r, attribute) is not None), None)

    def recorded(self, attribute: str) -> Any:
        """A setting of what ran (rank, learning rate): from the first seed whose result records
        it; from the others (NOT_RECORDED, or what the method says by itself) when none does."""
        recorded = [r for r in self.rows if r.run_recorded]
        return next((getattr(r, attribute) for r in recorded or self.rows if getattr(r, attribute) is not None), None)

    def peak_measure(self, phase: str) -> str | None:
        measures = {getattr(r, f"{phase}_peak_measure") for r in self.ok} - {None}
        return measures.pop() if len(measures) == 1 else ("mixed" if measures else None)

    @property
    def unfinished(self) -> Counter[str]:
        return Counter(r.status for r in self.rows if not r.finished)

    @property
    def note(self) -> str:
        """ "" when every planned seed finished, else e.g. "⚠ 1 failed, 1 missing"."""
        counts = self.unfinished
        return f"{NOT_FINISHED_MARK} " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) if counts else ""


@dataclass
class Table:
    name: str  # file stem of the CSV
    title: str
    note: str
    data: pd.DataFrame
    display: pd.DataFrame
    flagged: list[bool] = field(default_factory=list)  # display rows with unfinished cells


def _method_order(method: str) -> tuple[int, str]:
    names = method_names()
    return (names.index(method) if method in names else len(names), method)


def group_rows(rows: list[CellRow]) -> list[Group]:
    """Groups in a stable order: task and model as they first appear, methods in registry order
    (the zero-shot reference is after the others in the registry, so it is moved first: it is every
    table's baseline)."""
    groups: dict[tuple[str, str, str, str | None], Group] = {}
    tasks: list[str] = []
    models: list[str] = []
    for row in rows:
        tasks += [row.task] if row.task not in tasks else []
        models += [row.model] if row.model not in models else []
        key = (row.task, row.model, row.method, row.variant)
        groups.setdefault(key, Group(row.task, row.model, row.method, row.scoring, variant=row.variant)).rows.append(
            row
        )
    for group in groups.values():
        group.rows.sort(key=lambda r: r.seed)
    first = reference().name
    return sorted(
        groups.values(),
        key=lambda g: (
            tasks.index(g.task),
            models.index(g.model),
            g.method != first,
            _method_order(g.method),
            g.variant or "",
        ),
    )


def _baseline(groups: list[Group], group: Group, method: str) -> Group | None:
    # the method itself, not a labelled configuration of it
    same = (group.task, group.model, method, None)
    return next((g for g in groups if (g.task, g.model, g.method, g.variant) == same and g.ok), None)


# --------------------------------------------------------------------------- formatting


def fmt_ci(summary: Summary, scale: float = 100.0, digits: int = 2) -> str:
    """``45.12 ± 1.03``; one seed: ``45.12 ± —`` (no interval); no value: ``—``."""
    if summary.mean is None:
        return DASH
    value = f"{summary.mean * scale:.{digits}f}"
    if summary.half_width is None:
        return f"{value} ± {DASH}"
    return f"{value} ± {summary.half_width * scale:.{digits}f}"


def fmt_signed_ci(summary: Summary, scale: float = 100.0, digits: int = 2) -> str:
    if summary.mean is None:
        return DASH
    value = f"{summary.mean * scale:+.{digits}f}"
    return f"{value} ± {DASH}" if summary.half_width is None else f"{value} ± {summary.half_width * scale:.{digits}f}"


def fmt_count(value: float | None) -> str:
    if value is None:
        return DASH
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.2f}{suffix}"
    return f"{value:.0f}"


def fmt_num(value: float | None, digits: int = 2, suffix: str = "") -> str:
    return DASH if value is None else f"{value:,.{digits}f}{suffix}"


def fmt_ratio(value: float | None) -> str:
    return DASH if value is None else f"×{value:.2f}"


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _task_column_if_shared(display: pd.DataFrame) -> pd.DataFrame:
    """The displayed table with its "Task" column only when its rows span several tasks: two
    tasks of one scoring on one model would otherwise give identical-looking rows; a table of
    one task looks as it always has (the CSV keeps its ``task`` column either way)."""
    return display if display["Task"].nunique() > 1 else display.drop(columns="Task")


# --------------------------------------------------------------------------- the tables


def comparability_note(groups: list[Group]) -> str:
    """A warning when a table's finished cells ran under different versions of a package that
    decides results, or from a harness tree with uncommitted changes ("" when neither): their
    differences may then be the software's, not the methods' (peft's users asked for this
    switch: huggingface/peft#3157)."""
    rows = [r for g in groups for r in g.ok]
    versions: dict[str, Counter[str]] = {}
    for row in rows:
        for name, version in row.packages.items():
            versions.setdefault(name, Counter())[str(version)] += 1
    mixed = [
        f"{name} " + " / ".join(f"{v} ({n} cells)" for v, n in sorted(counts.items()))
        for name, counts in sorted(versions.items())
        if len(counts) > 1
    ]
    dirty = sum(r.git_dirty is True for r in rows)
    parts = [f"the cells ran under different package versions: {'; '.join(mixed)}"] if mixed else []
    parts += [f"{dirty} of {len(rows)} cells ran from a harness tree with uncommitted changes"] if dirty else []
    return f" {NOT_FINISHED_MARK} Not comparable as run: " + "; ".join(parts) + "." if parts else ""


FORGETTING_LABEL = "Forgetting"
FORGETTING_NOTE = (
    " Forgetting (data.forgetting, peft's metric): the mean per-token cross-entropy in nats on a general-text "
    "sample after training minus the base model's, mean over seeds ± the 95 % interval; lower is better. n/a: "
    "the head has no language-model loss."
)


def quality_table(groups: list[Group], scoring: str) -> Table | None:
    """Quality per model and method, the zero-shot reference first, with CI, seeds and the gain over it."""
    chosen = [g for g in groups if g.scoring == scoring]
    if not chosen:
        return None
    metrics, headline = QUALITY[scoring], HEADLINE[scoring]
    ref = reference()
    gain_column, gain_label = f"{headline}_gain_vs_{ref.name}", f"Δ {LABELS[headline]} vs {ref.shown_as}"
    data, display, flagged = [], [], []
    # data.forgetting (peft's metric): a column only when some cell measured it or says why it could not
    forgetting_shown = any(r.forgetting is not None or r.forgetting_not_applicable for g in chosen for r in g.ok)
    for group in chosen:
        base = _baseline(groups, group, ref.name) if group.method != ref.name else None
        gain = difference(group.summary(headline), base.summary(headline)) if base else Summary(0, None)
        raw: dict[str, object] = {
            "task": group.task,
            "model": group.model,
            "method": group.label,
            "seeds_finished": len(group.ok),
            "seeds_planned": len(group.rows),
        }
        shown: dict[str, str] = {
            "Task": group.task,
            "Model": group.model,
            "Method": group.label,
            "Seeds": f"{len(group.ok)}/{len(group.rows)}",
        }
        for metric in metrics:
            s = group.summary(metric)
            raw.update(
                {
                    f"{metric}_mean": s.mean,
                    f"{metric}_std": s.std,
                    f"{metric}_ci95": s.half_width,
                    f"{metric}_low": s.low,
                    f"{metric}_high": s.high,
                }
            )
            shown[LABELS[metric]] = fmt_ci(s)
        raw.update({gain_column: gain.mean, f"{gain_column}_ci95": gain.half_width})
        shown[gain_label] = fmt_signed_ci(gain)
        if forgetting_shown:
            forgetting = summarize([r.forgetting for r in group.ok])
            why = next((r.forgetting_not_applicable for r in group.ok if r.forgetting_not_applicable), None)
            raw.update(
                {
                    "forgetting_mean": forgetting.mean,
                    "forgetting_ci95": forgetting.half_width,
                    "forgetting_not_applicable": why,
                }
            )
            shown[FORGETTING_LABEL] = (
                fmt_ci(forgetting, scale=1.0, digits=4) if forgetting.n else f"n/a ({why})" if why else DASH
            )
        raw["not_finished"] = group.note.removeprefix(f"{NOT_FINISHED_MARK} ")
        shown["Status"] = group.note or "ok"
        data.append(raw)
        display.append(shown)
        flagged.append(bool(group.note))
    baselines = SCORINGS[scoring].baselines
    for task in dict.fromkeys(g.task for g in chosen) if baselines else ():
        counts = next((r.class_counts for g in chosen if g.task == task for r in g.ok if r.class_counts), None)
        for name, figures in (baselines(counts) if counts else {}).items():  # type: ignore[misc]
            raw = {
                "task": task,
                "model": DASH,
                "method": name,
                "baseline": True,
                **{f"{metric}_mean": figures.get(metric) for metric in metrics},
            }
            shown = {
                "Task": task,
                "Model": DASH,
                "Method": name,
                "Seeds": DASH,
                **{LABELS[m]: f"{figures[m] * 100:.2f}" if m in figures else DASH for m in metrics},
                gain_label: DASH,
                **({FORGETTING_LABEL: DASH} if forgetting_shown else {}),
                "Status": "baseline",
            }
            data.append(raw)
            display.append(shown)
            flagged.append(False)
    classes = sorted({r.classes for g in chosen for r in g.rows if r.classes})
    averaging = SCORINGS[scoring].averaging
    averaging = f" {averaging.format(classes='/'.join(map(str, classes)))}" if averaging and classes else ""
    note = (
        f"Mean over finished seeds ± half-width of the 95 % confidence interval (Student t, n−1 degrees of "
        f'freedom), in points (×100). "± {DASH}": one seed, no interval. Δ vs {ref.shown_as}: same model and task; '
        f"Welch interval when both sides have several seeds.{averaging}"
        + (
            " Baseline rows: what a model that learned nothing scores on the same evaluation set (majority class: "
            "always its most frequent class; uniform chance: expected figures of a uniform random guess)."
            if baselines
            else ""
        )
        + (FORGETTING_NOTE if forgetting_shown else "")
        + comparability_note(chosen)
    )
    return Table(
        f"{TABLE_IDS[scoring]}_quality",
        f"{SCORING_TITLES[scoring]}: quality",
        note,
        pd.DataFrame(data),
        _task_column_if_shared(pd.DataFrame(display)),
        flagged,
    )


def efficiency_table(groups: list[Group], scoring: str) -> Table | None:
    """Parameters, rank, per-phase peak memory, energy, throughput; memory and energy relative to
    the efficiency baseline (LoRA)."""
    chosen = [g for g in groups if g.scoring == scoring]
    if not chosen:
        return None
    versus = efficiency_baseline()
    data, display, flagged = [], [], []
    for group in chosen:
        base = _baseline(groups, group, versus.name)
        train_peak, eval_peak = group.mean("train_peak_bytes"), group.mean("eval_peak_bytes")
        train_measure, eval_measure = group.peak_measure("train"), group.peak_measure("eval")
        same_measure = base is not None and base.peak_measure("train") == train_measure
        memory_vs = _ratio(train_peak, base.mean("train_peak_bytes")) if base and same_measure else None
        train_energy, eval_energy = group.mean("train_energy_j"), group.mean("eval_energy_j")
        energy_vs = _ratio(train_energy, base.mean("train_energy_j")) if base else None
        trainable = group.first("trainable_params")
        share = group.first("trainable_share")
        raw = {
            "task": group.task,
            "model": group.model,
            "method": group.label,
            "rank": group.recorded("rank"),
            "learning_rate": group.recorded("learning_rate"),
            "trainable_params": trainable,
            "total_params": group.first("total_params"),
            "trainable_share": share,
            "train_peak_bytes": train_peak,
            "train_peak_measure": train_measure,
            "eval_peak_bytes": eval_peak,
            "eval_peak_measure": eval_measure,
            "gpu_mem_used_peak_bytes": group.mean("gpu_mem_used_peak_bytes"),
            f"train_memory_vs_{versus.name}": memory_vs,
            "train_energy_j": train_energy,
            "eval_energy_j": eval_energy,
            f"train_energy_vs_{versus.name}": energy_vs,
            "train_samples_per_s": group.mean("train_samples_per_s"),
            "train_tokens_per_s": group.mean("train_tokens_per_s"),
            "mfu": group.mean("mfu"),
            "train_wall_s": group.mean("train_wall_s"),
            "eval_wall_s": group.mean("eval_wall_s"),
            "seeds_finished": len(group.ok),
            "seeds_planned": len(group.rows),
            "not_finished": group.note.removeprefix(f"{NOT_FINISHED_MARK} "),
        }
        shown = {
            "Task": group.task,
            "Model": group.model,
            "Method": group.label,
            "Rank": str(raw["rank"] or DASH),
            "Trainable": fmt_count(trainable),
            "Share": DASH if share is None else f"{100 * float(share):.4f} %",
            "Train peak (GiB)": fmt_num(None if train_peak is None else train_peak / GIB),
            "Eval peak (GiB)": fmt_num(None if eval_peak is None else eval_peak / GIB),
            "Memory measure": PEAK_MEASURES.get(
                train_measure or eval_measure or "", train_measure or eval_measure or DASH
            ),
            f"Train memory vs {versus.shown_as}": fmt_ratio(memory_vs),
            "Train energy (kJ)": fmt_num(None if train_energy is None else train_energy / 1e3, 1),
            "Eval energy (kJ)": fmt_num(None if eval_energy is None else eval_energy / 1e3, 1),
            f"Train energy vs {versus.shown_as}": fmt_ratio(energy_vs),
            "Samples/s": fmt_num(raw["train_samples_per_s"]),
            "Tokens/s": fmt_num(raw["train_tokens_per_s"], 0),
            "MFU": DASH if raw["mfu"] is None else f"{100 * float(raw['mfu']):.1f} %",
            "Seeds": f"{len(group.ok)}/{len(group.rows)}",
            "Status": group.note or "ok",
        }
        data.append(raw)
        display.append(shown)
        flagged.append(bool(group.note))
    note = (
        "Means over finished seeds. Peak memory per phase, kept apart: on a GPU the torch allocator's peak "
        f'(allocated bytes), on a CPU the process\'s peak RSS (see "Memory measure"). "vs {versus.shown_as}": ratio to '
        f'{versus.shown_as} on the same model and task (train phase). Rank: "{NOT_RECORDED}" where the results do not '
        "record what ran (results without a run record, cells that have not run). Energy from NVML telemetry (GPU only). Share: trainable / total "
        "parameters, 4-bit weights counted at full size. Throughput: training samples and non-padding tokens per second. MFU: tokens/s x (4N + 2T, "
        "6N for full fine-tuning) / the GPU's dense bf16 peak (harness/train/mfu.py)." + comparability_note(chosen)
    )
    return Table(
        f"{TABLE_IDS[scoring]}_efficiency",
        f"{SCORING_TITLES[scoring]}: efficiency",
        note,
        pd.DataFrame(data),
        _task_column_if_shared(pd.DataFrame(display)),
        flagged,
    )


# cells.csv: its columns (CellRow attributes), and the published names it keeps where they differ
# (the memory measure was first published as "..._peak_kind")
CELL_COLUMNS = (
    "task",
    "model",
    "method",
    "seed",
    "status",
    "cell_id",
    "rank",
    "learning_rate",
    "trainable_params",
    "total_params",
    "trainable_share",
    "train_peak_bytes",
    "train_peak_measure",
    "eval_peak_bytes",
    "eval_peak_measure",
    "gpu_mem_used_peak_bytes",
    "train_energy_j",
    "eval_energy_j",
    "train_samples_per_s",
    "train_tokens_per_s",
    "mfu",
    "train_wall_s",
    "eval_wall_s",
    "error",
    "folder",
    "source",
    "run_recorded",  # added after the others: columns read by position keep their place
)
PUBLISHED_CELL_COLUMNS = {"train_peak_measure": "train_peak_kind", "eval_peak_measure": "eval_peak_kind"}


def cells_table(groups: list[Group]) -> Table:
    """Every cell, one row each, raw figures (the tables above aggregate these)."""
    metric_names = list(dict.fromkeys(m for columns in QUALITY.values() for m in columns))
    columns = [PUBLISHED_CELL_COLUMNS.get(k, k) for k in CELL_COLUMNS]
    data = []
    for group in groups:
        for row in group.rows:
            values = asdict(row)
            record = {name: values[k] for name, k in zip(columns, CELL_COLUMNS)}
            record.update({m: row.metrics.get(m) for m in metric_names})
            data.append(record)
    frame = pd.DataFrame(data, columns=[*columns, *metric_names])
    display = frame[["task", "model", "method", "seed", "status"]].copy()
    return Table("cells", "Every cell", "One row per planned cell.", frame, display)


def not_finished_table(groups: list[Group]) -> Table:
    data = [
        {
            "task": r.task,
            "model": r.model,
            "method": r.method,
            "seed": r.seed,
            "status": r.status,
            "cell_id": r.cell_id,
            "error": r.error or "",
            "folder": r.folder or "",
        }
        for g in groups
        for r in g.rows
        if not r.finished
    ]
    frame = pd.DataFrame(data, columns=["task", "model", "method", "seed", "status", "cell_id", "error", "folder"])
    display = frame[["task", "model", "method", "seed", "status", "error"]].rename(columns=str.capitalize)
    note = (
        "Cells without a successful result: failed, diverged (training stopped at a non-finite or exploded loss), "
        "out of memory (oom), timed out, cancelled, still running, "
        "missing (never wrote result.json), or corrupt (a file of the cell folder is not what the harness wrote; "
        "harness matrix --retry-failed runs it again). "
        'They count in the tables\' "Seeds" column and mark their rows.'
    )
    return Table("not_finished", "Not finished", note, frame, display, [True] * len(frame))
