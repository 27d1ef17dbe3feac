"""The method registry: every PeftType is a method, counts match peft's benchmark, bad
method input is refused at plan time with one line that names the valid choices."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cell.resolve import parse_cell_config
from harness.config import CellConfig
from harness.errors import ConfigError
from harness.methods.build import MANAGED_FIELDS, config_fields, count_parameters
from harness.methods.registry import methods, peft_types, resolve_method

STUDY_NAMES = (
    "lora",
    "qlora",
    "adalora",
    "loha",
    "lokr",
    "ia3",
    "prefix",
    "ptuning_v2",
    "ptuning",
    "prompt_tuning",
    "full",
    "zeroshot",
)


def test_every_peft_type_of_the_installed_peft_is_a_method() -> None:
    from peft import PeftType

    assert peft_types() == tuple(member.value for member in PeftType), "read from peft's source, in peft's order"
    table = methods()
    for member in PeftType:
        assert member.value.lower() in table
    assert set(STUDY_NAMES) <= set(table) and {"dora", "rslora", "lorafa"} <= set(table)
    for name in (
        "vera",
        "oft",
        "boft",
        "hra",
        "fourierft",
        "ln_tuning",
        "miss",
        "c3a",
        "randlora",
        "shira",
        "road",
        "delora",
        "gralora",
        "adamss",
        "vblora",
        "waveft",
        "trainable_tokens",
        "adaption_prompt",
        "prefix_tuning",
        "p_tuning",
        "prompt_tuning",
    ):
        assert table[name].peft_type == name.upper()


def test_the_registry_loads_without_torch_or_peft() -> None:
    code = (
        "import sys; from harness.methods.registry import method_names; from harness.config import CellConfig; "
        "CellConfig(model='tiny-llama', method='vera', task='emotion'); assert len(method_names()) > 40; "
        "print(sorted(m for m in ('torch', 'peft', 'transformers') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


# peft's own benchmark (method_comparison/MetaMathQA, Llama-3.2-3B, default target modules)
PEFT_BENCHMARK = [
    ("lora", {"r": 32}, 9_175_040),
    ("dora", {"r": 32}, 9_289_728),
    ("vera", {}, 129_024),
    ("oft", {"r": 32, "oft_block_size": 0}, 8_171_520),
    ("boft", {}, 802_816),
]


@pytest.mark.parametrize(("method", "args", "trainable"), PEFT_BENCHMARK, ids=[m for m, _, _ in PEFT_BENCHMARK])
def test_meta_device_counts_match_peft_benchmark(method: str, args: dict, trainable: int) -> None:
    config = CellConfig(model="llama-3.2-3b", method=method, task="billsum", method_args=args)
    assert count_parameters(config)[0] == trainable


def _plan_error(tmp_path: Path, method: str, method_args: dict, task: str = "emotion") -> str:
    from harness.dispatch import commands

    matrix = tmp_path / "m.yaml"
    matrix.write_text(
        json.dumps(
            {
                "name": "m",
                "models": ["tiny-llama"],
                "tasks": [task],
                "seeds": [0],
                "methods": [{"name": method, "set": {"method_args": method_args}}],
            }
        )
    )
    with pytest.raises(ConfigError) as error:
        commands.plan(matrix, output_dir=tmp_path / "out", with_status=False)
    assert "\n" not in str(error.value)
    return str(error.value)


def test_an_unknown_method_lists_every_valid_one() -> None:
    with pytest.raises(ConfigError) as error:
        parse_cell_config({"model": "tiny-llama", "method": "lorra", "task": "emotion"})
    message = str(error.value)
    assert "unknown method 'lorra'; valid: " in message and "\n" not in message
    assert all(name in message.split("valid: ")[1].split(", ") for name in methods())


def test_unknown_method_args_are_refused_at_plan_time_with_every_valid_field(tmp_path: Path) -> None:
    message = _plan_error(tmp_path, "vera", {"rank": 4})
    assert "unknown method_args rank; valid VeraConfig fields: " in message
    listed = message.split("fields: ")[1].split(", ")
    assert listed == config_fields(resolve_method("vera")) and "r" in listed and "projection_prng_key" in listed


@pytest.mark.parametrize("field", sorted(MANAGED_FIELDS))
def test_fields_the_harness_sets_are_refused_with_that_reason(tmp_path: Path, field: str) -> None:
    message = _plan_error(tmp_path, "oft", {field: "x"})
    assert f"method_args {field} are set by the harness" in message and "unknown" not in message


def test_trainable_tokens_without_tokens_is_refused_at_plan_time(tmp_path: Path) -> None:
    assert "set method_args.token_indices" in _plan_error(tmp_path, "trainable_tokens", {}, task="billsum")


def test_a_saved_adapter_config_is_a_method_args_source(tmp_path: Path) -> None:
    from peft import LoraConfig

    LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj"], task_type="SEQ_CLS").save_pretrained(tmp_path)
    saved = tmp_path / "adapter_config.json"
    config = parse_cell_config(
        {
            "model": "tiny-llama",
            "method": "lora",
            "task": "emotion",
            "method_args": {"from": str(saved), "lora_dropout": 0.0},
        }
    )
    assert config.method_args["r"] == 4 and config.method_args["lora_dropout"] == 0.0
    assert sorted(config.method_args["target_modules"]) == ["k_proj", "q_proj"]
    assert not set(config.method_args) & {"peft_type", "task_type", "base_model_name_or_path", "peft_version"}
    count_parameters(config)  # every field of the file is a valid LoraConfig field

    with pytest.raises(
        ConfigError, match="a LORA adapter config, but method 'vera' is VERA; methods of that type: lora"
    ):
        parse_cell_config(
            {"model": "tiny-llama", "method": "vera", "task": "emotion", "method_args": {"from": str(saved)}}
        )
    with pytest.raises(ConfigError, match="no such file"):
        parse_cell_config(
            {
                "model": "tiny-llama",
                "method": "lora",
                "task": "emotion",
                "method_args": {"from": str(tmp_path / "missing.json")},
            }
        )


def test_harness_methods_lists_every_method_and_why_not(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "methods", "--json"], capture_output=True, text=True, check=True
    )
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    assert list(rows) == list(methods())
    assert rows["vera"]["config_class"] == "VeraConfig" and all(rows["vera"]["families"].values())
    assert rows["xlora"]["kinds"] == {"classification": False, "generation": False}
    assert "already trained" in rows["xlora"]["why_not"]["llama/causal"]
    assert rows["adaption_prompt"]["families"] == {"t5": False, "llama": True, "bert": False}
    assert "modules_to_save" in rows["trainable_tokens"]["why_not"]["bert/seqcls"]
    assert rows["zeroshot"]["families"]["bert"] is False
    table = subprocess.run([sys.executable, "-m", "harness.cli", "methods"], capture_output=True, text=True, check=True)
    assert all(name in table.stdout for name in methods())


def test_the_report_asks_each_method_its_part() -> None:
    """What a report needs of a method is in its entry: one zero-shot reference (untrained), one
    efficiency baseline, which methods train every weight (no rank); a name this peft lacks is none."""
    from harness.methods.registry import DECLARED, known_method, method_in_role

    reference, baseline = method_in_role("reference"), method_in_role("efficiency_baseline")
    assert (reference.name, reference.shown_as, reference.trains) == ("zeroshot", "zero-shot", False)
    assert (baseline.name, baseline.shown_as, baseline.trains) == ("lora", "LoRA", True)
    for role in ("reference", "efficiency_baseline"):
        assert sum(spec.report_role == role for spec in DECLARED) == 1
    assert [name for name, spec in methods().items() if spec.whole_model] == ["full"]
    assert resolve_method("vera").shown_as == "vera" and resolve_method("vera").report_role is None
    assert known_method("lora") is resolve_method("lora") and known_method("a_method_peft_dropped") is None


def test_a_saved_adapter_config_is_measured_before_it_is_read(tmp_path: Path) -> None:
    """A 2 GB (sparse) adapter_config.json is refused by its size; one with a NaN by its value."""
    import time
    import tracemalloc

    huge = tmp_path / "adapter_config.json"
    with huge.open("wb") as handle:
        handle.truncate(2 << 30)
    cell = {"model": "tiny-llama", "method": "lora", "task": "emotion", "method_args": {"from": str(huge)}}
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"2,147,483,648 bytes, larger than 1024 KiB; an adapter_config.json"):
        parse_cell_config(cell)
    seconds, peak = time.perf_counter() - start, tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert seconds < 0.5 and peak < 5 * 2**20, (seconds, peak)
    huge.write_text('{"peft_type": "LORA", "r": 4, "lora_alpha": NaN}')
    with pytest.raises(ConfigError, match="method_args: lora_alpha: nan is not a finite number"):
        parse_cell_config(cell)
