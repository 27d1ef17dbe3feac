"""Data files as published, read through a task defined in a matrix: GLUE SST-2's TSV with a header
row, AG News's headerless CSV with quoted fields, and one-line refusals at plan time for a source
that cannot be read as declared. The fixtures are a few rows written here, in those layouts."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness.errors import ConfigError
from harness.matrix import load_matrix
from harness.tasks import load_split, task_of

SST2 = [
    ("it 's a charming and often affecting journey . ", 1),
    ("unflinchingly bleak and desperate ", 0),
    ("allows us to hope that nolan is poised to embark a major career , ", 1),
    ("the acting , costumes , music , cinematography and sound are all astounding ", 1),
    ("it 's slow -- very , very slow . ", 0),
    ("a sometimes tedious film . ", 0),
]
AG_NEWS = [
    ("2", "Wall St. Bears Claw Back Into the Black", "Short-sellers, Wall Street's dwindling band, are seeing green."),
    ("1", "Sox Win Again", "Boston beat New York, 5-3, on Sunday."),
    ("3", "New Chip, Faster", 'A "faster" chip, the maker said, ships in May.'),
    ("0", "Talks Resume", "Negotiators met again in Geneva."),
]
AG_LABELS = ["World", "Sports", "Business", "Sci/Tech"]


def _sst2(folder: Path) -> dict[str, str]:
    files = {}
    for split in ("train", "test"):
        path = folder / f"{split}.tsv"
        path.write_text("sentence\tlabel\n" + "".join(f"{text}\t{label}\n" for text, label in SST2))
        files[split] = str(path)
    return files


def _ag_news(folder: Path) -> dict[str, str]:
    files = {}
    for split in ("train", "test"):
        path = folder / f"{split}.csv"
        path.write_text(
            "".join(",".join(f'"{v.replace(chr(34), 2 * chr(34))}"' for v in row) + "\n" for row in AG_NEWS)
        )
        files[split] = str(path)
    return files


def _matrix(tmp_path: Path, task: dict) -> Path:
    path = tmp_path / "published.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "published",
                "output_dir": str(tmp_path / "out"),
                "models": ["tiny-bert"],
                "methods": ["lora"],
                "tasks": [task],
                "seeds": [0],
                "defaults": {"tracking": {"enabled": False}, "telemetry": {"enabled": False}},
            }
        )
    )
    return path


def _rows(path: Path, split: str) -> list[dict]:
    from harness.dispatch import commands

    commands.plan(path, with_status=False)  # the plan-time read: refusals come from here
    (cell,) = load_matrix(path).active
    return load_split(task_of(cell.config), cell.config.data, split, None)


def _sst2_task(tmp_path: Path, **source: object) -> dict:
    return {
        "name": "sst2",
        "kind": "classification",
        "labels": ["negative", "positive"],
        "source": {"files": _sst2(tmp_path), "fields": {"text": "sentence"}, **source},
    }


def _ag_task(tmp_path: Path, **source: object) -> dict:
    return {
        "name": "agnews",
        "kind": "classification",
        "labels": AG_LABELS,
        "source": {"files": _ag_news(tmp_path), "header": "none", "columns": ["label", "title", "text"], **source},
    }


def test_an_sst2_tsv_with_a_header_is_read_by_its_extension(tmp_path: Path) -> None:
    rows = _rows(_matrix(tmp_path, _sst2_task(tmp_path)), "test")
    assert [(r["text"], r["label"]) for r in rows] == SST2


def test_an_ag_news_headerless_csv_is_read_with_its_declared_columns(tmp_path: Path) -> None:
    rows = _rows(_matrix(tmp_path, _ag_task(tmp_path)), "train")
    assert [(r["label"], r["text"]) for r in rows] == [(int(label), text) for label, _, text in AG_NEWS]


def test_a_tsv_named_csv_is_read_with_an_explicit_format_or_delimiter(tmp_path: Path) -> None:
    task = _sst2_task(tmp_path)
    for split, name in task["source"]["files"].items():
        renamed = Path(name).with_suffix(".txt")
        Path(name).rename(renamed)
        task["source"]["files"][split] = str(renamed)
    assert len(_rows(_matrix(tmp_path, {**task, "source": {**task["source"], "format": "tsv"}}), "test")) == 6
    source = {**task["source"], "format": "csv", "delimiter": "\t"}
    assert len(_rows(_matrix(tmp_path, {**task, "source": source}), "test")) == 6


def test_the_id_of_a_source_without_read_options_is_unchanged(tmp_path: Path) -> None:
    from harness.config import CellConfig

    files = {"train": "a.csv", "test": "b.csv"}
    source = {"files": files, "fields": {"text": "x"}}
    plain = CellConfig(model="tiny-bert", method="lora", task="t", data={"source": source})
    assert plain.cell_id == "50c1bd71db74584c"  # its id before the read options existed
    tsv = CellConfig(model="tiny-bert", method="lora", task="t", data={"source": {**source, "format": "tsv"}})
    assert tsv.cell_id != plain.cell_id


def _refusal(path: Path) -> str:
    from harness.dispatch import commands

    with pytest.raises(ConfigError) as error:
        commands.plan(path, with_status=False)
    message = str(error.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"format": "xlsx"}, "unknown format 'xlsx'; valid: csv, tsv, jsonl, json, parquet"),
        ({"delimiter": "\t\t"}, "is not one character"),
        ({"header": "none"}, "header: none needs columns"),
        ({"columns": ["a", "b"]}, "give header: none with it"),
        ({"header": -1}, "header -1: a line number counts from 0; give first, none or the header's 0-based line"),
        ({"header": True}, "header 'True': give first, none or the header's 0-based line number"),
        ({"header": "second"}, "header 'second': give first, none or the header's 0-based line number"),
        ({"header": 2, "columns": ["a", "b"]}, "give header: none with it"),
        ({"label_base": -1}, "label_base -1 is negative; give the id the file gives the first class"),
        ({"encoding": "utf-9"}, "unknown encoding 'utf-9'"),
        ({"format": "jsonl", "delimiter": ","}, "delimiter and header are for csv and tsv files"),
    ],
)
def test_a_bad_read_option_is_one_line(tmp_path: Path, source: dict, message: str) -> None:
    assert message in _refusal(_matrix(tmp_path, _sst2_task(tmp_path, **source)))


def test_a_delimiter_that_yields_one_column_is_refused_naming_the_files_one(tmp_path: Path) -> None:
    message = _refusal(_matrix(tmp_path, _sst2_task(tmp_path, format="csv")))
    assert "delimiter ',' yields one column, but its first line has '\\t'; set data.source.delimiter: '\\t'" in message


def test_columns_that_do_not_match_the_files_fields_are_refused(tmp_path: Path) -> None:
    message = _refusal(_matrix(tmp_path, _ag_task(tmp_path, columns=["label", "text"])))
    assert "columns names 2 column(s) (label, text) but its first line has 3 field(s)" in message


def test_a_declared_column_the_file_lacks_lists_the_columns_found(tmp_path: Path) -> None:
    message = _refusal(_matrix(tmp_path, _ag_task(tmp_path, fields={"text": "description"})))
    assert "column 'description' (for agnews field 'text') not in split" in message
    assert "columns: label, title, text" in message


# --------------------------------------------------------------------------- header: N, label_base


def test_a_header_on_a_later_line_skips_the_lines_before_it(tmp_path: Path) -> None:
    task = _sst2_task(tmp_path)
    for name in task["source"]["files"].values():  # a preamble, as some exports carry
        Path(name).write_text("# SST-2, exported 2026-12-05\n# two lines before the header\n" + Path(name).read_text())
    rows = _rows(_matrix(tmp_path, {**task, "source": {**task["source"], "header": 2}}), "test")
    assert [(r["text"], r["label"]) for r in rows] == SST2


def test_header_line_zero_is_the_first_line_and_keeps_the_id(tmp_path: Path) -> None:
    from harness.config import CellConfig

    source = {"files": {"train": "a.csv", "test": "b.csv"}, "fields": {"text": "x"}}
    plain = CellConfig(model="tiny-bert", method="lora", task="t", data={"source": source})
    for same in ({"header": 0}, {"header": "first"}, {"label_base": 0}):
        again = CellConfig(model="tiny-bert", method="lora", task="t", data={"source": {**source, **same}})
        assert again.cell_id == plain.cell_id == "50c1bd71db74584c"
    later = CellConfig(model="tiny-bert", method="lora", task="t", data={"source": {**source, "header": 3}})
    based = CellConfig(model="tiny-bert", method="lora", task="t", data={"source": {**source, "label_base": 1}})
    assert len({plain.cell_id, later.cell_id, based.cell_id}) == 3


def test_a_header_beyond_the_file_is_refused_naming_its_line_count(tmp_path: Path) -> None:
    task = _sst2_task(tmp_path, header=7)  # the files have 7 lines: the header and 6 rows
    message = _refusal(_matrix(tmp_path, task))
    test_file = task["source"]["files"]["train"]
    assert f"data file {test_file}: header: 7 is beyond the file, which has 7 line(s)" in message
    assert "give the header's line number from 0 to 6" in message
    assert "header: 20 is beyond the file, which has 7 line(s)" in _refusal(
        _matrix(tmp_path, _sst2_task(tmp_path, header=20))
    )


# AG News as published: class ids 1..4 (World, Sports, Business, Sci/Tech), every one of them used
AG_NEWS_FROM_ONE = [(str(int(label) + 1), title, text) for label, title, text in AG_NEWS]


def _ag_from_one(tmp_path: Path, **source: object) -> dict:
    task = _ag_task(tmp_path, columns=["label", "title", "description"], fields={"text": "description"}, **source)
    for name in task["source"]["files"].values():
        Path(name).write_text(
            "".join(",".join(f'"{v.replace(chr(34), 2 * chr(34))}"' for v in row) + "\n" for row in AG_NEWS_FROM_ONE)
        )
    return task


def test_ag_news_ids_from_one_are_read_with_label_base(tmp_path: Path) -> None:
    from harness.cell import run_cell

    path = _matrix(tmp_path, _ag_from_one(tmp_path, label_base=1))
    rows = _rows(path, "test")
    assert [(r["label"], r["text"]) for r in rows] == [(int(label) - 1, text) for label, _, text in AG_NEWS_FROM_ONE]
    assert {r["label"] for r in rows} == {0, 1, 2, 3}  # Sci/Tech, the file's 4, is the last class
    (cell,) = load_matrix(path).active
    config = cell.config.model_copy(
        update={"train": cell.config.train.model_copy(update={"max_steps": 2, "batch_size": 2, "progress_bar": False})}
    )
    result = run_cell(config)
    assert result.status == "success", result.error
    assert result.run is not None and result.run.train_examples == result.run.eval_examples == len(AG_NEWS)


def test_ag_news_ids_from_one_without_label_base_name_the_fix(tmp_path: Path) -> None:
    message = _refusal(_matrix(tmp_path, _ag_from_one(tmp_path)))
    assert "label 4 outside 0..3; ids from 1 (as AG News's): set data.source.label_base: 1" in message


def test_a_label_below_the_label_base_is_refused(tmp_path: Path) -> None:
    message = _refusal(_matrix(tmp_path, _ag_task(tmp_path, label_base=1)))  # this file's ids are 0..3
    assert "label 0 outside 1..4" in message
