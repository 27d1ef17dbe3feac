"""``data.prompt_template``: an instruct/chat model whose tokenizer has a chat template is prompted
with it (auto), plain keeps the ### Instruction / ### Response template; auto is resolved when the
cell config is built, so plain cells keep their ids and chat cells get new ones (issue 25, item 7)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.cell import run_cell
from harness.cell.resolve import parse_cell_config
from harness.config import CellConfig, DataConfig
from harness.errors import ConfigError
from harness.heads import IGNORE_INDEX
from harness.matrix import matrix_from_dict
from harness.models import materialise, package_dir, resolve_model
from harness.models.registry import has_chat_template, names_chat_model
from harness.result import load_result
from harness.tasks import load_split, resolve_task
from harness.tasks.formatting import Formatter, chat_user_message

# a ChatML-like template in the tiny tokenizer's special tokens: the end of turn is its EOS
TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
)
DATA = DataConfig(max_source_tokens=48, max_target_tokens=16, prompt_template="chat")


def _tokenizer(model: str, template: str | None = None):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(materialise(resolve_model(model)))
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    if template is not None:
        tokenizer.chat_template = template
    return tokenizer


def _smollm2():
    if package_dir(resolve_model("smollm2-135m")) is None:
        pytest.skip("run `harness prefetch --model smollm2-135m`")
    return _tokenizer("smollm2-135m")


@pytest.mark.parametrize("which", ["tiny", "smollm2"])
def test_a_tokenizer_with_a_chat_template_gets_chat_prompts_and_the_loss_on_the_response(which: str) -> None:
    tokenizer = _tokenizer("tiny-llama", TINY_CHAT_TEMPLATE) if which == "tiny" else _smollm2()
    task = resolve_task("billsum")
    row = load_split(task, DATA, "test", limit=1)[0]
    row = {**row, "text": row["text"][:100]}  # within max_source_tokens: the prompt is the template's, exactly
    example = Formatter(task, "causal", tokenizer, DATA).encode(row)

    user = [{"role": "user", "content": chat_user_message(task, row["text"])}]
    rendered = tokenizer.apply_chat_template(user, add_generation_prompt=True, tokenize=True)
    assert example.prompt_ids == list(rendered["input_ids"])
    prompt = len(example.prompt_ids)
    assert example.input_ids[:prompt] == example.prompt_ids
    assert example.labels[:prompt] == [IGNORE_INDEX] * prompt  # no loss on the prompt
    response = example.labels[prompt:]
    assert IGNORE_INDEX not in response and response == example.input_ids[prompt:]
    # the response is the answer (truncated) and the template's end of turn, which is kept
    assert len(response) <= DATA.max_target_tokens
    end = tokenizer(f"{tokenizer.eos_token}\n", add_special_tokens=False)["input_ids"]
    assert response[-len(end) :] == end
    answer = tokenizer.decode(response, skip_special_tokens=True).strip()
    assert answer and row[task.target_field].startswith(answer[:20])


def test_the_plain_template_is_unchanged() -> None:
    tokenizer = _tokenizer("tiny-llama", TINY_CHAT_TEMPLATE)
    task = resolve_task("billsum")
    plain = DATA.model_copy(update={"prompt_template": "plain"})
    row = load_split(task, plain, "test", limit=1)[0]
    example = Formatter(task, "causal", tokenizer, plain).encode(row)
    prompt = tokenizer.decode(example.prompt_ids)
    assert "### Instruction:" in prompt and "assistant" not in prompt


def test_a_tokenizer_without_a_template_refuses_chat_in_one_line() -> None:
    """A Hub model's tokenizer is read only when the job loads it: the job fails with one line."""
    with pytest.raises(ConfigError) as info:
        Formatter(resolve_task("billsum"), "causal", _tokenizer("tiny-llama"), DATA)
    message = str(info.value)
    assert "\n" not in message and "no chat template" in message and "plain, auto" in message


