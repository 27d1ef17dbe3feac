"""Matrix and cell files are read within limits: hostile YAML is refused before anything walks it."""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import harness.safeyaml as safeyaml
from harness.cell.resolve import load_cell_config
from harness.config import CellConfig
from harness.errors import ConfigError
from harness.matrix import Matrix, load_matrix
from harness.safeyaml import MAX_BYTES, MAX_DEPTH

BOMB = (
    "\n".join(
        ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
        + [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
        + [
            "name: bomb",
            "models: [tiny-bert]",
            "methods: [lora]",
            "tasks: [emotion]",
            "defaults: {method_args: {target_modules: *a8}}",
        ]
    )
    + "\n"
)


def test_alias_bomb_is_refused_fast_and_small(tmp_path: Path) -> None:
    """The 569-byte "billion laughs" matrix: refused in a fresh process under a 1 GB address-space
    cap, in well under a second of its own time (the interpreter's start-up is most of it)."""
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    assert len(BOMB) < 1000
    # peak memory from /proc (VmHWM): getrusage's maxrss survives exec and would report pytest's
    code = (
        "import re, resource, sys, time; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30)); t = time.perf_counter()\n"
        "from harness.cli import main\nrc = main(['plan', sys.argv[1]])\n"
        "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)\n"
        "print(f'{time.perf_counter() - t:.3f} {hwm}')\nsys.exit(rc)"
    )
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "YAML aliases (*a0) are not allowed" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    seconds, peak_kib = done.stdout.split()
    assert float(seconds) < 1.0 and int(peak_kib) < 200 * 1024


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: &x 1\nb: *x\n", "YAML aliases (*x) are not allowed"),
        ("base: &base {r: 4}\nother:\n  <<: *base\n", "YAML aliases (*base) are not allowed"),
        ("model: tiny-bert\nmodel: tiny-llama\n", "line 2: duplicate key 'model' (first at line 1)"),
        ("train: {batch_size: 2, batch_size: 4}\n", "duplicate key 'batch_size'"),
        ("x: " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5) + "\n", f"nested more than {MAX_DEPTH} levels deep"),
        ("? [a, b]\n: 1\n", "a mapping key must be a plain value"),
        ("model: [tiny-bert\n", "malformed YAML"),
        ("- a\n- b\n", "expected a mapping at the top level, got list"),
        # a number Python will not build from its digits was a ValueError traceback
        ("seed: " + "9" * 5000 + "\n", "a value it cannot read (Exceeds the limit (4300 digits)"),
    ],
)
def test_refusals_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "cell.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_cell_config(path)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_size_and_encoding(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("defaults: {tags: {x: '" + "y" * MAX_BYTES + "'}}\n")
    with pytest.raises(ConfigError, match="larger than 1024 KiB"):
        load_matrix(big)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"not UTF-8 text \(byte 9"):
        load_matrix(latin)
    bom = tmp_path / "bom.yaml"
    bom.write_bytes(b"\xef\xbb\xbfmodel: tiny-bert\nmethod: lora\ntask: emotion\n")
    assert load_cell_config(bom).model == "tiny-bert"


# ---------------------------------------------------------------- properties

KEYS = [
    "name",
    "models",
    "methods",
    "tasks",
    "seeds",
    "defaults",
    "overrides",
    "exclude",
    "grids",
    "resources",
    "executor",
    "tracking",
    "output_dir",
    "model",
    "method",
    "task",
    "seed",
    "train",
    "data",
    "method_args",
    "batch_size",
    "learning_rate",
    "source",
    "files",
    "fields",
    "match",
    "set",
    "reason",
    "partition",
    "sbatch_extra",
    "lora",
    "tiny-bert",
    "emotion",
    "r",
    "target_modules",
    "<<",
    "&a",
    "*a",
]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10, 10**6),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(["lora", "tiny-bert", "emotion", "billsum", "ia3", "tiny-t5"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)),
    max_leaves=25,
)
DOCUMENTS = st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=8)
SNIPPETS_TEXT = [
    "a: &x [1, 2]",
    "b: *x",
    "c: {d: *x}",
    "x: 1",
    "x: 2",
    "- 1",
    "? [1]",
    ": 2",
    "[[[[",
    "]]",
    "\t",
    "'",
    '"',
    "{",
    "}",
    ":",
    "\\xff",
    "&a b",
    "*a",
]
SNIPPETS = st.lists(st.sampled_from(SNIPPETS_TEXT), max_size=8)
MATRIX_BASE = {"models": ["tiny-bert"], "methods": ["lora"], "tasks": ["emotion"]}


