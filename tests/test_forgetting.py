"""data.forgetting: peft's forgetting metric (harness.tasks.forgetting), on the real cell path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.errors import ConfigError
from harness.tasks.forgetting import BUNDLED, SAMPLE_DIR, base_model, load_sample, mean_token_loss


def _cpu() -> Any:
    import torch

    return torch.device("cpu")


def _base(name: str = "tiny-llama") -> Any:
    from harness.models import load_model, resolve_model

    loaded = load_model(resolve_model(name), "causal")
    return loaded.model.eval(), loaded.tokenizer


def test_bundled_sample_is_the_shipped_file() -> None:
    from harness.config import ForgettingConfig

    sample = load_sample(ForgettingConfig())
    assert len(sample.texts) == 60  # the whole WikiText test split: fewer than the 100 asked for
    assert sample.texts[0].startswith(" = Robert Boulter = \n")
    assert sample.source == "sha256:4cf153bbb14f9b479100b592a87ffa377b454ac43f138a93728358a5b1870e5c"
    assert (SAMPLE_DIR / BUNDLED["wikitext-103-test"]).is_file()


def test_pooled_mean_matches_a_hand_computation(tmp_path: Path) -> None:
    """Two articles of different lengths batched together (one left-padded): the figure is the
    pooled mean over every next-token loss, not the mean of the two articles' means."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    from harness.config import ForgettingConfig

    toy = tmp_path / "toy.jsonl"
    texts = ["the bill amends the act", "the committee reported the bill to the house with an amendment in the nature"]
    toy.write_text("".join(json.dumps({"title": str(i), "text": t}) + "\n" for i, t in enumerate(texts)))
    sample = load_sample(ForgettingConfig(sample=str(toy)))
    assert sample.texts == texts
    model, tokenizer = _base()
    mean, tokens = mean_token_loss(
        model, tokenizer, "causal", sample.texts, max_tokens=768, batch_size=2, device=_cpu()
    )
    per_article = []
    with torch.inference_mode():
        for text in texts:  # one at a time: no padding at all
            ids = torch.tensor([tokenizer(text)["input_ids"]])
            logits = model(input_ids=ids).logits[0]
            per_article.append(F.cross_entropy(logits[:-1], ids[0, 1:], reduction="none"))
    pooled = torch.cat(per_article)
    assert len(per_article[0]) != len(per_article[1])
    assert tokens == len(pooled)
    assert mean == pytest.approx(pooled.mean().item(), abs=1e-5)
    mean_of_means = sum(loss.mean().item() for loss in per_article) / 2
    assert abs(mean - mean_of_means) > 1e-4
    # truncation: each article keeps max_tokens tokens, of which max_tokens - 1 are predicted
    _, truncated = mean_token_loss(model, tokenizer, "causal", texts, max_tokens=4, batch_size=2, device=_cpu())
    assert truncated == 2 * 3


def test_a_lora_cell_records_forgetting_and_its_before_is_the_base_model(make_cell: Any) -> None:
    from harness.cell.load import load_trained
    from harness.cell.run import run_cell

    config = make_cell("tiny-llama", "lora", "billsum", data={"forgetting": {"articles": 3, "max_tokens": 48}})
    result = run_cell(config)
    assert result.status == "success", result.error
    record = result.forgetting
    assert record is not None and record.before is not None and record.after is not None
    assert (record.sample, record.articles, record.max_tokens) == ("wikitext-103-test", 3, 48)
    assert record.source is not None and record.source.startswith("sha256:")
    assert result.metrics["forgetting"] == pytest.approx(record.after - record.before)
    assert record.after != record.before  # trained at lr 1e-2
    texts = load_sample(config.data.forgetting).texts

    def loss(model: Any, tokenizer: Any) -> float:
        return mean_token_loss(model, tokenizer, "causal", texts, max_tokens=48, batch_size=4, device=_cpu())[0]

    # the base model loaded on its own scores what the cell measured with the adapter disabled
    assert loss(*_base()) == pytest.approx(record.before, abs=1e-6)
    # the trained cell reloaded: adapter enabled is "after", disabled is the base model again
    model, formatter, _, _ = load_trained(Path(config.output_dir))
    assert loss(model, formatter.tokenizer) == pytest.approx(record.after, abs=1e-5)
    with base_model(model):
        assert loss(model, formatter.tokenizer) == pytest.approx(record.before, abs=1e-6)
    on_disk = json.loads((Path(config.output_dir) / "result.json").read_text())
    assert on_disk["forgetting"]["before"] == record.before
    assert on_disk["metrics"]["forgetting"] == result.metrics["forgetting"]


