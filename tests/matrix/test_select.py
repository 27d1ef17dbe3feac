from __future__ import annotations

import pytest

from harness.errors import ConfigError
from harness.matrix import matrix_from_dict, parse_filter


def test_filter_terms(tmp_path):
    data = {"models": ["tiny-bert", "tiny-llama"], "methods": ["lora", "ia3"], "tasks": ["emotion"], "seeds": [0, 1]}
    cells = matrix_from_dict(data, output_dir=tmp_path).cells
    pick = lambda text: [(c.model, c.method, c.seed) for c in cells if parse_filter(text).matches(c)]  # noqa: E731
    assert len(pick("")) == 8
    assert pick("method=lora,model=tiny-llama,seed=1") == [("tiny-llama", "lora", 1)]
    assert len(pick("method=lora|ia3, seed=0")) == 4
    assert pick(f"cell={cells[3].cell_id[:6]}") == [("tiny-bert", "ia3", 1)]
    assert parse_filter("status=failed|oom").statuses == {"failed", "oom"}


@pytest.mark.parametrize(("text", "expected"), [("methd=lora", "unknown key 'methd'"), ("lora", "expected key=value")])
def test_bad_filters(text, expected):
    with pytest.raises(ConfigError, match=expected):
        parse_filter(text)
