"""Reference files: every seed's figures, the environment and the gate survive a round trip; an
unknown schema version or a file that is not a reference is refused."""

from __future__ import annotations

import json

import pytest
from compare_helpers import GIB, gpu_facts, sample, side

from harness.compare.comparison import compare_sides
from harness.compare.gate import Gate
from harness.compare.measures import MEASURES
from harness.compare.reference import REFERENCE_VERSION, load_reference, save_reference
from harness.errors import ConfigError


def _side():
    facts = [gpu_facts(), gpu_facts(), gpu_facts(**{"host": "other"})]
    samples = [
        sample(s, 0.8 + 0.01 * s, accuracy=0.9, facts=facts[s], train_peak_bytes=10 * GIB, train_samples_per_s=99.5)
        for s in range(3)
    ]
    samples[2].figures["speed_vs_bare_loop"] = 0.97
    samples.append(sample(3, status="failed"))
    return side("REFERENCE", samples)


def test_round_trip_keeps_every_figure(tmp_path):
    original = _side()
    gate = Gate(tolerance={"f1_macro": 2.5}, bounds={"memory": (-0.05, 0.05)})
    path = save_reference(original, tmp_path / "ref.json", gate)
    data = json.loads(path.read_text())
    assert data["schema_version"] == REFERENCE_VERSION and data["environment"]["packages.torch"] == "2.13.0"
    (row,) = data["rows"]
    assert row["summary"]["f1_macro"]["n"] == 3 and row["summary"]["f1_macro"]["mean"] == pytest.approx(0.81)
    assert row["cells"][2]["environment"] == {"host": "other"}  # only what differs from the shared facts
    loaded = load_reference(path, "REFERENCE")
    assert loaded.gate == gate
    for before, after in zip(original.samples, loaded.samples):
        assert (after.row.seed, after.row.status, after.row.metrics) == (
            before.row.seed,
            before.row.status,
            before.row.metrics,
        )
        assert after.row.train_peak_bytes == before.row.train_peak_bytes
        assert after.row.train_peak_measure == before.row.train_peak_measure
        assert after.figures == before.figures
    assert loaded.samples[2].facts == original.samples[2].facts
    comparison = compare_sides(original, loaded)
    assert comparison.exit_code == 0 and not comparison.differences
    assert {f.verdict for f in comparison.findings} == {"ok"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"schema": "harness-compare-reference", "schema_version": 99, "rows": []}, "schema version 99 is not one"),
        ({"rows": []}, "not a reference file"),
        ({"schema": "harness-compare-reference", "schema_version": 1, "rows": [{"task": "x"}]}, "malformed"),
        ("{not json", "not a readable JSON file"),
    ],
)
def test_bad_reference_files_are_refused_in_one_line(tmp_path, content, message):
    path = tmp_path / "ref.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(ConfigError, match=message) as raised:
        load_reference(path, "REFERENCE")
    assert "\n" not in str(raised.value)


def test_the_command_line_overrides_what_a_reference_stores():
    stored = Gate(
        aspects=frozenset({"quality", "ratio"}),
        tolerance={"accuracy": 8.7, "f1_macro": 14.2},
        bounds={"speed_vs_bare_loop": (-0.25, 0.25), "train_peak_bytes": (-0.2, 0.2)},
    )
    given = Gate(tolerance={"*": 2.0, "f1_macro": 3.0}, bounds={"ratio": (-0.1, 0.1)})
    merged = given.over(stored, aspects=False, cpu_timings=False)
    assert merged.aspects == {"quality", "ratio"}  # --gate not given: the file's
    assert merged.tolerance_for("accuracy") == 2.0 and merged.tolerance_for("f1_macro") == 3.0
    assert merged.bound_for(MEASURES["speed_vs_bare_loop"]) == (-0.1, 0.1)
    assert merged.bound_for(MEASURES["train_peak_bytes"]) == (-0.2, 0.2)  # not covered by "ratio"
    assert Gate().over(stored, aspects=False, cpu_timings=False).tolerance_for("accuracy") == 8.7