def test_auto_resolves_to_chat_only_for_an_instruct_model_with_a_template() -> None:
    def template(model: str, task: str = "billsum", **data: str) -> str:
        return parse_cell_config({"model": model, "method": "lora", "task": task, "data": data}).data.prompt_template

    assert template("tiny-llama") == "plain"
    assert template("smollm2-135m") == "chat"
    assert template("llama-3.2-3b-instruct") == "chat"
    assert template("llama-3.2-3b") == "plain"
    assert template("Qwen/Qwen2.5-0.5B-Instruct") == "chat"  # its tokenizer is checked when the job loads it
    assert template("smollm2-135m", prompt_template="plain") == "plain"
    # no prompt is built from a template: a classification head, an encoder-decoder
    assert template("smollm2-135m", "emotion") == "plain"
    assert template("tiny-t5") == "plain"
    assert [names_chat_model(n) for n in ("org/gemma-2-2b-it", "org/x-Chat", "org/Llama-3B", "org/italic")] == [
        True,
        True,
        False,
        False,
    ]


def test_plain_cells_keep_their_ids_and_chat_cells_get_new_ones() -> None:
    def cell(model: str, **data: str) -> CellConfig:
        return parse_cell_config({"model": model, "method": "lora", "task": "billsum", "data": data})

    # tiny-t5 billsum: the id tests/test_config.py pins, whatever prompt_template says
    assert cell("tiny-t5").cell_id == cell("tiny-t5", prompt_template="plain").cell_id == "54d89fadfa72dad4"
    assert cell("tiny-llama").cell_id == cell("tiny-llama", prompt_template="plain").cell_id
    assert cell("smollm2-135m").cell_id == cell("smollm2-135m", prompt_template="chat").cell_id
    assert cell("smollm2-135m").cell_id != cell("smollm2-135m", prompt_template="plain").cell_id
    # an unresolved config (built in code) hashes as every cell did before the setting existed
    unresolved = CellConfig(model="smollm2-135m", method="lora", task="billsum")
    assert unresolved.data.prompt_template == "auto"
    assert unresolved.cell_id == unresolved.model_copy(update={"data": DataConfig(prompt_template="plain")}).cell_id


def test_chat_where_the_tokenizer_has_none_is_refused_at_plan_time(tmp_path: Path) -> None:
    for make in (
        lambda: parse_cell_config(
            {"model": "tiny-llama", "method": "lora", "task": "billsum", "data": {"prompt_template": "chat"}}
        ),
        lambda: matrix_from_dict(
            {
                "name": "t",
                "models": ["tiny-llama"],
                "methods": ["lora"],
                "tasks": ["billsum"],
                "defaults": {"data": {"prompt_template": "chat"}},
            },
            output_dir=tmp_path,
        ),
    ):
        with pytest.raises(ConfigError) as info:
            make()
        message = str(info.value)
        assert "\n" not in message and "'tiny-llama'" in message and "valid: plain, auto" in message
    with pytest.raises(ConfigError, match="'auto', 'plain' or 'chat'"):
        parse_cell_config(
            {"model": "tiny-llama", "method": "lora", "task": "billsum", "data": {"prompt_template": "x"}}
        )


def _instruct_copy(tmp_path: Path) -> Path:
    """tiny-llama saved as a local instruct model whose tokenizer carries a chat template."""
    model = tmp_path / "tiny-llama-instruct"
    shutil.copytree(materialise(resolve_model("tiny-llama")), model)
    config = json.loads((model / "tokenizer_config.json").read_text())
    (model / "tokenizer_config.json").write_text(json.dumps({**config, "chat_template": TINY_CHAT_TEMPLATE}))
    return model


def test_a_local_instruct_model_runs_a_chat_generation_cell_and_records_it(make_cell, tmp_path: Path) -> None:
    model = _instruct_copy(tmp_path)
    assert has_chat_template(resolve_model(str(model))) is True
    config = make_cell(str(model), "lora", "billsum", train={"max_steps": 2})
    assert config.data.prompt_template == "chat"
    result = run_cell(config)
    assert result.status == "success", result.traceback
    on_disk = load_result(Path(config.output_dir))
    assert on_disk.config["data"]["prompt_template"] == "chat"
    assert (Path(config.output_dir) / "predictions.jsonl").is_file()
    # the same model without the template: auto is plain, and chat is refused at plan time
    (model / "tokenizer_config.json").write_text(
        json.dumps(
            {k: v for k, v in json.loads((model / "tokenizer_config.json").read_text()).items() if k != "chat_template"}
        )
    )
    assert make_cell(str(model), "lora", "billsum").data.prompt_template == "plain"
    with pytest.raises(ConfigError, match="no chat template"):
        make_cell(str(model), "lora", "billsum", data={"prompt_template": "chat"})
