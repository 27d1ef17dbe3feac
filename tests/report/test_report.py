"""`harness report` from REAL results: a small CPU matrix is run once (module fixture),
with two seeds, a failed cell (bad model_args) and a missing one (never run)."""

from __future__ import annotations

import math
import re
import statistics
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from harness.matrix import load_matrix
from harness.report import build_report
from harness.report.pareto import Point, frontier
from harness.report.stats import Summary, difference, summarize, t_quantile
from harness.result import load_result

T_975_1 = 12.706204736  # Student t, 97.5 % quantile, 1 degree of freedom

MATRIX = {
    "name": "reporttest",
    "models": ["tiny-bert", "tiny-t5"],
    "methods": ["zeroshot", "lora", "ia3", "full"],
    "tasks": ["emotion"],
    "seeds": [0, 1],
    "grids": [  # tiny-t5 on emotion is text-to-text, so it has a zero-shot baseline
        {"models": ["tiny-bert"], "methods": ["lora", "ia3", "full"]},
        {"models": ["tiny-t5"], "methods": ["zeroshot", "lora"]},
    ],
    "defaults": {
        "train": {"max_steps": 3, "batch_size": 4, "eval_batch_size": 16, "progress_bar": False, "log_every": 1},
        "data": {
            "max_train_samples": 16,
            "max_eval_samples": 16,
            "max_source_tokens": 64,
            "max_target_tokens": 8,
            "max_new_tokens": 4,
        },
        "telemetry": {"enabled": True, "interval_s": 0.5},
    },
    "overrides": [
        {"match": {"method": "lora"}, "set": {"train.learning_rate": 1.0e-2}},
        # an unknown keyword for the model class: loading raises, the cell ends "failed"
        {"match": {"model": "tiny-bert", "method": "full", "seed": 1}, "set": {"model_args": {"no_such_kwarg": 1}}},
    ],
}
NEVER_RUN = ("tiny-bert", "ia3", 1)


@pytest.fixture(scope="module")
def matrix_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from harness.cell import run_cell

    root = tmp_path_factory.mktemp("report")
    path = root / "reporttest.yaml"
    path.write_text(yaml.safe_dump({**MATRIX, "output_dir": str(root / "out")}))
    for cell in load_matrix(path).active:
        if (cell.model, cell.method, cell.seed) != NEVER_RUN:
            run_cell(cell.config)
    return path


@pytest.fixture(scope="module")
def report(matrix_file: Path) -> Path:
    return build_report(matrix_file)


@pytest.fixture(scope="module")
def results(matrix_file: Path) -> dict[tuple[str, str, int], Any]:
    """(model, method, seed) -> Result, for every cell that wrote one."""
    out = {}
    for cell in load_matrix(matrix_file).active:
        if (cell.folder / "result.json").is_file():
            out[cell.model, cell.method, cell.seed] = load_result(cell.folder)
    return out


def _row(frame: pd.DataFrame, model: str, method: str) -> pd.Series:
    rows = frame[(frame["model"] == model) & (frame["method"] == method)]
    assert len(rows) == 1, (model, method)
    return rows.iloc[0]


def test_report_files(report: Path, matrix_file: Path):
    assert report == load_matrix(matrix_file).output_dir / "report"
    for name in (
        "report.md",
        "report.html",
        "cells.csv",
        "classification_quality.csv",
        "classification_efficiency.csv",
        "not_finished.csv",
    ):
        assert (report / name).is_file(), name
    assert not (report / "summarization_quality.csv").exists()  # no summarization cells in this matrix
    plots = sorted((report / "plots").glob("*.png"))
    names = {p.name for p in plots}
    # tiny-bert has three trained methods; tiny-t5 only one (zero-shot is the dashed line)
    assert {"pareto_emotion_tiny-bert_params.png", "pareto_emotion_tiny-bert_memory.png"} <= names
    assert "pareto_emotion_tiny-bert_energy.png" not in names  # no NVML on a CPU
    for plot in plots:
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_loss_curves_per_model_and_task(report: Path, results):
    """Every trained (task, model) gets a training-loss plot, drawn from the results' loss histories."""
    assert {"loss_emotion_tiny-bert.png", "loss_emotion_tiny-t5.png"} <= {
        p.name for p in (report / "plots").glob("loss_*")
    }
    trained = [r for (model, method, seed), r in results.items() if method != "zeroshot" and r.status == "success"]
    assert trained and all(len(r.efficiency.loss_history) == 3 for r in trained)  # one per step, 3 steps
    markdown, page = (report / "report.md").read_text(), (report / "report.html").read_text()
    assert "## Training loss" in markdown and "plots/loss_emotion_tiny-bert.png" in markdown
    assert "<h2>Training loss</h2>" in page and page.count('alt="emotion / tiny-bert: training loss"') == 1


