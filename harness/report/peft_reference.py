"""The report's table beside peft's own published figures (``harness report --peft-results DIR``).

peft's ``method_comparison/MetaMathQA`` benchmark writes one JSON file per experiment,
``<method>--<name>.json`` (its ``run_info.experiment_name`` is ``<method>/<name>``). A harness cell
says which experiment it reproduces with its config tag ``peft_experiment`` (either spelling);
its rows are set beside that file's trainable parameters, test accuracy, forgetting, per-step
memory and train time, with the difference harness − peft where both sides have the figure.

The files are read with a small typed reader: extra fields are allowed (peft adds some now and
then), a file over a few MB or one that is not such a result is refused in one line naming it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.errors import ConfigError, error_line, shorten
from harness.report.load import HEADLINE, CellRow
from harness.report.stats import Summary, difference, mean, summarize
from harness.report.tables import DASH, GIB, NOT_FINISHED_MARK, Table, fmt_ci, fmt_count, fmt_num, fmt_signed_ci
from harness.safeyaml import YamlRefused, read_bounded

MAX_FILE_BYTES = 8 << 20  # peft's files are 14-80 KB (AdaLoRA's rank pattern is the largest)
PEFT_SUCCESS = "success"
RESERVED = "reserved"  # the harness's per-step measure on a GPU, the one peft's figures use
TABLE_NAME = "peft_comparison"


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class PeftTrainInfo(_Open):
    status: str
    num_trainable_params: int | None = None
    num_total_params: int | None = None
    metrics: list[dict[str, Any]] = Field(default_factory=list)  # 20 validation entries, then the test one
    accelerator_memory_reserved_avg: float | None = None
    accelerator_memory_reserved_99th: float | None = None
    accelerator_memory_max: float | None = None
    train_time: float | None = None
    file_size: int | None = None


class PeftRunInfo(_Open):
    experiment_name: str | None = None
    total_time: float | None = None
    train_config: dict[str, Any] = Field(default_factory=dict)
    peft_config: dict[str, Any] | None = None  # null for full fine-tuning
    peft_worktree_is_dirty: bool | None = None  # absent from files written before peft recorded it


class PeftMetaInfo(_Open):
    package_info: dict[str, str | None] = Field(default_factory=dict)
    system_info: dict[str, Any] = Field(default_factory=dict)


class PeftResult(_Open):
    """One of peft's result files, the fields this table reads."""

    run_info: PeftRunInfo
    train_info: PeftTrainInfo
    meta_info: PeftMetaInfo = Field(default_factory=PeftMetaInfo)

    @property
    def final(self) -> dict[str, Any]:
        return self.train_info.metrics[-1] if self.train_info.metrics else {}

    @property
    def test_accuracy(self) -> float | None:
        return _float(self.final.get("test accuracy"))

    @property
    def forgetting(self) -> float | None:
        return _float(self.final.get("forgetting"))

    @property
    def peft_type(self) -> str | None:
        return (self.run_info.peft_config or {}).get("peft_type")


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def experiment_key(name: str) -> str:
    """``lora/llama-3.2-3B-rank32`` and ``lora--llama-3.2-3B-rank32`` (the file's stem) alike."""
    return name.strip().removesuffix(".json").replace("/", "--")


def read_peft_result(path: Path) -> PeftResult:
    """One file, or :class:`ConfigError` in one line naming it."""
    try:
        raw = read_bounded(path, MAX_FILE_BYTES, "peft's result files are under 100 KB")
        return PeftResult.model_validate(json.loads(raw))
    except YamlRefused as error:
        raise ConfigError(f"peft result {path}: {error}") from None
    except OSError as error:
        raise ConfigError(f"peft result {path}: cannot read it ({error.strerror or error_line(error)})") from None
    except json.JSONDecodeError as error:
        raise ConfigError(f"peft result {path}: malformed JSON: {error.msg} (line {error.lineno})") from None
    except ValidationError as error:  # a missing or mistyped field
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the file"
        raise ConfigError(
            f"peft result {path}: not a peft method_comparison result file ({where}: {first['msg']})"
        ) from None
    except (ValueError, RecursionError) as error:  # not UTF-8, nested beyond the parser
        raise ConfigError(f"peft result {path}: cannot read it ({error_line(error)})") from None


