"""result.json's ``inputs``: the model's and the data's files by sha256 (or the Hub revision),
hashed once per file version (memory, then the cache on disk)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from types import SimpleNamespace

from harness.fingerprint import file_sha256, files_sha256


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_cell_records_the_sha256_of_its_model_and_data_files(make_cell):
    from harness.cell import run_cell
    from harness.tasks.registry import resolve_task

    result = run_cell(make_cell("tiny-bert", "lora", "emotion", train={"max_steps": 1}))
    assert result.status == "success", result.traceback
    model, data = result.inputs["model"], result.inputs["data"]
    assert model["origin"] == "tiny" and "error" not in model
    folder = Path(model["path"])
    assert model["files"]["config.json"] == _sha(folder / "config.json")
    assert model["files"]["model.safetensors"] == _sha(folder / "model.safetensors")
    bundled = resolve_task("emotion").bundled
    assert set(data) == {"train", "test"}  # what it read: no validation without train.eval_every
    assert data["test"] == {"file": str(bundled["test"]), "sha256": _sha(bundled["test"])}


def test_a_hub_model_is_recorded_by_the_revision_transformers_resolved():
    from harness.models.provenance import model_provenance
    from harness.models.registry import resolve_model

    loaded = SimpleNamespace(config=SimpleNamespace(_commit_hash="abc123"))  # a Hub model cannot load here
    record = model_provenance(resolve_model("llama-3.2-3b"), loaded)
    assert record == {
        "origin": "hub",
        "name": "llama-3.2-3b",
        "hub_id": "meta-llama/Llama-3.2-3B",
        "revision": "abc123",
    }


def test_hashes_are_kept_per_file_version_and_an_edit_is_seen(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "d.csv"
    data.write_text("text,label\na,0\n")
    first = file_sha256(data)
    assert first == _sha(data)
    assert len(list((tmp_path / "cache" / "sha256").iterdir())) == 1  # the next process reads it
    data.write_text("text,label\nb,1\n")
    os.utime(data, ns=(1, 10**18))  # same size, another mtime
    assert file_sha256(data) == _sha(data) != first
    model = tmp_path / "model"
    (model / "sub").mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / "sub" / "w.bin").write_bytes(b"\0" * 10)
    (model / ".lock").write_text("")  # hidden files are not the model's
    assert files_sha256(model) == {
        "config.json": _sha(model / "config.json"),
        "sub/w.bin": _sha(model / "sub" / "w.bin"),
    }