def test_quality_values_are_the_results(report: Path, results):
    table = pd.read_csv(report / "classification_quality.csv")
    cells = pd.read_csv(report / "cells.csv")
    for model, method in (
        ("tiny-bert", "lora"),
        ("tiny-bert", "ia3"),
        ("tiny-bert", "full"),
        ("tiny-t5", "zeroshot"),
        ("tiny-t5", "lora"),
    ):
        finished = [r for (mo, me, _), r in results.items() if (mo, me) == (model, method) and r.status == "success"]
        row = _row(table, model, method)
        assert row["seeds_finished"] == len(finished) and row["seeds_planned"] == 2
        for metric in ("accuracy", "precision_macro", "recall_macro", "f1_macro"):
            assert row[f"{metric}_mean"] == pytest.approx(
                statistics.fmean(r.metrics[metric] for r in finished), abs=1e-12
            )
    for (model, method, seed), result in results.items():
        cell = cells[(cells["model"] == model) & (cells["method"] == method) & (cells["seed"] == seed)].iloc[0]
        assert cell["status"] == result.status and cell["cell_id"] == result.cell_id
        if result.status == "success":
            assert cell["f1_macro"] == result.metrics["f1_macro"]
            assert cell["trainable_params"] == result.efficiency.trainable_params
            assert cell["eval_peak_bytes"] == result.efficiency.phases["eval"].peak_rss_bytes  # CPU: RSS
            assert cell["eval_peak_kind"] == "rss"


def test_efficiency_values_are_the_results(report: Path, results):
    table = pd.read_csv(report / "classification_efficiency.csv")
    lora = [results["tiny-bert", "lora", s] for s in (0, 1)]
    ia3 = results["tiny-bert", "ia3", 0]
    row = _row(table, "tiny-bert", "ia3")
    assert row["trainable_params"] == ia3.efficiency.trainable_params
    assert row["trainable_share"] == pytest.approx(ia3.efficiency.trainable_share)
    assert row["train_peak_bytes"] == ia3.efficiency.phases["train"].peak_rss_bytes
    assert row["train_peak_measure"] == "rss"
    assert row["train_samples_per_s"] == pytest.approx(ia3.efficiency.train_samples_per_s)
    lora_peak = statistics.fmean(r.efficiency.phases["train"].peak_rss_bytes for r in lora)
    assert row["train_memory_vs_lora"] == pytest.approx(ia3.efficiency.phases["train"].peak_rss_bytes / lora_peak)
    assert _row(table, "tiny-bert", "lora")["rank"] == "8"  # the registry default: the matrix set no r
    assert _row(table, "tiny-bert", "full")["rank"] == "all"
    assert math.isnan(_row(table, "tiny-t5", "zeroshot")["train_peak_bytes"])  # no train phase: not a zero
    assert _row(table, "tiny-t5", "zeroshot")["eval_peak_bytes"] > 0


def test_confidence_interval_uses_t_with_n_minus_1(report: Path, results):
    assert t_quantile(1) == pytest.approx(T_975_1, rel=1e-9)
    table = pd.read_csv(report / "classification_quality.csv")
    row = _row(table, "tiny-bert", "lora")
    checked = 0
    for metric in ("accuracy", "f1_macro", "precision_macro", "recall_macro"):
        values = [results["tiny-bert", "lora", s].metrics[metric] for s in (0, 1)]
        s = statistics.stdev(values)
        assert row[f"{metric}_ci95"] == pytest.approx(T_975_1 * s / math.sqrt(2), rel=1e-9, abs=1e-15)
        assert row[f"{metric}_low"] == pytest.approx(statistics.fmean(values) - T_975_1 * s / math.sqrt(2))
        checked += s > 0
    assert checked, "the two seeds gave identical figures; the interval check would be vacuous"
    # one finished seed (the other failed): a mean, no interval, and the table says so
    full = _row(table, "tiny-bert", "full")
    assert full["seeds_finished"] == 1 and math.isnan(full["f1_macro_ci95"])
    markdown = (report / "report.md").read_text()
    line = next(row for row in markdown.splitlines() if row.startswith("| tiny-bert | full |"))
    assert "± —" in line and "1/2" in line


