"""GSM8K scored as peft's MetaMathQA benchmark scores it: the answer is read out of the target and
the generation (harness.tasks.extract), then compared, numbers as numbers.

The expected values are what peft's ``parse_answer`` and ``get_accuracy`` give on the same
strings (huggingface/peft ad4e565c8a94081458db42cb771afed54e722d36,
method_comparison/MetaMathQA/utils.py), worked out by reading that code; the one place the
harness differs on purpose (thousands separators) says so."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.errors import ConfigError
from harness.tasks.extract import AnswerRule, gsm8k_answer, same_answer
from harness.tasks.metrics import exact_match_scores
from harness.tasks.registry import TASKS, parse_task_definition

GSM8K = Path(__file__).resolve().parents[2] / "harness" / "data" / "gsm8k"


def _test_rows() -> list[dict[str, str]]:
    return [json.loads(line) for line in (GSM8K / "test.jsonl").read_text(encoding="utf-8").splitlines()]


# (text, what peft's parse_answer returns)
PARSED = [
    # GSM8K test targets, verbatim (rows 0, 146, 489 of the test split)
    (_test_rows()[0]["target"], "18"),
    (_test_rows()[146]["target"], "2,125"),
    (_test_rows()[489]["target"], "-10"),
    # peft's docstring example, a MetaMath response
    ("vector v with itself is equal to $4^2 = \\boxed{16}$.The answer is: 16", "16"),
    # a trailing full stop, a dollar sign, a decimal
    ("She makes 9 * 2 = $18 every day.\nThe answer is: $18.00.", "18.00"),
    ("The answer is 50%", "50"),  # % is dropped (GSM8K omits it)
    ("The final answer is: 20/35", "20/35"),
    ("The answer is: 18 dollars", "18 dollars"),  # a unit stays: not a number
    ("The answer is: 42\n\nQuestion: how many ...", "42"),  # what follows the answer's line is cut
    ("#### 3\n#### 4", "4"),  # the last occurrence of the delimiter
    ("The answer is: 5\n#### 6", "5"),  # the first delimiter of peft's list that occurs wins
    ("Janet makes 18 dollars a day.", None),  # no delimiter
    ("The answer is:18", None),  # the delimiters end with a space
    ("####18", None),
]


@pytest.mark.parametrize(("text", "parsed"), PARSED)
def test_gsm8k_extraction_is_pefts_parse_answer(text: str, parsed: str | None) -> None:
    assert gsm8k_answer(text) == parsed


# (generated, target, scored right by the harness, by peft's get_accuracy)
SCORED = [
    ("The answer is: 18", _test_rows()[0]["target"], True, True),
    ("The answer is: 18.00", "#### 18", True, True),  # numbers as numbers: 18.00 = 18
    ("The answer is: 3.0", "#### 3", True, True),
    ("The answer is: -10", _test_rows()[489]["target"], True, True),
    ("The answer is: 10", _test_rows()[489]["target"], False, False),
    ("The answer is: 18 dollars", "#### 18", False, False),
    ("Janet makes 18 dollars a day.", "#### 18", False, False),  # no delimiter: wrong
    ("The answer is: 2,125", _test_rows()[146]["target"], True, True),  # peft: equal strings
    # the one difference: peft cannot read "2,125" as a number and compares it as a string
    ("The answer is: 2125", _test_rows()[146]["target"], True, False),
    ("The answer is: 1,2", "#### 12", False, False),  # not a thousands separator
]


@pytest.mark.parametrize(("generated", "target", "right", "peft"), SCORED)
def test_answers_compare_as_numbers(generated: str, target: str, right: bool, peft: bool) -> None:
    assert AnswerRule("gsm8k").matches(generated, target) is right
    if "," not in (gsm8k_answer(target) or ""):  # thousands separators are the only difference
        assert right == peft


def test_fractions_compare_as_peft_compares_them() -> None:
    # peft's comment: float(convert_to_decimal('20/35')) == float(convert_to_decimal('0.5714285714285714'))
    assert same_answer("20/35", "0.5714285714285714") and same_answer("20/35", "4/7")
    assert not same_answer("20/0", "0") and not same_answer("1/2/3", "1/6") and not same_answer(None, None)
    assert same_answer("yes", "yes") and not same_answer("Yes", "yes")  # other answers as strings, as peft


def test_exact_match_reads_the_answer_when_a_task_names_an_extractor() -> None:
    generated = ["The answer is: 18", "I think 18", "The answer is: 7"]
    targets = ["#### 18"] * 3
    scores = exact_match_scores(generated, targets, AnswerRule("gsm8k"))
    assert scores == {"exact_match": pytest.approx(1 / 3), "no_answer_rate": pytest.approx(1 / 3)}
    assert exact_match_scores(generated, targets) == {"exact_match": 0.0}  # whole strings, as before
    regex = AnswerRule("regex", r"Answer: (\S+)")
    assert exact_match_scores(["Answer: 4 Answer: 5", "Answer: x"], ["Answer: 5", "Answer: y"], regex) == {
        "exact_match": 0.5,
        "no_answer_rate": 0.0,
    }


def test_the_bundled_gsm8k_task_loads_its_splits() -> None:
    from harness.config import DataConfig
    from harness.tasks.data import load_split

    task = TASKS["gsm8k"]
    assert task.answer == AnswerRule("gsm8k") and task.scoring == "exact_match"
    test = load_split(task, DataConfig(), "test", None)
    assert len(test) == 1319 and test[0]["target"].endswith("#### 18")
    assert all(task.answer.extract(row["target"]) is not None for row in test)
    validation = load_split(task, DataConfig(), "validation", None)
    train = load_split(task, DataConfig(), "train", None)
    assert len(validation) == 50 and len(train) == 7473 - 50  # the held-out rows are never trained on
    assert not {row["text"] for row in validation} & {row["text"] for row in train}


def test_a_tiny_generation_cell_on_gsm8k_writes_the_extracted_answers(make_cell: Any) -> None:
    from harness.cell import run_cell

    config = make_cell(
        "tiny-llama", "lora", "gsm8k", train={"max_steps": 2}, data={"max_train_samples": 4, "max_eval_samples": 5}
    )
    result = run_cell(config)
    assert result.status == "success", result.traceback
    assert set(result.metrics) == {"exact_match", "no_answer_rate"}
    assert 0 <= result.metrics["exact_match"] <= 1 - result.metrics["no_answer_rate"]
    records = [json.loads(line) for line in (Path(config.output_dir) / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == 5
    for record in records:
        assert {"prediction", "reference", "extracted", "reference_extracted"} <= set(record)
        assert record["reference_extracted"] == gsm8k_answer(record["reference"]) is not None
        assert record["extracted"] == gsm8k_answer(record["prediction"])


def _matrix(tmp_path: Path, entry: dict[str, Any]) -> Path:
    rows = _test_rows()[:20]
    files = {}
    for split in ("train", "test"):
        files[split] = str(tmp_path / f"{split}.jsonl")
        Path(files[split]).write_text("".join(json.dumps(row) + "\n" for row in rows))
    task = {"name": "math", "kind": "generation", "source": {"files": files}, **entry}
    path = tmp_path / "m.yaml"
    path.write_text(
        yaml.safe_dump(
            {"name": "m", "output_dir": str(tmp_path / "out"), "models": ["tiny-llama"], "methods": ["lora"]}
            | {"tasks": [task], "seeds": [0]}
        )
    )
    return path


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ("gsm8", "answer: unknown extractor 'gsm8'; valid: gsm8k, {regex: \"...\"} (one capture group)"),
        ({"regex": "The answer is: ([0-9"}, "answer: regex 'The answer is: ([0-9' does not compile"),
        ({"regex": "The answer is: [0-9]+"}, "has 0 capture groups; give exactly one"),
        ({"regex": "(a)(b)"}, "has 2 capture groups; give exactly one"),
        ("regex", "answer: regex needs its pattern"),
        ({"gsm8k": "(x)"}, "answer: gsm8k takes no pattern"),
    ],
)
def test_a_bad_extractor_is_refused_in_one_line(tmp_path: Path, answer: Any, message: str) -> None:
    from harness.matrix import load_matrix

    with pytest.raises(ConfigError) as error:
        load_matrix(_matrix(tmp_path, {"answer": answer}))
    assert message in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(ConfigError) as error:  # a cell file's task_definition, checked alike
        parse_task_definition({"kind": "generation", "answer": answer})
    assert message in str(error.value) and "\n" not in str(error.value)


def test_an_extractor_needs_a_scoring_that_compares_answers(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"answer \(gsm8k\) is read out before exact_match.*metric: exact_match"):
        parse_task_definition({"kind": "generation", "metric": "rouge", "answer": "gsm8k"})
    with pytest.raises(ConfigError, match="answer"):
        parse_task_definition({"kind": "classification", "labels": ["a", "b"], "answer": "gsm8k"})


def test_a_defined_task_with_an_extractor_scores_exact_match_and_keeps_its_id_form(tmp_path: Path) -> None:
    from harness.matrix import load_matrix

    (cell,) = load_matrix(_matrix(tmp_path, {"answer": {"regex": r"#### (\S+)"}})).active
    assert cell.config.task_definition["answer"] == {"regex": r"#### (\S+)"}
    definition = parse_task_definition(cell.config.task_definition)
    assert definition.scoring == "exact_match" and definition.answer_rule == AnswerRule("regex", r"#### (\S+)")
    # without one, the dump (the id's form) is as before the field existed
    assert "answer" not in parse_task_definition({"kind": "generation"}).dump()