def read_peft_results(location: str | Path) -> dict[str, PeftResult]:
    """peft's result files in a folder (``*.json``, not its subfolders), or one file, by experiment
    key. A missing folder, one without any such file, or a malformed file: :class:`ConfigError`."""
    path = Path(location).expanduser()
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(p for p in path.glob("*.json") if p.is_file())
        if not files:
            raise ConfigError(f"--peft-results {shorten(str(location))}: no peft result files (*.json) in it")
    else:
        raise ConfigError(
            f"--peft-results {shorten(str(location))}: no such folder (give the folder of peft's result files, "
            "method_comparison/MetaMathQA/results)"
        )
    results: dict[str, PeftResult] = {}
    for file in files:
        result = read_peft_result(file)
        results[experiment_key(file.stem)] = result
        if result.run_info.experiment_name:  # a temporary_results file's stem carries a timestamp
            results.setdefault(experiment_key(result.run_info.experiment_name), result)
    return results


@dataclass
class _Experiment:
    experiment: str
    task: str
    model: str
    rows: list[CellRow] = field(default_factory=list)

    @property
    def ok(self) -> list[CellRow]:
        return [r for r in self.rows if r.finished]

    def mean(self, attribute: str) -> float | None:
        return mean([getattr(r, attribute) for r in self.ok])


def _experiments(rows: Iterable[CellRow]) -> list[_Experiment]:
    groups: dict[tuple[str, str, str], _Experiment] = {}
    for row in rows:
        if row.peft_experiment:
            key = (experiment_key(row.peft_experiment), row.task, row.model)
            groups.setdefault(key, _Experiment(*key)).rows.append(row)
    return list(groups.values())


def _delta(a: float | None, b: float | None) -> float | None:
    return a - b if a is not None and b is not None else None


def _gib(value: float | None) -> str:
    return fmt_num(None if value is None else value / GIB)


def _signed(value: float | None, digits: int, scale: float = 1.0) -> str:
    return DASH if value is None else f"{value * scale:+,.{digits}f}"


def planned_trainable(matrix: Any, rows: list[CellRow]) -> dict[str, int]:
    """{cell id: trainable parameters as the plan counts them (offline, on the meta device)} for the
    tagged cells that have no counted result, so that a matrix compares with peft's counts before
    it runs (``harness plan`` keeps the counts in ``$HARNESS_CACHE``, so this is mostly a lookup)."""
    from harness.matrix.params import ParamCounter

    wanted = {r.cell_id for r in rows if r.peft_experiment and r.trainable_params is None}
    counter = ParamCounter()
    counts = {}
    for cell in matrix.active:
        if cell.cell_id in wanted:
            count = counter(cell.config)
            if count.trainable is not None:
                counts[cell.cell_id] = count.trainable
    return counts


