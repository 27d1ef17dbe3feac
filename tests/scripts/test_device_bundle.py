"""The GPU machine's bundle is complete: a cell runs with only its image's packages plus wheels.txt.

scripts/device/gpu-check.sh runs on a machine that reaches no package index. A dependency the
harness gains without a line in wheels.txt would surface only there, in scarce device time; here
the same cells (LoRA and QLoRA on a tiny Llama, as gpu_check.py runs them) run in a subprocess that
sees no other distribution, as there (``python -S`` over a folder of links to the allowed ones).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEVICE = ROOT / "scripts" / "device"


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _names(path: Path) -> set[str]:
    lines = (line.strip() for line in path.read_text().splitlines())
    return {_normal(line) for line in lines if line and not line.startswith("#")}


def _requirements(dist: str) -> set[str]:
    """What ``dist``, as installed here, requires (extras left out)."""
    try:
        requires = metadata.requires(dist) or []
    except metadata.PackageNotFoundError:
        return set()
    return {_normal(re.split(r"[\s<>=!~;\[(]", r, maxsplit=1)[0]) for r in requires if "extra ==" not in r}


def _closure(dists: set[str]) -> set[str]:
    closure, todo = set(dists), list(dists)
    while todo:
        for name in _requirements(todo.pop()) - closure:
            closure.add(name)
            todo.append(name)
    return closure


def allowed_distributions() -> set[str]:
    """What a process may import here to stand for the GPU machine with the carried wheels.

    There: exactly the image's packages (its full list) and the wheels. Here the image's packages
    may be other versions with other requirements (huggingface_hub 2 needs httpx2), so their
    requirements are allowed too, except those that the harness or a carried wheel requires
    itself: each of those must be in the image or in wheels.txt.
    """
    image, wheels = _names(DEVICE / "image-packages.txt"), _names(DEVICE / "wheels.txt")
    ours = _requirements("harness").union(*(_requirements(w) for w in wheels))
    return image | wheels | {"harness"} | (_closure(image) - ours)


def _site_with_only(allowed: set[str], site: Path) -> list[str]:
    """A site folder of links to the installed distributions in ``allowed``; returns those left out.

    Run with ``python -S`` and this folder on PYTHONPATH, a process sees no other distribution, the way
    the GPU machine lacks them: ``find_spec`` returns None and ``metadata.version`` raises, so optional
    imports inside the libraries behave as they would there.
    """
    site.mkdir()
    left_out = []
    for dist in metadata.distributions():
        name = _normal(dist.metadata["Name"])
        if name not in allowed:
            left_out.append(name)
            continue
        for top in {Path(str(f)).parts[0] for f in dist.files or ()}:
            if top != ".." and not (site / top).exists() and Path(dist.locate_file(top)).exists():
                (site / top).symlink_to(Path(dist.locate_file(top)).resolve())
    return sorted(set(left_out))


CHILD = """
import json, sys, tempfile
from pathlib import Path
from harness.cell import run_cell
from harness.config import CellConfig

root = Path(tempfile.mkdtemp())
statuses = {}
for method in ("lora", "qlora"):
    config = CellConfig(
        model="tiny-llama", method=method, task="emotion", output_dir=root / method,
        train={"max_steps": 3, "batch_size": 4, "progress_bar": False},
        data={"max_train_samples": 12, "max_eval_samples": 8},
        tracking={"enabled": False}, telemetry={"enabled": True, "backend": "auto", "interval_s": 0.1},
    )
    result = run_cell(config)
    statuses[method] = [result.status, result.error, sorted(result.telemetry.get("metrics", {}))[:3]]
print("BUNDLE " + json.dumps(statuses))
"""


def test_lists_name_the_expected_packages() -> None:
    image, wheels = _names(DEVICE / "image-packages.txt"), _names(DEVICE / "wheels.txt")
    assert {"torch", "nvidia-ml-py", "accelerate", "psutil"} <= image
    assert {"transformers", "peft", "bitsandbytes", "pydantic"} <= wheels


def test_cells_run_with_only_the_gpu_machines_packages(tmp_path: Path) -> None:
    left_out = _site_with_only(allowed_distributions(), tmp_path / "site")
    # The check has teeth only if this venv holds packages the GPU machine lacks.
    assert {"mlflow", "datasets", "submitit"} <= set(left_out)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": f"{tmp_path / 'site'}{os.pathsep}{ROOT}"}
    proc = subprocess.run(
        [sys.executable, "-S", "-c", CHILD], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    statuses = json.loads(proc.stdout.split("BUNDLE ", 1)[1])
    for method, (status, error, metrics) in statuses.items():
        assert status == "success", f"{method}: {error}"
        assert metrics, f"{method}: no telemetry summary"
