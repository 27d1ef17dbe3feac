"""Dotted keys: a key inside a value that is not a mapping is a conflict, named, never a crash."""

from __future__ import annotations

import time

import pytest

from harness.dotted import DottedConflict, dotted_conflict, set_dotted


def test_setting_inside_a_value_raises_a_conflict_that_names_both_keys() -> None:
    data: dict = {}
    set_dotted(data, "a", 1)
    with pytest.raises(DottedConflict) as info:
        set_dotted(data, "a.b.c", 2)
    assert (info.value.dotted, info.value.prefix) == ("a.b.c", "a")
    assert data == {"a": 1}
    set_dotted(data, "x.y", 1)
    set_dotted(data, "x.z", 2)
    assert data["x"] == {"y": 1, "z": 2}


@pytest.mark.parametrize(
    ("keys", "conflict"),
    [
        (["a", "a.b"], ("a", "a.b")),
        (["a.b", "a"], ("a", "a.b")),  # either order
        (["train.max_steps", "seed", "train"], ("train", "train.max_steps")),
        (["x", "a.b.c", "a.b"], ("a.b", "a.b.c")),
        (["a.b", "a.c", "ab"], None),
        (["a.b", "a.bc"], None),
    ],
)
def test_conflicting_keys_are_found_in_either_order(keys: list[str], conflict: tuple[str, str] | None) -> None:
    assert dotted_conflict(keys) == conflict


def test_finding_a_conflict_is_linear_in_the_keys() -> None:
    """A 128 KB key of 64,000 parts (an argument's most) and 10,000 keys: no prefix is rebuilt."""
    deep = ".".join(["k"] * 64_000)
    start = time.perf_counter()
    assert dotted_conflict([deep, *(f"s{i}.t" for i in range(10_000))]) is None
    assert dotted_conflict([deep, "k.k.k"]) == ("k.k.k", deep)
    assert time.perf_counter() - start < 1