def peft_table(rows: list[CellRow], peft: dict[str, PeftResult], planned: dict[str, int] | None = None) -> Table | None:
    """One row per (experiment, task, model) of the cells tagged ``peft_experiment``; None when
    no cell is tagged. ``planned``: trainable counts of cells without a result (:func:`planned_trainable`),
    shown where no seed of an experiment has counted its own."""
    planned = planned or {}
    experiments = _experiments(rows)
    if not experiments:
        return None
    data, display, flagged = [], [], []
    matched: set[int] = set()
    for exp in experiments:
        ref = peft.get(exp.experiment)
        matched |= {id(ref)} if ref else set()
        headline = HEADLINE.get(exp.rows[0].scoring)
        accuracy = summarize([r.metrics.get(headline) if headline else None for r in exp.ok])
        forgetting = summarize([r.forgetting for r in exp.ok])
        trainable = next((r.trainable_params for r in exp.ok if r.trainable_params is not None), None)
        source = "result" if trainable is not None else None
        if trainable is None:
            trainable = next((planned[r.cell_id] for r in exp.rows if r.cell_id in planned), None)
            source = "planned" if trainable is not None else None
        measures = {r.train_step_memory_measure for r in exp.ok} - {None}
        measure = measures.pop() if len(measures) == 1 else ("mixed" if measures else None)
        memory = {
            name: exp.mean(f"train_step_memory_{name}_bytes") if measure else None for name in ("avg", "p99", "max")
        }
        train_s = exp.mean("train_wall_s")
        info = ref.train_info if ref else None
        peft_memory = {
            "avg": info.accelerator_memory_reserved_avg if info else None,
            "p99": info.accelerator_memory_reserved_99th if info else None,
            "max": info.accelerator_memory_max if info else None,
        }
        peft_accuracy = ref.test_accuracy if ref else None
        peft_forgetting = ref.forgetting if ref else None
        peft_trainable = info.num_trainable_params if info else None
        peft_time = info.train_time if info else None
        # memory compares only where the harness sampled the same measure (a GPU's reserved bytes)
        comparable_memory = measure == RESERVED
        acc_delta = difference(accuracy, Summary(1, peft_accuracy))
        forget_delta = difference(forgetting, Summary(1, peft_forgetting))
        status = _status(exp, ref)
        raw: dict[str, Any] = {
            "peft_experiment": exp.experiment,
            "task": exp.task,
            "model": exp.model,
            "methods": ",".join(sorted({r.method for r in exp.rows})),
            "seeds_finished": len(exp.ok),
            "seeds_planned": len(exp.rows),
            "trainable_params": trainable,
            "trainable_params_source": source,  # result | planned (counted offline, the cell has not run)
            "peft_trainable_params": peft_trainable,
            "trainable_params_diff": _delta(trainable, peft_trainable),
            "test_accuracy_metric": headline,
            "test_accuracy_mean": accuracy.mean,
            "test_accuracy_ci95": accuracy.half_width,
            "peft_test_accuracy": peft_accuracy,
            "test_accuracy_diff": acc_delta.mean,
            "test_accuracy_diff_ci95": acc_delta.half_width,
            "forgetting_mean": forgetting.mean,
            "forgetting_ci95": forgetting.half_width,
            "peft_forgetting": peft_forgetting,
            "forgetting_diff": forget_delta.mean,
            "forgetting_diff_ci95": forget_delta.half_width,
            "step_memory_measure": measure,
        }
        for name in ("avg", "p99", "max"):
            raw[f"step_memory_{name}_bytes"] = memory[name]
            raw[f"peft_memory_{name}_bytes"] = peft_memory[name]
            raw[f"memory_{name}_diff_bytes"] = _delta(memory[name], peft_memory[name]) if comparable_memory else None
        raw.update(
            {
                "train_wall_s": train_s,
                "peft_train_time_s": peft_time,
                "train_time_diff_s": _delta(train_s, peft_time),
                "peft_status": info.status if info else None,
                "peft_peft_type": ref.peft_type if ref else None,
                "peft_worktree_is_dirty": ref.run_info.peft_worktree_is_dirty if ref else None,
                "peft_version": ref.meta_info.package_info.get("peft-version") if ref else None,
                "peft_accelerator": ref.meta_info.system_info.get("accelerator") if ref else None,
                "status": status.removeprefix(f"{NOT_FINISHED_MARK} "),
            }
        )
        shown = {
            "Experiment": exp.experiment,
            "Task": exp.task,
            "Model": exp.model,
            "Seeds": f"{len(exp.ok)}/{len(exp.rows)}",
            "Trainable": fmt_count(trainable) + (" (planned)" if source == "planned" else ""),
            "Trainable (peft)": fmt_count(peft_trainable),
            "Δ trainable": _signed(raw["trainable_params_diff"], 0),
            "Test acc.": fmt_ci(accuracy),
            "Test acc. (peft)": DASH if peft_accuracy is None else f"{100 * peft_accuracy:.2f}",
            "Δ test acc.": fmt_signed_ci(acc_delta),
            "Forgetting": fmt_ci(forgetting, scale=1.0, digits=4),
            "Forgetting (peft)": fmt_num(peft_forgetting, 4),
            "Δ forgetting": fmt_signed_ci(forget_delta, scale=1.0, digits=4),
            "Memory measure": measure or DASH,
        }
        for name, label in (("avg", "avg"), ("p99", "p99"), ("max", "max")):
            shown[f"Mem {label} (GiB)"] = _gib(memory[name])
            shown[f"Mem {label} (peft)"] = _gib(peft_memory[name])
            shown[f"Δ mem {label}"] = _signed(raw[f"memory_{name}_diff_bytes"], 2, 1 / GIB)
        shown.update(
            {
                "Train s": fmt_num(train_s, 0),
                "Train s (peft)": fmt_num(peft_time, 0),
                "Δ train s": _signed(raw["train_time_diff_s"], 0),
                "Status": status or "ok",
            }
        )
        data.append(raw)
        display.append(shown)
        flagged.append(bool(status))
    frame = pd.DataFrame(display)
    if frame["Task"].nunique() == 1:
        frame = frame.drop(columns="Task")
    return Table(
        TABLE_NAME,
        "Beside peft's published results",
        _note(experiments, peft, matched),
        pd.DataFrame(data),
        frame,
        flagged,
    )


