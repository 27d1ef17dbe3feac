"""Answer extractors: how a generation task reads the answer out of a text before exact match.

A generation task may name one (``answer: gsm8k``, or ``answer: {regex: "..."}`` with one capture
group for a user's own task). The ``exact_match`` scoring then applies it to both the target and
the generated text and compares what it found, numbers as numbers: ``3.0`` = ``3``, ``20/35`` =
``0.5714285714285714``, ``1,000`` = ``1000``. A text with no answer in it scores wrong.

Behaviour that varies by extractor lives in its ``EXTRACTORS`` entry; nothing else compares an
extractor's name. Plain data and the standard library: the registry and plan read it without torch.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

# peft's delimiters, in its order of preference (method_comparison/MetaMathQA/utils.py, below)
GSM8K_DELIMITERS = ("The answer is: ", "The answer is ", "The final answer is: ", "The final answer is ", "#### ")
# a number with thousands separators: "1,000", "-2,520,000.5" (not "1,2", a pair)
GROUPED = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d*)?")


def gsm8k_answer(text: str, _pattern: str | None = None) -> str | None:
    """peft's ``parse_answer``, line for line. From huggingface/peft at commit
    ad4e565c8a94081458db42cb771afed54e722d36, method_comparison/MetaMathQA/utils.py::

        text = text.strip()
        text = text.rstrip(".!?")
        for delimiter in candidate_delimiters:
            if delimiter in text:
                break
        else:  # no match
            return None

        text = text.rpartition(delimiter)[-1].strip()
        # if a new paragraph follows after the final answer, we want to remove it
        text = text.split("\\n", 1)[0]
        # note: we can just remove % here since the GSM8K dataset just omits it, i.e. 50% -> 50, no need to divide by 100
        text = text.strip(" .!?$%")
        return text

    So the first delimiter of the list that occurs wins (``The answer is: `` over ``#### ``),
    and the text after its last occurrence is the answer."""
    text = text.strip().rstrip(".!?")
    delimiter = next((d for d in GSM8K_DELIMITERS if d in text), None)
    if delimiter is None:
        return None
    return text.rpartition(delimiter)[-1].strip().split("\n", 1)[0].strip(" .!?$%")


def regex_answer(text: str, pattern: str | None) -> str | None:
    """The capture group of the pattern's last match (the final answer), stripped; None: no match."""
    assert pattern is not None
    matches = list(re.finditer(pattern, text))
    found = matches[-1].group(1) if matches else None
    return found.strip() if found is not None else None


def as_number(text: str) -> Fraction | None:
    """The number a text spells: an integer or decimal (``-3``, ``3.0``, ``1,000``) or a fraction
    (``20/35``); None: not a number. peft's ``convert_to_decimal`` reads the same forms except
    thousands separators, which it cannot read (``Decimal("1,000")`` fails)."""
    text = text.strip()
    if GROUPED.fullmatch(text):
        text = text.replace(",", "")
    try:
        if "/" in text:
            parts = text.split("/")
            if len(parts) != 2:
                return None
            numerator, denominator = Fraction(parts[0].strip()), Fraction(parts[1].strip())
            return numerator / denominator if denominator else None
        return Fraction(text)
    except (ValueError, ZeroDivisionError):
        return None


def same_answer(found: str | None, expected: str | None) -> bool:
    """Two extracted answers agree: both found, and equal as numbers where both are numbers
    (compared as floats, as peft's ``get_accuracy`` does, so ``20/35`` equals its decimal
    expansion), else as strings."""
    if found is None or expected is None:
        return False
    number, reference = as_number(found), as_number(expected)
    if number is not None and reference is not None:
        return float(number) == float(reference)
    return found == expected


def _check_regex(pattern: str) -> str | None:
    """None: a usable pattern; otherwise what is wrong with it."""
    try:
        groups = re.compile(pattern).groups
    except re.error as error:
        return f"regex {pattern!r} does not compile: {error}"
    if groups != 1:
        return (
            f"regex {pattern!r} has {groups} capture groups; give exactly one, around the answer "
            "(e.g. 'Answer: (-?[0-9.]+)'; (?:...) groups without capturing)"
        )
    return None


@dataclass(frozen=True)
class Extractor:
    name: str
    # (text, pattern) -> the answer it holds, or None: it holds none (scores wrong)
    extract: Callable[[str, str | None], str | None]
    usage: str  # how a task definition names it
    # pattern -> None, or why it cannot be used; None: it takes no pattern (named alone)
    check: Callable[[str], str | None] | None = None


EXTRACTORS: dict[str, Extractor] = {
    extractor.name: extractor
    for extractor in (
        Extractor("gsm8k", gsm8k_answer, "answer: gsm8k"),
        Extractor("regex", regex_answer, 'answer: {regex: "..."} (one capture group)', _check_regex),
    )
}


@dataclass(frozen=True)
class AnswerRule:
    """A task's extractor, with its pattern where it takes one."""

    extractor: str  # a key of EXTRACTORS
    pattern: str | None = None

    def extract(self, text: str) -> str | None:
        return EXTRACTORS[self.extractor].extract(text, self.pattern)

    def matches(self, generated: str, target: str) -> bool:
        return same_answer(self.extract(generated), self.extract(target))


def answer_rule(value: str | Mapping[str, Any]) -> AnswerRule:
    """The rule a task definition's ``answer`` names, or a ``ValueError`` saying what is wrong
    (one line, with the valid extractors)."""
    if isinstance(value, str):
        name, pattern = value, None
    elif len(value) == 1 and isinstance(next(iter(value.values())), str):
        name, pattern = next(iter(value.items()))
    else:
        raise ValueError(f"answer: an extractor's name or {{name: pattern}}; valid: {_valid()}")
    extractor = EXTRACTORS.get(name)
    if extractor is None:
        raise ValueError(f"answer: unknown extractor {str(name)[:40]!r}; valid: {_valid()}")
    if (pattern is None) != (extractor.check is None):
        needs = "takes no pattern" if pattern is not None else "needs its pattern"
        raise ValueError(f"answer: {name} {needs} ({extractor.usage})")
    problem = extractor.check(pattern) if extractor.check is not None and pattern is not None else None
    if problem is not None:
        raise ValueError(f"answer: {problem}")
    return AnswerRule(name, pattern)


def _valid() -> str:
    return ", ".join(extractor.usage.removeprefix("answer: ") for extractor in EXTRACTORS.values())
