"""Load a task split as canonical rows, from the bundled copy, local files or the Hub."""

from __future__ import annotations

import csv
import json
import math
import random
from functools import lru_cache
from itertools import islice
from pathlib import Path
from typing import Any, NamedTuple

from harness.config import DataConfig, DataSource
from harness.errors import ConfigError
from harness.fingerprint import file_sha256
from harness.tasks.registry import HeldOut, TaskSpec

Row = dict[str, Any]


class SourceRow(dict[str, Any]):
    """A canonical row that keeps its index in its split as read (for a held-out slice: in the
    split it is carved from), before any sampling, so that ``predictions.jsonl`` can name the
    source row. Everything else sees the plain dict of its fields (and compares equal to one)."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index


def load_split(task: TaskSpec, data: DataConfig, split: str, limit: int | None, seed: int = 0) -> list[Row]:
    """Canonical rows (``task.fields``) of one split, at most ``limit`` of them.

    A limit takes a seeded random sample (the same for every method and model of a
    seed), not the first rows: BillSum and emotion files are ordered.
    """
    source = data.source or DataSource()
    held_out = task.held_out
    if data.train_source is not None and split == data.train_split:
        # another source's training rows (data.train_source): nothing of the task's own train
        # split is read, so no held-out slice is carved out of them
        source = data.train_source
        rows = [_canonical(task, source, row, split, i) for i, row in enumerate(_read_rows(task, source, split))]
    elif held_out is not None and split in (held_out.name, held_out.of):
        raw = _read_rows(task, source, held_out.of)
        carved = held_out_indices(len(raw), held_out)
        keep = carved if split == held_out.name else [i for i in range(len(raw)) if i not in set(carved)]
        rows = [_canonical(task, source, raw[i], split, i) for i in keep]
    else:
        raw = _read_rows(task, source, split)
        rows = [_canonical(task, source, row, split, index) for index, row in enumerate(raw)]
    if source.max_chars is not None:  # peft's filter, on the text as read (len(f"{query} {response}"))
        rows = [row for row in rows if len(" ".join(str(row[name]) for name in task.fields)) <= source.max_chars]
    if limit is not None and limit < len(rows):
        picked = sorted(
            random.Random(f"{sample_key(task, source, split)}/{split}/{seed}").sample(range(len(rows)), limit)
        )
        rows = [rows[i] for i in picked]
    if not rows:
        raise ConfigError(f"task {task.name!r}: split {split!r} is empty")
    return rows


def sample_key(task: TaskSpec, source: DataSource, split: str) -> str:
    """What a split's seeded sample is drawn from: the content of a local file (so that two
    tasks on one file score the same examples, and an edited file draws anew), else the task's
    name (bundled and Hub data: their samples, and so their finished cells' results, stay as
    they were before samples followed content)."""
    held_out = task.held_out
    read = held_out.of if held_out is not None and split in (held_out.name, held_out.of) else split
    if source.files and not source.hub_id and read in source.files:
        return file_sha256(Path(source.files[read]))
    return task.name


def held_out_indices(size: int, held_out: HeldOut) -> list[int]:
    """The rows of ``held_out.of`` that form the held-out split: a fixed share, drawn with its
    own seed (at least one row; the rest stay for training)."""
    if held_out.count is not None:
        if held_out.count >= size:
            raise ConfigError(
                f"validation count {held_out.count}: a held-out slice must leave training rows; "
                f"{held_out.of} has {size}"
            )
        count = held_out.count
    else:
        assert held_out.fraction is not None
        count = min(max(1, round(size * held_out.fraction)), size - 1)
    return sorted(random.Random(held_out.seed).sample(range(size), count))


def check_source(task: TaskSpec, data: DataConfig, splits: tuple[str, ...]) -> None:
    """Read and map every row of a user's local source (``data.source`` without ``hub_id``)
    for these splits, so that a missing file, a wrong field name or a bad row is refused at
    plan time rather than when the cell runs. Bundled and Hub data are not read here."""
    if data.source is None or data.source.hub_id:
        return
    for split in dict.fromkeys(splits):
        load_split(task, data, split, None)


def _read_rows(task: TaskSpec, source: DataSource, split: str) -> list[Row]:
    if source.files:
        if split not in source.files:
            raise ConfigError(f"data source has no file for split {split!r}; given: {', '.join(source.files)}")
        return read_table(Path(source.files[split]), _options(source))
    if source.hub_id:
        return _read_hub(source.hub_id, source.revision, split)
    if split not in task.bundled:
        raise ConfigError(f"task {task.name!r}: no bundled split {split!r}; bundled: {', '.join(task.bundled)}")
    return read_table(task.bundled[split])


# JSON nested past the parser's recursion limit ("[" * 100,000): refused in one line, not a traceback
TOO_DEEP = "nested deeper than Python can read (a data record is an object of plain fields)"


class ReadOptions(NamedTuple):
    """How a file is read (``data.source``'s format, delimiter, header, columns, encoding): hashable,
    so that it keys the read cache with the path."""

    format: str | None = None  # None: from the extension
    delimiter: str | None = None  # None: the format's (',' for csv, tab for tsv)
    header: str | int = "first"  # or the header's 0-based line
    columns: tuple[str, ...] | None = None
    encoding: str = "utf-8"


def _options(source: DataSource) -> ReadOptions:
    columns = tuple(source.columns) if source.columns is not None else None
    return ReadOptions(source.format, source.delimiter, source.header, columns, source.encoding)


# the delimiters a one-column read looks for, to name the one the file uses
_LIKELY_DELIMITERS = ("\t", ",", ";", "|")


PLAIN = ReadOptions()  # a file read by its extension, with a header row, as UTF-8


def read_table(path: Path, options: ReadOptions = PLAIN) -> list[Row]:
    """Rows of a JSONL/JSON/CSV/TSV/Parquet file. Callers must not mutate them: they are cached
    (per path, modification time and read options), since every cell of a matrix reads the same files."""
    if not path.is_file():
        raise ConfigError(f"data file not found: {path}")
    return _read_table_cached(str(path), path.stat().st_mtime_ns, options)


@lru_cache(maxsize=16)
def _read_table_cached(name: str, _mtime_ns: int, options: ReadOptions) -> list[Row]:
    path = Path(name)
    suffix = path.suffix.lower()
    kind = options.format or suffix.lstrip(".")
    if kind in ("jsonl", "json", "parquet") and (options.delimiter or options.header != "first"):
        raise ConfigError(f"data file {path}: delimiter and header are for csv and tsv files, not {kind}")
    try:
        if kind in ("jsonl", "json"):
            text = path.read_text(encoding=options.encoding)
            if kind == "json" and text.lstrip().startswith("["):
                return _objects(json.loads(text), path)
            return _objects(
                (_json_line(line, path, number) for number, line in enumerate(text.splitlines(), 1) if line.strip()),
                path,
            )
        import pandas as pd

        if kind in ("csv", "tsv"):
            return _read_delimited(path, kind, options)
        if kind == "parquet":
            return pd.read_parquet(path).to_dict("records")
    except ConfigError:
        raise  # a line or record already named (a ConfigError is a ValueError: not wrapped again below)
    except RecursionError:  # a .json document
        raise ConfigError(f"data file {path}: {TOO_DEEP}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"data file {path}: not {options.encoding} text (byte {error.start}); set data.source.encoding"
        ) from None
    except (ValueError, OSError) as error:
        raise ConfigError(
            f"cannot read data file {path}: {str(error).splitlines()[0] if str(error) else error}"
        ) from None
    raise ConfigError(
        f"data file {path}: unsupported format {suffix!r}; use .jsonl, .json, .csv, .tsv or .parquet, "
        "or set data.source.format"
    )


def _read_delimited(path: Path, kind: str, options: ReadOptions) -> list[Row]:
    """A CSV or TSV through pandas, with the source's delimiter, header and encoding. Its first line
    is checked first: a delimiter the file does not use (a TSV read as CSV) would make one column,
    or a pandas error about field counts; named columns must match the file's fields. ``header: N``
    reads line N (from 0, blank lines not counted, as pandas counts them) as the header, the lines
    before it skipped: a line beyond the file is refused."""
    import pandas as pd

    sep = options.delimiter or ("\t" if kind == "tsv" else ",")
    line = options.header if isinstance(options.header, int) else 0
    with path.open(encoding=options.encoding, newline="") as handle:
        lines = (fields for fields in csv.reader(handle, delimiter=sep) if fields)  # blank lines skipped
        before = sum(1 for _ in islice(lines, line))
        first = next(lines, None)
    if first is None and line:
        raise ConfigError(
            f"data file {path}: header: {line} is beyond the file, which has {before} line(s); "
            f"give the header's line number from 0 to {max(before - 1, 0)}"
        )
    if first is not None and len(first) == 1:
        used = [d for d in _LIKELY_DELIMITERS if d != sep and d in first[0]]
        if used:
            raise ConfigError(
                f"data file {path}: delimiter {sep!r} yields one column, but its first line has {used[0]!r}; "
                f"set data.source.delimiter: {used[0]!r}" + (" (or format: tsv)" if used[0] == "\t" else "")
            )
    if options.columns is not None and first is not None and len(first) != len(options.columns):
        raise ConfigError(
            f"data file {path}: columns names {len(options.columns)} column(s) ({', '.join(options.columns)}) "
            f"but its first line has {len(first)} field(s)"
        )
    if options.header == "none":
        frame = pd.read_csv(path, sep=sep, header=None, names=list(options.columns or ()), encoding=options.encoding)
    else:
        frame = pd.read_csv(path, sep=sep, header=line, encoding=options.encoding)
    records: list[Row] = frame.to_dict("records")
    return records


def _json_line(line: str, path: Path, number: int) -> Any:
    try:
        return json.loads(line)
    except RecursionError:
        raise ConfigError(f"data file {path} line {number}: {TOO_DEEP}") from None
    except ValueError as error:
        raise ConfigError(f"data file {path} line {number}: not JSON ({error})") from None


def _objects(rows: Any, path: Path) -> list[Row]:
    out = []
    for number, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise ConfigError(
                f"data file {path} record {number}: expected a JSON object with named fields, got {type(row).__name__}"
            )
        out.append(row)
    return out


def _read_hub(hub_id: str, revision: str | None, split: str) -> list[Row]:
    import datasets

    try:
        dataset = datasets.load_dataset(hub_id, revision=revision, split=split)
    except Exception as error:  # noqa: BLE001 - datasets raises many kinds; report one line
        raise ConfigError(f"cannot load Hub dataset {hub_id!r} split {split!r}: {str(error).splitlines()[0]}") from None
    return list(dataset)


def _canonical(task: TaskSpec, source: DataSource, row: Row, split: str, index: int) -> Row:
    unknown = set(source.fields) - set(task.fields)
    if unknown:
        raise ConfigError(
            f"data.source.fields: unknown field(s) {', '.join(sorted(unknown))} for task {task.name!r}; "
            f"valid: {', '.join(task.fields)}"
        )
    out = SourceRow(index)
    for name in task.fields:
        column = source.fields.get(name, name)
        if column not in row:
            raise ConfigError(
                f"field mapping: column {column!r} (for {task.name} field {name!r}) not in split {split!r}; "
                f"columns: {', '.join(map(str, row))}"
            )
        out[name] = row[column]
    source_field, target = task.fields
    out[source_field] = _text(out[source_field], source_field, split, index)
    if task.labelled:
        out[target] = _label_id(task, source, out[target], split, index)
    else:
        out[target] = _text(out[target], target, split, index)
    return out


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _text(value: Any, name: str, split: str, index: int) -> str:
    """A row's text: a non-empty string (numbers are taken as their text, as CSV readers make them)."""
    if _missing(value) or isinstance(value, (bool, dict, list)):
        raise ConfigError(
            f"split {split!r} row {index}: field {name!r} is {'empty' if _missing(value) else type(value).__name__}; "
            "every row needs a non-empty text"
        )
    text = str(value)
    if not text.strip():
        raise ConfigError(f"split {split!r} row {index}: field {name!r} is empty; every row needs a non-empty text")
    return text


def _label_id(task: TaskSpec, source: DataSource, value: Any, split: str, index: int) -> int:
    # a defined task's labels are its classes; a bundled task's source may name them its own way
    names = list(task.label_names if task.defined else (source.label_names or task.label_names))
    where = f"split {split!r} row {index}"
    # numeric labels count from the source's label_base (AG News's 1..4); names are matched as they are
    base = source.label_base
    ids = f"{base}..{base + len(names) - 1}"
    if _missing(value):
        raise ConfigError(f"{where}: the label is empty; valid: {', '.join(names)} or {ids}")
    if isinstance(value, str) and not value.strip().lstrip("-").isdigit():
        if value not in names:
            raise ConfigError(f"{where}: label {value!r} is not one of {', '.join(names)}")
        return names.index(value)
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{where}: label {value!r} is not a class id or name; valid: {', '.join(names)}")
    if isinstance(value, float) and not value.is_integer():
        # CSV readers make whole labels floats (2.0) when a column has gaps; 2.7 is no class
        raise ConfigError(f"{where}: label {value!r} is not a whole class id; valid: {ids}")
    label = int(value)
    if not base <= label < base + len(names):
        # ids one above the range and none below it: a file whose ids count from 1
        hint = "; ids from 1 (as AG News's): set data.source.label_base: 1" if base == 0 and label == len(names) else ""
        raise ConfigError(f"{where}: label {label} outside {ids}{hint}")
    return label - base


def class_weights(labels: list[int], num_classes: int) -> list[float]:
    """w_c = N / (C * n_c): rare classes weigh more; a balanced set gives all ones."""
    counts = [0] * num_classes
    for label in labels:
        counts[label] += 1
    total = len(labels)
    return [total / (num_classes * count) if count else 0.0 for count in counts]
