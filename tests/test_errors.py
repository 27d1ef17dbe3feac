"""A refusal is one line of bounded length, however much of the user's input it quotes."""

from __future__ import annotations

from harness.errors import MAX_MESSAGE, ConfigError, clip, error_line, one_line, shorten


def test_a_long_value_is_quoted_by_its_head_and_its_length() -> None:
    assert shorten("lora") == "'lora'"
    assert shorten(7) == "7"
    huge = "x" * 300_000
    text = shorten(huge)
    assert text.startswith("'xxxx") and text.endswith("\u2026 (300,000 characters)") and len(text) < 100
    assert clip("a.b") == "a.b" and clip("k" * 1000).endswith("\u2026 (1,000 characters)")
    assert len(shorten(list(range(100_000)))) < 100


def test_the_line_the_cli_prints_is_capped_and_has_no_line_breaks() -> None:
    assert one_line("short") == "short"
    text = one_line("unknown method " + "m" * 300_000)
    assert len(text) == MAX_MESSAGE + 1 and text.endswith("\u2026")
    assert one_line("a\nb\r\nc\td") == "a b  c d"
    assert one_line("esc \x1b[31m red") == "esc \\x1b[31m red"
    # a bidi override, a zero-width space, a lone surrogate (a non-UTF-8 argv byte): escaped, so a
    # terminal shows what the message says and a UTF-8 stdout can write it
    assert one_line("a\u202eb\u200bc\udcffd") == "a\\u202eb\\u200bc\\udcffd"
    assert one_line("no\xa0break") == "no\xa0break"  # a space is shown as one
    assert one_line("x" * MAX_MESSAGE) == "x" * MAX_MESSAGE  # exactly at the cap: kept whole


def test_a_failure_named_in_a_result_is_one_capped_line() -> None:
    line = error_line(ConfigError("first " + "y" * 10_000 + "\nsecond"))
    assert line.startswith("ConfigError: first yyy") and "second" not in line
    assert len(line) == MAX_MESSAGE + 1 and "\n" not in line