def test_gain_over_zero_shot(report: Path, results):
    table = pd.read_csv(report / "classification_quality.csv")
    lora = statistics.fmean(results["tiny-t5", "lora", s].metrics["f1_macro"] for s in (0, 1))
    zeroshot = statistics.fmean(results["tiny-t5", "zeroshot", s].metrics["f1_macro"] for s in (0, 1))
    assert _row(table, "tiny-t5", "lora")["f1_macro_gain_vs_zeroshot"] == pytest.approx(lora - zeroshot, abs=1e-12)
    assert math.isnan(_row(table, "tiny-bert", "lora")["f1_macro_gain_vs_zeroshot"])  # no zero-shot for a cls head


def test_failed_and_missing_cells_are_listed(report: Path, results):
    assert results["tiny-bert", "full", 1].status == "failed"
    assert ("tiny-bert", "ia3", 1) not in results
    unfinished = pd.read_csv(report / "not_finished.csv")
    assert sorted(zip(unfinished["method"], unfinished["seed"], unfinished["status"])) == [
        ("full", 1, "failed"),
        ("ia3", 1, "missing"),
    ]
    assert "no_such_kwarg" in unfinished[unfinished["status"] == "failed"]["error"].iloc[0]
    table = pd.read_csv(report / "classification_quality.csv")
    assert _row(table, "tiny-bert", "full")["not_finished"] == "1 failed"
    assert _row(table, "tiny-bert", "ia3")["not_finished"] == "1 missing"
    markdown = (report / "report.md").read_text()
    section = markdown.split("## Not finished", 1)[1]
    assert "| tiny-bert | full | 1 | failed |" in section and "| tiny-bert | ia3 | 1 | missing |" in section
    assert next(row for row in markdown.splitlines() if row.startswith("| tiny-bert | ia3 |")).endswith("⚠ 1 missing |")
    cells = pd.read_csv(report / "cells.csv")
    assert len(cells) == 10  # every planned cell, finished or not


