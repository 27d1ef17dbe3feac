"""jobs/scale.yaml: 8B and 70B cells on several GPUs and nodes plan offline (counts from the shipped
configs) and get the exact sbatch/srun lines. The local cluster has one node, so the two-node
script is checked line by line against a golden file (tests/dispatch/golden/)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from harness.dispatch import commands
from harness.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent / "golden" / "scale-two-node.sbatch"


@pytest.fixture(scope="module")
def scale_plan(tmp_path_factory):
    return commands.plan(REPO / "jobs" / "scale.yaml", output_dir=tmp_path_factory.mktemp("scale"), with_status=False)


def test_scale_cells_count_their_parameters_offline(scale_plan):
    rows = {(r["model"], r["method"]): r for r in scale_plan.rows}
    # Llama-3.1-8B with a 6-class head instead of its 128,256-token LM head
    assert rows["llama-3.1-8b", "full"]["trainable_params"] == 8_030_261_248 - 128_256 * 4096 + 6 * 4096
    # LoRA r16 on q_proj (4096->4096) and v_proj (4096->1024) of 32 layers, plus the head
    assert rows["llama-3.1-8b", "lora"]["trainable_params"] == 32 * (16 * (4096 + 4096) + 16 * (4096 + 1024)) + 6 * 4096
    assert (
        rows["llama-3.1-70b", "qlora"]["trainable_params"] == 80 * (16 * (8192 + 8192) + 16 * (8192 + 1024)) + 6 * 8192
    )


def test_scale_job_scripts_ask_for_every_gpu_and_task(scale_plan):
    scripts = {s.description.split(", ", 1)[1]: s.text for s in scale_plan.scripts}
    fsdp8b = next(t for d, t in scripts.items() if "gpus=4" in d)
    assert (
        "#SBATCH --nodes=1" in fsdp8b
        and "#SBATCH --ntasks-per-node=4" in fsdp8b
        and "#SBATCH --gpus-per-node=4" in fsdp8b
    )
    ddp = next(t for d, t in scripts.items() if "gpus=2" in d)
    assert "#SBATCH --ntasks-per-node=2" in ddp and "#SBATCH --gpus-per-node=2" in ddp
    lines = [
        line
        for line in next(t for d, t in scripts.items() if "nodes=2" in d).splitlines()
        if not line.startswith("#SBATCH --wckey")
    ]
    normalised = [
        line.replace(str(scale_plan.matrix.submitit_folder), "<SUBMITIT>")
        .replace(sys.executable, "<PYTHON>")
        .replace(str(REPO), "<REPO>")
        for line in lines
    ]
    assert normalised == GOLDEN.read_text().splitlines()


def test_fsdp_refuses_methods_whose_hooks_read_whole_weights(tmp_path):
    import yaml

    data = yaml.safe_load((REPO / "jobs" / "scale.yaml").read_text())
    data["methods"], data["grids"] = ["adalora"], [{"models": ["llama-3.1-8b"], "methods": ["adalora"]}]
    data["overrides"] = [
        {"match": {"method": "adalora"}, "set": {"train.distributed": "fsdp"}, "resources": {"gpus": 4}}
    ]
    path = tmp_path / "scale-adalora.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="fsdp cannot shard adalora: its per-step hook"):
        commands.plan(path, output_dir=tmp_path, with_status=False)
