from __future__ import annotations

import json

from harness.matrix import ParamCounter, matrix_from_dict


def test_counts_are_cached_per_model_method_task_and_args(tmp_path, monkeypatch):
    from harness import methods

    calls = []

    def fake(config):
        calls.append(config.cell_id)
        return 10, 100

    monkeypatch.setattr(methods, "count_parameters", fake)
    data = {
        "models": ["tiny-bert"],
        "methods": ["lora"],
        "tasks": ["emotion"],
        "seeds": [0, 1, 2],
        "overrides": [{"match": {"seed": 2}, "set": {"method_args": {"r": 2}}}],
    }
    counter = ParamCounter(persistent=False)
    counts = [counter(c.config) for c in matrix_from_dict(data, output_dir=tmp_path).cells]
    assert [(c.trainable, c.total) for c in counts] == [(10, 100)] * 3
    assert len(calls) == 2  # seeds 0 and 1 share a count, r=2 does not


def test_errors_become_a_column(tmp_path, monkeypatch):
    from harness import methods

    monkeypatch.setattr(
        methods, "count_parameters", lambda config: (_ for _ in ()).throw(ValueError("no such module\nmore"))
    )
    data = {"models": ["tiny-bert"], "methods": ["lora"], "tasks": ["emotion"]}
    count = ParamCounter(persistent=False)(matrix_from_dict(data, output_dir=tmp_path).cells[0].config)
    assert count.trainable is None and count.error == "ValueError: no such module"


def test_real_counts_offline(tmp_path):
    data = {"models": ["tiny-bert"], "methods": ["lora", "full"], "tasks": ["emotion"]}
    lora, full = (ParamCounter(persistent=False)(c.config) for c in matrix_from_dict(data, output_dir=tmp_path).cells)
    assert lora.error is None and 0 < lora.trainable < lora.total
    assert full.trainable == full.total or full.trainable > lora.trainable


def test_counts_persist_on_disk_per_library_versions(tmp_path, monkeypatch):
    from harness import methods

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    calls = []
    monkeypatch.setattr(methods, "count_parameters", lambda config: calls.append(1) or (7, 70))
    data = {"models": ["tiny-bert"], "methods": ["lora"], "tasks": ["emotion"]}
    config = matrix_from_dict(data, output_dir=tmp_path).cells[0].config
    assert (ParamCounter()(config).trainable, ParamCounter()(config).trainable) == (7, 7)
    assert len(calls) == 1, "the second counter reads the first one's count from disk"
    assert (tmp_path / "cache" / "param-counts.json").is_file()


def test_a_cache_file_that_is_not_what_was_written_costs_a_recount(tmp_path, monkeypatch):
    from harness import methods

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(methods, "count_parameters", lambda config: (7, 70))
    data = {"models": ["tiny-bert"], "methods": ["lora"], "tasks": ["emotion"]}
    config = matrix_from_dict(data, output_dir=tmp_path).cells[0].config
    cache = tmp_path / "cache" / "param-counts.json"
    cache.parent.mkdir()
    key = '["x"]'
    for content in ("[]", '{"k": 3}', '{"k": [1, "2"]}', '{"k": [1, 2, 3]}', "[" * 100_000):
        cache.write_text(content)
        assert ParamCounter()(config).trainable == 7, content[:20]
    cache.write_text(json.dumps({key: [1, 2]}))
    assert ParamCounter()._disk == {key: [1, 2]}