import harness.models  # noqa: E402,F401 - imported up front: model names import torch, outside the budget


def _within_budget(action) -> None:
    """Either a typed config or a ConfigError, never another exception, in bounded time and memory."""
    start = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        assert isinstance(action(), (Matrix, CellConfig))
    except ConfigError as error:
        assert "\n" not in str(error)
    assert time.perf_counter() - start < 5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024  # KiB


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=DOCUMENTS, as_matrix=st.booleans())
def test_generated_documents_give_a_config_or_a_config_error(tmp_path: Path, document: dict, as_matrix: bool) -> None:
    path = tmp_path / "doc.yaml"
    if as_matrix:
        path.write_text(yaml.safe_dump({**MATRIX_BASE, **document}))
        _within_budget(lambda: load_matrix(path, output_dir=tmp_path / "out"))
    else:
        path.write_text(yaml.safe_dump({"model": "tiny-bert", "method": "lora", "task": "emotion", **document}))
        _within_budget(lambda: load_cell_config(path))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=SNIPPETS, raw=st.binary(max_size=64))
def test_generated_text_gives_a_config_or_a_config_error(tmp_path: Path, lines: list[str], raw: bytes) -> None:
    path = tmp_path / "doc.yaml"
    path.write_bytes(b"models: [tiny-bert]\nmethods: [lora]\ntasks: [emotion]\n" + "\n".join(lines).encode() + raw)
    _within_budget(lambda: load_matrix(path, output_dir=tmp_path / "out"))
    _within_budget(lambda: load_cell_config(path))


# ---------------------------------------------------------------- libyaml and the pure-Python loader

FRAGMENTS = [
    *SNIPPETS_TEXT,
    "f: !!str 3",
    "g: !!binary aGk=",
    "h: 2001-12-14",
    "<<: {z: 1}",
    "i: .nan",
    "j: 0o17",
    "d1: 0123",
    "d2: 089",
    "d3: 12345678901234567890",
    "d4: \uff10\uff11",
    "d5: 1:30",
    "d6: [0, 00, 7]",
    "d7: '42'",
    "d8: !!str 42",
    "d9: 1_0",
    "d10: 1" + "0" * 5000,
    "k: 0x1F",
    "m: yes",
    "n: ~",
    "o: |\n  text",
    "%YAML 1.1\n---",
    "---",
    "q: 'it''s'",
    'r: "\\u00e9\\x41"',
    "u: +.inf",
    "v: \x85",
    "w: \u2028",
    "x: \x00",
    "z: \udcff",
]


def _outcome(text: str, fast: bool) -> tuple[str, object]:
    saved = safeyaml._CSafeLoader
    if not fast:
        safeyaml._CSafeLoader = None  # the pure-Python loader, as without libyaml
    try:
        return "ok", repr(safeyaml.load_yaml_text(text))
    except safeyaml.YamlRefused:
        return "refused", None
    finally:
        safeyaml._CSafeLoader = saved


@pytest.mark.skipif(safeyaml._CSafeLoader is None, reason="PyYAML without libyaml")
@settings(max_examples=300, deadline=None)
@given(parts=st.lists(st.sampled_from(FRAGMENTS), max_size=8), extra=st.text(max_size=10))
def test_libyaml_refuses_and_reads_what_the_python_loader_does(parts: list[str], extra: str) -> None:
    """libyaml (5x faster: 100,000 seeds are parsed well within the size-and-time budget) keeps
    every refusal: aliases, depth, duplicate keys, what is not text. Two differences are libyaml's
    reading of YAML itself: it reads a tab inside a plain value (YAML allows it; PyYAML's scanner
    refuses it), and a byte-order mark inside the text (not a case here)."""
    text = "\n".join(parts) + extra.replace("\ufeff", "")
    fast, slow = _outcome(text, fast=True), _outcome(text, fast=False)
    tab_read = "\t" in text and slow[0] == "refused" and fast[0] == "ok"
    assert fast == slow or (fast[0] == slow[0] == "refused") or tab_read