def test_lora_forgets_nothing_before_training(make_cell: Any) -> None:
    """LoRA starts as the identity (B = 0): with the adapter enabled or disabled, the same loss."""
    from harness.cell.load import load
    from harness.cell.plan import prepare_cell

    plan = prepare_cell(make_cell("tiny-llama", "lora", "billsum", data={"forgetting": {"articles": 2}}))
    import torch

    loaded = load(plan, _cpu(), torch.float32)
    assert hasattr(loaded.model, "peft_config")
    texts = load_sample(plan.config.data.forgetting).texts

    def loss() -> float:
        return mean_token_loss(
            loaded.model, loaded.tokenizer, "causal", texts, max_tokens=64, batch_size=2, device=_cpu()
        )[0]

    enabled = loss()
    with base_model(loaded.model):
        disabled = loss()
    assert enabled - disabled == 0.0


def test_an_encoder_decoder_scores_the_text_as_its_target(make_cell: Any) -> None:
    from harness.cell.run import run_cell

    result = run_cell(make_cell("tiny-t5", "lora", "billsum", data={"forgetting": {"articles": 2, "max_tokens": 32}}))
    assert result.status == "success", result.error
    record = result.forgetting
    assert record is not None and record.tokens == 2 * 32  # every target token, its EOS cut by truncation
    assert "forgetting" in result.metrics


def test_a_classification_cell_records_forgetting_as_not_applicable(make_cell: Any) -> None:
    from harness.cell.run import run_cell

    result = run_cell(make_cell("tiny-bert", "lora", "emotion", data={"forgetting": {}}))
    assert result.status == "success", result.error
    assert result.forgetting is not None
    assert result.forgetting.not_applicable == "classification head"
    assert result.forgetting.before is None and "forgetting" not in result.metrics


@pytest.mark.parametrize("sample", ["wikitext-2", "no/such/file.jsonl", "README.md"])
def test_an_unknown_sample_is_refused_at_plan_time(make_cell: Any, sample: str) -> None:
    with pytest.raises(ConfigError) as error:
        make_cell("tiny-llama", "lora", "billsum", data={"forgetting": {"sample": sample}})
    message = str(error.value)
    assert "\n" not in message
    assert f"data.forgetting.sample {sample!r}" in message and "valid: wikitext-103-test, finewiki" in message


def test_finewiki_is_refused_offline(make_cell: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match="HF_HUB_OFFLINE"):
        make_cell("tiny-llama", "lora", "billsum", data={"forgetting": {"sample": "finewiki"}})


def test_forgetting_off_keeps_the_cell_id(make_cell: Any) -> None:
    plain = make_cell("tiny-llama", "lora", "billsum")
    assert plain.data.forgetting is None
    assert "forgetting" not in plain.identity()["data"]
    measured = make_cell("tiny-llama", "lora", "billsum", data={"forgetting": {}})
    assert measured.cell_id != plain.cell_id


@pytest.mark.slow
def test_a_pretrained_model_forgets_at_a_high_learning_rate(make_cell: Any) -> None:
    """SmolLM2 (pretrained) after two LoRA steps at lr 5e-2 on BillSum: Wikipedia text costs more."""
    from harness.cell.run import run_cell
    from harness.models import resolve_model
    from harness.models.loading import package_dir

    if package_dir(resolve_model("smollm2-135m")) is None:
        pytest.skip("run `harness prefetch --model smollm2-135m`")
    config = make_cell(
        "smollm2-135m",
        "lora",
        "billsum",
        train={"max_steps": 2, "batch_size": 2, "learning_rate": 5e-2},
        data={"forgetting": {"articles": 2, "max_tokens": 64}, "max_eval_samples": 2},
    )
    result = run_cell(config)
    assert result.status == "success", result.error
    assert result.metrics["forgetting"] > 0.5  # measured: 4.0 (loss 4.06 -> 8.06)
