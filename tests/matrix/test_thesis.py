"""jobs/thesis.yaml: the study's grid plans offline, with parameter counts that match peft's own."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from harness.matrix import load_matrix

REPO = Path(__file__).resolve().parents[2]
THESIS = REPO / "jobs" / "thesis.yaml"

# cells per seed, as the study describes them
SUMM_T5 = ["zeroshot", "lora", "qlora", "adalora", "loha", "lokr", "ia3", "ptuning"]
SUMM_LLAMA = ["zeroshot", "lora", "qlora", "adalora", "loha", "lokr", "ia3", "prefix"]
CLS_LLAMA = ["lora", "loha", "lokr", "adalora", "ia3", "qlora"]
CLS_T5 = ["lora", "loha", "lokr", "adalora", "ia3", "qlora", "ptuning"]


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from harness.dispatch import commands

    # builds each distinct model skeleton on the meta device: ~30 s, no weights, no network
    return commands.plan(THESIS, output_dir=tmp_path_factory.mktemp("thesis"), with_status=False)


def test_cell_count_is_the_grid(tmp_path):
    matrix = load_matrix(THESIS, output_dir=tmp_path)
    seeds = matrix.spec.seeds
    assert seeds == [0, 1, 2]
    assert not matrix.warnings  # every override matches a cell
    cells = Counter((c.task, c.model, c.method) for c in matrix.active)
    expected: dict[tuple[str, str, str], int] = {}
    for task, model, methods in (
        ("billsum", "flan-t5-xl", SUMM_T5),
        ("billsum", "llama-3.2-3b-instruct", SUMM_LLAMA),
        ("emotion", "llama-3.2-3b", CLS_LLAMA),
        ("emotion", "flan-t5-xl", CLS_T5),
        ("emotion", "bert-base-uncased", ["full"]),
    ):
        for method in methods:
            # zero-shot is deterministic (no training, greedy decoding): one seed
            expected[task, model, method] = 1 if method == "zeroshot" else len(seeds)
    assert dict(cells) == expected
    assert len(matrix.active) == 3 * (7 + 7 + 6 + 7 + 1) + 2 == 86


def test_study_settings(tmp_path):
    cells = {
        (c.task, c.model, c.method): c.config for c in load_matrix(THESIS, output_dir=tmp_path).active if c.seed == 0
    }
    t5_lora = cells["billsum", "flan-t5-xl", "lora"]
    assert t5_lora.method_args == {"r": 2, "lora_alpha": 4, "target_modules": ["q", "v"]}
    assert (t5_lora.train.epochs, t5_lora.train.learning_rate, t5_lora.train.batch_size, t5_lora.train.grad_accum) == (
        10,
        6e-2,
        1,
        4,
    )
    assert (t5_lora.data.max_source_tokens, t5_lora.data.max_target_tokens) == (1400, 256)
    assert t5_lora.train.optimizer == "paged_adamw_8bit" and t5_lora.train.max_grad_norm == 0.3
    assert t5_lora.train.gradient_checkpointing and t5_lora.data.source.hub_id == "FiscalNote/billsum"
    for key in (
        ("billsum", "flan-t5-xl", "ptuning"),
        ("billsum", "llama-3.2-3b-instruct", "prefix"),
        ("emotion", "flan-t5-xl", "ptuning"),
    ):
        assert not cells[key].train.gradient_checkpointing
    assert cells["billsum", "llama-3.2-3b-instruct", "ia3"].method_args["feedforward_modules"] == ["down_proj"]
    assert cells["emotion", "llama-3.2-3b", "adalora"].method_args["total_step"] == 8000
    cls = cells["emotion", "llama-3.2-3b", "lora"]
    assert (cls.train.batch_size, cls.train.epochs, cls.train.learning_rate, cls.data.class_weighted_loss) == (
        2,
        20,
        5e-5,
        True,
    )
    assert cls.data.eval_split == "test" and cls.data.source.hub_id == "dair-ai/emotion"


@pytest.mark.slow  # the plan fixture builds ~30 meta-device models: ~30-60 s on two shared cores
def test_plan_offline_counts_every_cell(plan):
    assert len(plan.rows) == 86
    for row in plan.rows:
        label = f"{row['task']}/{row['model']}/{row['method']}"
        assert row["error"] is None, (label, row["error"])
        assert isinstance(row["total_params"], int) and row["total_params"] > 1e8, label
        if row["method"] == "zeroshot":
            assert row["trainable_params"] == 0, label
        elif row["method"] == "full":
            assert row["trainable_params"] == row["total_params"], label
        else:
            assert 0 < row["trainable_params"] < row["total_params"] / 10, label


def _row(plan: Any, task: str, model: str, method: str) -> dict[str, Any]:
    return next(r for r in plan.rows if (r["task"], r["model"], r["method"], r["seed"]) == (task, model, method, 0))


def _peft_count(model: str, head: str, peft_config: Any, num_labels: int | None = None) -> tuple[int, int]:
    import peft
    import torch

    from harness.models import build_meta_model, resolve_model

    base = build_meta_model(resolve_model(model), head, num_labels=num_labels)
    with torch.device("meta"):
        wrapped = peft.get_peft_model(base, peft_config)
    return wrapped.get_nb_trainable_parameters()


@pytest.mark.slow
def test_counts_match_peft(plan):
    from peft import IA3Config, LoraConfig

    t5 = _row(plan, "billsum", "flan-t5-xl", "lora")
    expected = _peft_count(
        "flan-t5-xl", "seq2seq", LoraConfig(r=2, lora_alpha=4, target_modules=["q", "v"], task_type="SEQ_2_SEQ_LM")
    )
    assert (t5["trainable_params"], t5["total_params"]) == expected
    # 24 encoder + 24 decoder blocks; self-attention q,v in each, plus the decoder's cross-attention q,v,
    # each d_model 2048 -> inner 2048 (32 heads x 64): 2 * (2048 + 2048) per module
    assert expected[0] == (24 * 2 + 24 * 4) * 2 * (2048 + 2048)

    llama = _row(plan, "emotion", "llama-3.2-3b", "lora")
    expected = _peft_count(
        "llama-3.2-3b",
        "seqcls",
        LoraConfig(r=8, lora_alpha=16, target_modules=["k_proj", "v_proj"], task_type="SEQ_CLS"),
        num_labels=6,
    )
    assert (llama["trainable_params"], llama["total_params"]) == expected
    # 28 layers x (k, v: 3072 -> 1024) x r=8, plus the trained 6-label score head (3072 x 6)
    assert expected[0] == 28 * 2 * 8 * (3072 + 1024) + 3072 * 6

    ia3 = _row(plan, "billsum", "llama-3.2-3b-instruct", "ia3")
    targets = ["k_proj", "v_proj", "gate_proj", "up_proj", "down_proj"]
    expected = _peft_count(
        "llama-3.2-3b-instruct",
        "causal",
        IA3Config(target_modules=targets, feedforward_modules=["down_proj"], task_type="CAUSAL_LM"),
    )
    assert (ia3["trainable_params"], ia3["total_params"]) == expected


def test_thesis_tuned_is_the_study_with_a_learning_rate_sweep_per_method(tmp_path):
    from harness.names import SELECT_STAGE

    study = load_matrix(THESIS, output_dir=tmp_path / "study")
    tuned = load_matrix(REPO / "jobs" / "thesis-tuned.yaml", output_dir=tmp_path / "tuned")
    assert tuned.name == "thesis-tuned" and tuned.spec.resources == study.spec.resources  # extends: thesis.yaml
    trained = {(c.task, c.model, c.method) for c in study.active if c.method != "zeroshot"}
    assert {(s.task, s.model, s.method) for s in tuned.selections} == trained
    for selection in tuned.selections:
        rates = [c.config.train.learning_rate for c in selection.points]
        assert len(rates) == 7 and rates == sorted(rates) and rates[-1] / rates[0] == pytest.approx(1000)
        assert selection.metric == {"emotion": "f1_macro", "billsum": "rougeL"}[selection.task]
        assert selection.seeds == [0, 1, 2]
        point = selection.points[0].config
        assert point.data.eval_split == "validation" and point.data.max_eval_samples == 500
        # everything but the swept rate, the split and the selection set is the study's cell
        study_cell = next(
            c.config
            for c in study.active
            if (c.task, c.model, c.method, c.seed) == (selection.task, selection.model, selection.method, 0)
        )
        assert point.method_args == study_cell.method_args and point.train.epochs == study_cell.train.epochs
        # halving needs a step budget: the steps the study's epochs make (emotion 16,000 tweets / 2;
        # BillSum 17,054 bills after the held-out 10 %, / 4), so the training is the study's
        assert point.train.max_steps == {"emotion": 8000, "billsum": 4264}[selection.task] * study_cell.train.epochs
        assert selection.eta == 3 and selection.rungs == [2400, 7200, point.train.max_steps]
        # every other setting is the study's: the restated models and tasks sections kept in step
        differing = {k for k in _differences(point.model_dump(), study_cell.model_dump()) if not k.startswith("tags.")}
        assert differing <= {
            "train.learning_rate",
            "train.max_steps",
            "data.eval_split",
            "data.max_eval_samples",
            "output_dir",
            "tracking.experiment",
        }, differing
    ia3 = next(s for s in tuned.selections if s.method == "ia3")
    assert ia3.points[0].config.train.learning_rate == 1e-4
    zeroshot = [c for c in tuned.cells if c.method == "zeroshot"]
    assert len(zeroshot) == 2 and all(c.stage is None for c in zeroshot)
    assert len([c for c in tuned.cells if c.stage == SELECT_STAGE]) == 7 * len(trained)
    # the full grid to compare with: the same cells, no halving
    full = load_matrix(REPO / "jobs" / "thesis-tuned-full-grid.yaml", output_dir=tmp_path / "full")
    assert {c.cell_id for c in full.cells} == {c.cell_id for c in tuned.cells}
    assert all(s.rungs == [] for s in full.selections) and len(full.selections) == len(tuned.selections)


def _differences(a: dict, b: dict, prefix: str = "") -> set[str]:
    """The dotted keys whose values differ between two nested mappings."""
    keys = set(a) | set(b)
    out: set[str] = set()
    for key in keys:
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            out |= _differences(x, y, f"{prefix}{key}.")
        elif x != y:
            out.add(f"{prefix}{key}")
    return out


def test_demo_sweep_has_each_demo_rate_inside_its_grid(tmp_path):
    """The rate demo.yaml runs (the last selection) is not at an edge of demo-sweep.yaml's grid:
    a best rate beyond it could show (issue 21: LoHa and full were selected at the upper edge)."""
    demo = load_matrix(REPO / "jobs" / "demo.yaml", output_dir=tmp_path / "demo")
    sweep = load_matrix(REPO / "jobs" / "demo-sweep.yaml", output_dir=tmp_path / "sweep")
    assert {s.method for s in sweep.selections} == {"lora", "loha", "ia3", "full"}
    for selection in sweep.selections:
        rates = [c.config.train.learning_rate for c in selection.points]
        assert rates == sorted(rates) and len(rates) >= 3
        ran = next(
            c.config.train.learning_rate for c in demo.cells if (c.model, c.method) == ("minilm-l6", selection.method)
        )
        assert rates[0] < ran < rates[-1], (selection.method, ran, rates)