def _status(exp: _Experiment, ref: PeftResult | None) -> str:
    parts = []
    unfinished: dict[str, int] = {}
    for row in exp.rows:
        if not row.finished:
            unfinished[row.status] = unfinished.get(row.status, 0) + 1
    parts += [f"{n} {s}" for s, n in sorted(unfinished.items())]
    if ref is None:
        parts.append("no peft result")
    elif ref.train_info.status != PEFT_SUCCESS:
        parts.append(f"peft run {ref.train_info.status}")
    if ref is not None and ref.run_info.peft_worktree_is_dirty:
        parts.append("peft run from a dirty tree")
    return f"{NOT_FINISHED_MARK} " + ", ".join(parts) if parts else ""


def _note(experiments: list[_Experiment], peft: dict[str, PeftResult], matched: set[int]) -> str:
    unique = {id(r): r for r in peft.values()}
    unmatched = len(unique) - len(matched)
    versions = sorted(
        {
            " ".join(
                f"{name} {r.meta_info.package_info.get(f'{name}-version') or '?'}"
                for name in ("peft", "transformers", "torch")
            )
            + f" on {r.meta_info.system_info.get('accelerator') or '?'}"
            for r in unique.values()
            if id(r) in matched
        }
    )
    return (
        "Cells tagged peft_experiment beside peft's result file of that experiment (its "
        "method_comparison/MetaMathQA results): harness figures are means over finished seeds (test accuracy and "
        "forgetting ± the 95 % interval, in points and nats); peft ran each experiment once. Δ: harness − peft. "
        'Trainable "(planned)": counted offline as harness plan counts it, for an experiment none of whose cells has run. '
        "Test accuracy: the task's headline metric against peft's metrics[-1][\"test accuracy\"]. Forgetting: "
        "after − before mean cross-entropy on a general-text sample (peft: 100 finewiki articles). "
        "Memory: per-step reserved bytes after each optimizer step, average, 99th percentile and maximum; peft "
        "subtracts what was reserved before the model loaded and its maximum is the whole run's peak (evaluation "
        "and the checkpoint save included), the harness's figures are absolute and its maximum is the train steps' "
        "own, so Δ is shown only for a GPU's reserved memory (not for a CPU's RSS). Train time: the harness's train "
        "phase; peft's train_time also counts data loading, both forgetting passes and the test-set generation "
        "(validation excluded)."
        + (f" peft's matched files ran under {'; '.join(versions)}." if versions else "")
        + (f" {unmatched} peft result file(s) match no cell of this report." if unmatched > 0 else "")
    )
