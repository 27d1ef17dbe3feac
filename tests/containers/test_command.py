"""The command lines that run a cell's python inside an image (Apptainer cannot run here,
so its line is checked option by option; the launchers themselves run against stub runtimes)."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from dispatch_helpers import smoke_dict

from harness.dispatch import container
from harness.dispatch.executor import group_cells, python_command
from harness.dispatch.executors import get_executor
from harness.errors import ConfigError
from harness.matrix import matrix_from_dict


def _matrix(tmp_path: Path, **spec):
    data = smoke_dict(tmp_path / "out")
    data["executor"]["container"] = spec
    return matrix_from_dict(data)


def _option_values(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == flag]


@pytest.fixture(autouse=True)
def _caches(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache" / "harness"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "cache" / "hf"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def test_schema_default_and_validation(tmp_path):
    data = smoke_dict(tmp_path / "out")
    assert matrix_from_dict(data).spec.executor.container.runtime == "none"
    data["executor"]["container"] = {"runtime": "docker"}
    with pytest.raises(ConfigError, match="needs an image"):
        matrix_from_dict(data)
    data["executor"]["container"] = {"runtime": "podman", "image": "x"}
    with pytest.raises(ConfigError):
        matrix_from_dict(data)
    data["executor"]["container"] = {"runtime": "docker", "image": "x", "bindz": []}
    with pytest.raises(ConfigError, match="bindz") as info:
        matrix_from_dict(data)
    assert "binds" in str(info.value)  # lists the container's own keys


def test_no_container_keeps_the_interpreter(tmp_path):
    matrix = matrix_from_dict(smoke_dict(tmp_path / "out"))
    group = group_cells(matrix.active)[0]
    assert container.python_command(matrix, 0) is None
    assert "container-" not in python_command(matrix, group)


@pytest.mark.parametrize("gpus", [0, 1])
def test_apptainer_command(tmp_path, gpus):
    sif = tmp_path / "harness.sif"
    matrix = _matrix(
        tmp_path,
        runtime="apptainer",
        image=str(sif),
        binds=["/scratch/data:/data:ro"],
        options=["--writable-tmpfs"],
        env={"MY_VAR": "1", "LIST": "a,b"},
    )
    spec = container.container_spec(matrix)
    cmd = container.build_command(matrix, spec, gpus=gpus, digest={"digest": "sha256:abc"})
    argv = cmd.argv
    assert argv[:3] == ["apptainer", "exec", "--cleanenv"]
    assert ("--nv" in argv) == (gpus > 0)
    binds = _option_values(argv, "--bind")[0].split(",")
    out = str(tmp_path / "out")
    assert binds == [out, str(tmp_path / "cache" / "harness"), str(tmp_path / "cache" / "hf"), "/scratch/data:/data:ro"]
    # the submitit folder (<out>/.submitit) and the cell folders are inside the bound output folder
    assert str(matrix.submitit_folder).startswith(out + "/") and all(
        str(c.folder).startswith(out + "/") for c in matrix.active
    )
    assert _option_values(argv, "--pwd") == [out]
    env = dict(v.split("=", 1) for v in _option_values(argv, "--env"))
    assert env["HARNESS_CONTAINER_RUNTIME"] == "apptainer"
    assert env["HARNESS_CONTAINER_IMAGE"] == str(sif)
    assert env["HARNESS_CONTAINER_DIGEST"] == "sha256:abc"
    assert env["HARNESS_CACHE"] == str(tmp_path / "cache" / "harness") and env["HF_HOME"] == str(
        tmp_path / "cache" / "hf"
    )
    assert env["HF_HUB_OFFLINE"] == "1"
    assert env["MLFLOW_TRACKING_URI"] == f"sqlite:///{out}/mlflow.db"
    assert env["MY_VAR"] == "1" and "LIST" not in env and cmd.exports == {"APPTAINERENV_LIST": "a,b"}
    assert argv[-3:] == ["--writable-tmpfs", str(sif), "python"]


@pytest.mark.parametrize("gpus", [0, 2])
def test_docker_command(tmp_path, gpus):
    matrix = _matrix(tmp_path, runtime="docker", image="harness:cpu", binds=["/scratch/data"], env={"MY_VAR": "x y"})
    spec = container.container_spec(matrix)
    argv = container.build_command(
        matrix, spec, gpus=gpus, digest={"digest": "sha256:def", "repo_digest": "r@sha256:1"}
    ).argv
    assert argv[:3] == ["docker", "run", "--rm"]
    assert {"--pid=host", "--ipc=host", "--network=host"} <= set(argv)
    assert (_option_values(argv, "--gpus") == ["all"]) == (gpus > 0)
    assert _option_values(argv, "--user") == ['"$(id -u):$(id -g)"']
    assert isinstance(_option_values(argv, "--user")[0], container.Shell)
    out = str(tmp_path / "out")
    volumes = _option_values(argv, "-v")
    assert volumes == [
        f"{out}:{out}",
        *(f"{p}:{p}" for p in (tmp_path / "cache" / "harness", tmp_path / "cache" / "hf")),
        "/scratch/data:/scratch/data",
    ]
    assert _option_values(argv, "-w") == [out]
    env = _option_values(argv, "-e")
    assert "HOME" in env and "USER" in env
    assert {
        "HARNESS_CONTAINER_RUNTIME=docker",
        "HARNESS_CONTAINER_IMAGE=harness:cpu",
        "HARNESS_CONTAINER_DIGEST=sha256:def",
        "HARNESS_CONTAINER_REPO_DIGEST=r@sha256:1",
        f"MLFLOW_TRACKING_URI=sqlite:///{out}/mlflow.db",
        "MY_VAR=x y",
    } <= set(env)
    assert argv[-3:] == ["--entrypoint", "python", "harness:cpu"]


def test_tracking_uri_server_is_kept(tmp_path, monkeypatch):
    matrix = _matrix(tmp_path, runtime="docker", image="x")
    assert container.tracking_uri(matrix).startswith("sqlite:///")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert container.tracking_uri(matrix) == "http://mlflow:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", str(tmp_path / "mlruns"))  # a file store: refused by MLflow 3
    assert container.tracking_uri(matrix) == f"sqlite:///{tmp_path / 'out' / 'mlflow.db'}"


STUB = """#!/bin/bash
# a stand-in runtime: records its arguments (one a line) and the environment it got
if [ "$1" = image ]; then echo "sha256:0123 harness@sha256:4567"; exit 0; fi
printf '%s\\n' "$@" > "$STUB_OUT/argv"
env > "$STUB_OUT/env"
"""


def _stub(tmp_path: Path) -> Path:
    stub = tmp_path / "runtime-stub"
    stub.write_text(STUB)
    stub.chmod(0o755)
    return stub


def _run_launcher(path: Path, tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SUBMITIT_"))}
    env.update(
        STUB_OUT=str(tmp_path),
        SLURM_JOB_ID="77",
        SLURM_PROCID="0",
        SUBMITIT_EXECUTOR="slurm",
        CUDA_VISIBLE_DEVICES="1",
        PYTHONPATH="/host/checkout",
        HARNESS_CONTAINER_IMAGE="stale",
    )
    subprocess.run([str(path), "-u", "-m", "submitit.core._submit", "/folder"], env=env, check=True, timeout=30)
    argv = (tmp_path / "argv").read_text().splitlines()
    got = dict(line.split("=", 1) for line in (tmp_path / "env").read_text().splitlines() if "=" in line)
    return argv, got


def test_docker_launcher_runs(tmp_path):
    matrix = _matrix(tmp_path, runtime="docker", image="harness:cpu", executable=str(_stub(tmp_path)))
    group = group_cells(matrix.active)[0]
    command = python_command(matrix, group)
    path = Path(command)
    assert path.parent == matrix.submitit_folder and os.access(path, os.X_OK)
    assert (tmp_path / "cache" / "harness").is_dir()  # bind sources exist before docker sees them
    argv, _ = _run_launcher(path, tmp_path)
    assert argv[-5:] == ["harness:cpu", "-u", "-m", "submitit.core._submit", "/folder"]
    assert _option_values(argv, "--user") == [f"{os.getuid()}:{os.getgid()}"]
    assert _option_values(argv, "--label") == ["harness.job=77"]
    passed = _option_values(argv, "-e")
    # the job's variables by name (docker reads their values), never the host's python
    assert {"SLURM_JOB_ID", "SLURM_PROCID", "SUBMITIT_EXECUTOR", "CUDA_VISIBLE_DEVICES", "HOME", "USER"} <= set(passed)
    assert "PYTHONPATH" not in passed and "HARNESS_CONTAINER_IMAGE" not in passed
    assert (
        "HARNESS_CONTAINER_DIGEST=sha256:0123" in passed
        and "HARNESS_CONTAINER_REPO_DIGEST=harness@sha256:4567" in passed
    )
    assert "HARNESS_CONTAINER_IMAGE=harness:cpu" in passed


def test_apptainer_launcher_runs(tmp_path):
    sif = tmp_path / "harness.sif"
    sif.write_bytes(b"not really an image")
    matrix = _matrix(
        tmp_path, runtime="apptainer", image=str(sif), executable=str(_stub(tmp_path)), env={"LIST": "a,b"}
    )
    group = group_cells(matrix.active)[0]
    argv, env = _run_launcher(Path(python_command(matrix, group)), tmp_path)
    assert argv[-5:] == [str(sif), "python", "-u", "-m", "submitit.core._submit"] or argv[-6:-4] == [str(sif), "python"]
    assert argv[0] == "exec" and "--cleanenv" in argv and "--nv" not in argv
    digest = f"sha256:{hashlib.sha256(b'not really an image').hexdigest()}"
    assert f"HARNESS_CONTAINER_DIGEST={digest}" in _option_values(argv, "--env")
    # --cleanenv: the job's variables go in as APPTAINERENV_*, the host's python stays out
    assert env["APPTAINERENV_SLURM_JOB_ID"] == "77" and env["APPTAINERENV_CUDA_VISIBLE_DEVICES"] == "1"
    assert env["APPTAINERENV_LIST"] == "a,b"
    assert "APPTAINERENV_PYTHONPATH" not in env and "APPTAINERENV_HARNESS_CONTAINER_IMAGE" not in env


def test_missing_image_fails_the_submission(tmp_path):
    matrix = _matrix(tmp_path, runtime="apptainer", image=str(tmp_path / "missing.sif"))
    with pytest.raises(ConfigError, match="make sif"):
        container.write_launcher(matrix, 0)
    stub = tmp_path / "docker-stub"
    stub.write_text("#!/bin/sh\necho 'Error: No such image: nope' >&2; exit 1\n")
    stub.chmod(0o755)
    matrix = _matrix(tmp_path, runtime="docker", image="nope", executable=str(stub))
    with pytest.raises(ConfigError, match="No such image"):
        container.write_launcher(matrix, 0)


def test_plan_shows_the_launcher_without_resolving(tmp_path):
    matrix = _matrix(tmp_path, runtime="apptainer", image=str(tmp_path / "not-built-yet.sif"))
    group = group_cells(matrix.active)[0]
    script = get_executor("slurm").job_script(matrix, group)
    assert "container-apptainer-gpu0.sh -u -m submitit.core._submit" in script
    assert (
        "#   exec apptainer exec \\" in script
        and "#       --cleanenv \\" in script
        and "<resolved at submission>" in script
    )
    assert not container.launcher_path(matrix, container.container_spec(matrix), 0).exists()
    assert yaml.safe_load(yaml.safe_dump(matrix.spec.model_dump()))["executor"]["container"]["runtime"] == "apptainer"