def test_html_is_self_contained(report: Path):
    page = (report / "report.html").read_text()
    sources = re.findall(r"""\b(?:src|href)\s*=\s*["']([^"']*)""", page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<link" not in page and "<script" not in page and "url(" not in page
    assert page.count("<img") == len(list((report / "plots").glob("*.png")))
    assert 'class="flag"' in page and "Not finished" in page


@pytest.mark.slow  # MLflow creates its SQLite schema: ~20-30 s on two shared cores
def test_report_from_mlflow_and_logged_to_parent(matrix_file: Path, report: Path, tmp_path: Path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from harness.tracking.collect import collect

    collected = collect(matrix_file)
    assert collected.ok, collected.errors
    # the file-based report again: now there is a parent run to attach it to
    build_report(matrix_file)
    client = MlflowClient(tracking_uri=collected.uri)
    logged = {a.path for a in client.list_artifacts(collected.parent_run_id, "report")}
    assert {"report/report.html", "report/report.md", "report/classification_quality.csv"} <= logged
    # the same report read back from MLflow (result.json artifacts), exactly the matrix's cells
    folder = build_report(matrix_file, experiment=collected.experiment, output=tmp_path / "from-mlflow")
    assert folder == tmp_path / "from-mlflow"
    for name in ("classification_quality.csv", "classification_efficiency.csv", "not_finished.csv"):
        from_files = pd.read_csv(report / name)
        from_mlflow = pd.read_csv(folder / name)
        pd.testing.assert_frame_equal(
            from_files.drop(columns=["folder"], errors="ignore"), from_mlflow.drop(columns=["folder"], errors="ignore")
        )

    # runs without a result.json artifact: rebuilt from metrics, params and tags alone
    import harness.report.mlflow_source as source

    real_client_for = source.client_for

    def without_artifacts(uri: str) -> Any:
        client = real_client_for(uri)
        client.list_artifacts = lambda run_id, path=None: []
        return client

    monkeypatch.setattr(source, "client_for", without_artifacts)
    folder = build_report(matrix_file, experiment=collected.experiment, output=tmp_path / "from-metrics")
    for name in ("classification_quality.csv", "classification_efficiency.csv"):
        expected = pd.read_csv(report / name)
        if "baseline" in expected:  # the baselines need the confusion matrix, which only result.json holds
            expected = expected[expected["baseline"] != True].drop(columns=["baseline"]).reset_index(drop=True)  # noqa: E712
        pd.testing.assert_frame_equal(expected, pd.read_csv(folder / name), check_dtype=False)  # NaN seeds made floats


def test_classification_tables_show_the_majority_and_chance_baselines(report: Path, results):
    quality = pd.read_csv(report / "classification_quality.csv")
    baselines = quality[quality["baseline"] == True]  # noqa: E712
    counts = next(iter(results.values())).reports["confusion_matrix"]
    per_class = {name: sum(row) for name, row in zip(counts["labels"], counts["matrix"])}
    top, total = max(per_class, key=per_class.get), sum(per_class.values())
    majority = baselines[baselines["method"].str.startswith(f"majority class ({top}")].iloc[0]
    assert majority["accuracy_mean"] == pytest.approx(per_class[top] / total)
    p = per_class[top] / total
    assert majority["f1_macro_mean"] == pytest.approx(2 * p / (1 + p) / 6)
    chance = baselines[baselines["method"] == "uniform chance"].iloc[0]
    assert chance["accuracy_mean"] == pytest.approx(1 / 6)
    assert "| — | uniform chance | — | 16.67 |" in (report / "report.md").read_text()


def test_logging_failure_does_not_fail_the_report(matrix_file: Path, tmp_path: Path, monkeypatch):
    import harness.report.mlflow_source as source

    monkeypatch.setattr(source, "client_for", lambda uri: (_ for _ in ()).throw(RuntimeError("tracking server down")))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    assert (build_report(matrix_file, output=tmp_path / "r") / "report.html").is_file()


def test_a_result_without_a_run_record_says_not_recorded(report: Path, matrix_file: Path, tmp_path: Path):
    """An old result.json (written before results kept a run record): the report does not derive
    the rank or learning rate again from today's defaults, it says they are not recorded."""
    import json

    from harness.report import load
    from harness.report.tables import efficiency_table, group_rows

    rows = []
    for cell in load_matrix(matrix_file).active:
        if (cell.folder / "result.json").is_file() and cell.model == "tiny-bert" and cell.seed == 0:
            data = json.loads((cell.folder / "result.json").read_text())
            assert data.pop("run")["learning_rate"] > 0
            (tmp_path / cell.method).mkdir()
            (tmp_path / cell.method / "old.json").write_text(json.dumps(data))
            rows.append(load.row_from_result(load_result(tmp_path / cell.method / "old.json")))
    by_method = {row.method: row for row in rows}
    assert set(by_method) == {"lora", "ia3", "full"} and not any(row.run_recorded for row in rows)
    assert by_method["lora"].rank == load.NOT_RECORDED and by_method["lora"].learning_rate is None
    assert by_method["full"].rank == "all"  # a fact of the method, not a setting
    table = efficiency_table(group_rows(rows), "classification")
    assert table is not None
    frame = table.data.set_index("method")
    assert frame.loc["lora", "rank"] == frame.loc["ia3", "rank"] == load.NOT_RECORDED
    assert frame["learning_rate"].isna().all()
    assert (table.display["Rank"] == load.NOT_RECORDED).sum() == 2
    # the file-based report, whose results record what ran, has the settings
    efficiency = pd.read_csv(report / "classification_efficiency.csv")
    assert _row(efficiency, "tiny-bert", "lora")["learning_rate"] == pytest.approx(1e-2)
    # a cell placeholder (never run) and an MLflow run without its params' run record: not recorded either
    flat = load.row_from_flat(
        cell_id="x",
        status="success",
        config={"model": "tiny-bert", "method": "ia3", "task": "emotion", "train": {"learning_rate": 3e-3}},
        flat={},
    )
    assert (flat.rank, flat.learning_rate, flat.run_recorded) == (load.NOT_RECORDED, None, False)


def test_corrupt_cells_are_listed_with_their_line(report: Path, matrix_file: Path, tmp_path: Path):
    """A copy of the matrix's output where one cell's result.json is ``[]``, one's has
    ``metrics: [1]``, one's confusion matrix is ``[1]`` and one's folder is a dangling symlink:
    the report is built, and lists the four as corrupt, each with its one line."""
    import json
    import shutil

    data = yaml.safe_load(matrix_file.read_text())
    data["output_dir"] = str(tmp_path / "out")
    copy = tmp_path / "copy.yaml"
    copy.write_text(yaml.safe_dump(data))
    shutil.copytree(Path(yaml.safe_load(matrix_file.read_text())["output_dir"]), tmp_path / "out", symlinks=True)
    cells = {(c.model, c.method, c.seed): c for c in load_matrix(copy).active}
    (cells["tiny-bert", "lora", 0].folder / "result.json").write_text("[]")
    target = cells["tiny-bert", "lora", 1].folder / "result.json"
    target.write_text(json.dumps({**json.loads(target.read_text()), "metrics": [1]}))
    target = cells["tiny-bert", "ia3", 0].folder / "result.json"  # valid JSON, a section the report reads is not
    target.write_text(json.dumps({**json.loads(target.read_text()), "reports": {"confusion_matrix": [1]}}))
    gone = cells["tiny-t5", "lora", 0].folder
    shutil.rmtree(gone)
    gone.symlink_to(tmp_path / "nowhere")

    folder = build_report(copy, output=tmp_path / "report")
    unfinished = pd.read_csv(folder / "not_finished.csv")
    corrupt = unfinished[unfinished["status"] == "corrupt"]
    assert sorted(zip(corrupt["model"], corrupt["method"], corrupt["seed"], corrupt["error"])) == [
        ("tiny-bert", "ia3", 0, "corrupt: result.json: AttributeError: 'list' object has no attribute 'get'"),
        ("tiny-bert", "lora", 0, "corrupt: result.json: a JSON array, not an object"),
        ("tiny-bert", "lora", 1, "corrupt: result.json: metrics: Input should be a valid dictionary"),
        ("tiny-t5", "lora", 0, f"corrupt: {gone.name}: a symlink to {tmp_path / 'nowhere'} that leads to no folder"),
    ]
    assert (
        "| tiny-bert | lora | 0 | corrupt | corrupt: result.json: a JSON array, not an object |"
        in (folder / "report.md").read_text()
    )


def test_a_method_this_peft_does_not_have_is_reported_like_any_other(results):
    """Results of a method an older peft had: no registry entry, still a row, a group and a point."""
    from dataclasses import replace

    from harness.report import load
    from harness.report.pareto import _points
    from harness.report.tables import efficiency_table, group_rows, quality_table

    result = results["tiny-bert", "lora", 0]
    row = replace(load.row_from_result(result), method="a_method_peft_dropped")
    rows = [row, load.row_from_result(result)]
    groups = group_rows(rows)
    assert [g.method for g in groups] == ["lora", "a_method_peft_dropped"]
    quality, efficiency = quality_table(groups, "classification"), efficiency_table(groups, "classification")
    assert quality is not None and efficiency is not None
    dropped = efficiency.data.set_index("method").loc["a_method_peft_dropped"]
    assert dropped["rank"] == "8" and dropped["train_memory_vs_lora"] == pytest.approx(1.0)
    assert {p.method for p in _points(groups, "params")} == {"lora", "a_method_peft_dropped"}


def test_tables_name_the_task_when_several_share_them():
    """Two generation tasks on one model: the displayed quality and efficiency tables get a Task
    column, so their rows no longer look the same; a table of one task keeps its columns."""
    from harness.report import load
    from harness.report.render import markdown_table
    from harness.report.tables import efficiency_table, group_rows, quality_table

    rows = [
        load.CellRow(
            cell_id=f"{task}-{seed}",
            task=task,
            model="tiny-llama",
            method="lora",
            seed=seed,
            status="success",
            scoring="exact_match",
            metrics={"exact_match": score},
        )
        for task, score in (("gsm8k_mine", 0.25), ("arith_mine", 0.5))
        for seed in (0, 1)
    ]
    groups = group_rows(rows)
    for table in (quality_table(groups, "exact_match"), efficiency_table(groups, "exact_match")):
        assert table is not None
        assert list(table.display.columns[:3]) == ["Task", "Model", "Method"]
        assert list(table.display["Task"]) == ["gsm8k_mine", "arith_mine"]
        text = markdown_table(table.display)
        assert "| gsm8k_mine | tiny-llama | lora |" in text and "| arith_mine | tiny-llama | lora |" in text
    one = group_rows([r for r in rows if r.task == "gsm8k_mine"])
    for table in (quality_table(one, "exact_match"), efficiency_table(one, "exact_match")):
        assert table is not None and "Task" not in table.display.columns and "task" in table.data.columns
        assert list(table.display.columns[:2]) == ["Model", "Method"]


# --------------------------------------------------------------------------- units


def test_summary_by_hand():
    s = summarize([0.5, 0.7])
    assert s.n == 2 and s.mean == pytest.approx(0.6)
    assert s.half_width == pytest.approx(T_975_1 * statistics.stdev([0.5, 0.7]) / math.sqrt(2))
    three = summarize([1.0, 2.0, 3.0])
    assert three.half_width == pytest.approx(4.302652730 * 1.0 / math.sqrt(3))  # t_{0.975,2}
    one = summarize([0.4, None])
    assert (one.n, one.mean, one.half_width) == (1, 0.4, None)
    assert summarize([]).mean is None


def test_difference():
    constant = Summary(1, 0.2)
    assert difference(summarize([0.5, 0.7]), constant).half_width == pytest.approx(summarize([0.5, 0.7]).half_width)
    welch = difference(summarize([0.5, 0.7, 0.6]), summarize([0.1, 0.2, 0.4]))
    assert welch.mean == pytest.approx(0.6 - 0.7 / 3) and welch.half_width > 0


def test_frontier():
    points = [Point("a", 10, 50), Point("b", 100, 40), Point("c", 1000, 60), Point("d", 5, 30), Point("e", 10, 45)]
    assert [p.method for p in frontier(points)] == ["d", "a", "c"]


# Measures every table of a page where Chromium laid it out, and leaves the figures in the DOM
# that --dump-dom prints (the report itself has no script).
_MEASURE = """<script>
const tables = [...document.querySelectorAll('table')].map(table => {
  const box = table.parentElement, style = getComputedStyle(box);
  return {columns: table.rows[0].cells.length, table_right: table.getBoundingClientRect().right,
          box_right: box.getBoundingClientRect().right, scrolls: ['auto', 'scroll'].includes(style.overflowX)};
});
const figures = {tables, page_width: document.documentElement.scrollWidth, viewport: window.innerWidth};
document.body.insertAdjacentHTML('beforeend', '<pre id="measure">' + JSON.stringify(figures) + '</pre>');
</script>"""


def _chromium_layout(page: Path, tmp_path: Path, width: int) -> dict[str, Any]:
    import json

    from browser import dump_dom

    measured = tmp_path / "measured.html"
    measured.write_text(page.read_text().replace("</body>", _MEASURE + "</body>"))
    dom = dump_dom(measured.as_uri(), tmp_path / "profile", width=width)
    found = re.findall(r'<pre id="measure">(\{.*?\})</pre>', dom, re.S)  # the script holds the tag too
    assert found, "no layout figures in Chromium's DOM"
    return json.loads(found[-1].replace("&quot;", '"'))


@pytest.mark.parametrize("width", [1400, 800])
def test_no_table_is_cut_off_in_a_real_browser(report: Path, tmp_path: Path, width: int) -> None:
    """report.html in headless Chromium: a table either fits the window or scrolls in its own box."""
    layout = _chromium_layout(report / "report.html", tmp_path, width)
    viewport = layout["viewport"]
    assert layout["tables"] and layout["page_width"] <= viewport, "the page itself must not overflow the window"
    for table in layout["tables"]:
        fits = table["table_right"] <= viewport + 1
        assert fits or (table["scrolls"] and table["box_right"] <= viewport + 1), table
    if width == 800:  # the efficiency tables are wider than that: the scrolling path is the one checked
        assert any(t["table_right"] > viewport for t in layout["tables"])
