"""Synthetic sides for the comparison's tests: cells with chosen figures and environments."""

from __future__ import annotations

from typing import Any

from harness.compare.sides import Sample, Side
from harness.report.load import CellRow

GIB = 1024**3
H100 = "NVIDIA H100 80GB HBM3"
PACKAGES = {"packages.torch": "2.13.0", "packages.transformers": "4.60.0", "packages.peft": "0.19.0"}


def gpu_facts(name: str = H100, **changes: str) -> dict[str, str]:
    return {
        "accelerator.type": "cuda",
        "accelerator.name": name,
        "accelerator.device_count": "1",
        **PACKAGES,
        **changes,
    }


def cpu_facts(**changes: str) -> dict[str, str]:
    return {
        "accelerator.type": "cpu",
        "accelerator.name": "x86_64",
        "accelerator.torch_threads": "2",
        "accelerator.cpu_count": "2",
        **PACKAGES,
        **changes,
    }


def sample(
    seed: int,
    f1: float | None = None,
    *,
    accuracy: float | None = None,
    method: str = "lora",
    model: str = "tiny-bert",
    task: str = "emotion",
    status: str = "success",
    facts: dict[str, str] | None = None,
    settings: dict[str, str] | None = None,
    cell_id: str | None = None,
    **figures: Any,
) -> Sample:
    """One cell; ``figures``: CellRow efficiency fields (train_peak_bytes=..., train_samples_per_s=...)."""
    on_gpu = (facts or gpu_facts()).get("accelerator.type") != "cpu"
    metrics = {k: v for k, v in (("f1_macro", f1), ("accuracy", accuracy)) if v is not None}
    row = CellRow(
        cell_id=cell_id or f"{method}-{seed}",
        task=task,
        model=model,
        method=method,
        seed=seed,
        status=status,
        metrics=metrics if status == "success" else {},
        **figures,
    )
    for phase in ("train", "eval"):
        if getattr(row, f"{phase}_peak_bytes") is not None:
            setattr(row, f"{phase}_peak_measure", "gpu" if on_gpu else "rss")
    return Sample(row, facts if facts is not None else gpu_facts(), settings or {"train.learning_rate": "0.001"})


def side(name: str, samples: list[Sample]) -> Side:
    return Side(name, f"synthetic {name.lower()}", samples)


def f1_side(name: str, values: dict[int, float], **kwargs: Any) -> Side:
    return side(name, [sample(seed, value, **kwargs) for seed, value in values.items()])
