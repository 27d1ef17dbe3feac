"""A cell of the smoke matrix runs inside the CPU image, as a job of the real local SLURM
cluster (runtime docker): its result.json lands in the bind-mounted output folder with the
image's digest, and ``harness collect`` imports it.

The image comes from ``containers/ci-build.sh`` (private dockerd, debootstrap base,
host-built wheelhouse; every step cached). The test skips only when no Docker engine can
be started here at all.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from dispatch_helpers import smoke_dict, write_matrix

pytestmark = [pytest.mark.docker, pytest.mark.slurm, pytest.mark.slow]

import slurm_cluster  # noqa: E402  (tests/ is on sys.path via conftest)

REPO = Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("HARNESS_TEST_IMAGE", "harness:cpu")
DOCKER_UNAVAILABLE = 3  # ci-build.sh's exit status when dockerd cannot start


@pytest.fixture(scope="module")
def docker_image():
    """Build (or reuse) the CPU image; yields (DOCKER_HOST, image id)."""
    if os.geteuid() != 0 and not os.environ.get("DOCKER_HOST"):
        pytest.skip("docker: ci-build.sh needs root to install and start a private dockerd")
    name, _, tag = IMAGE.partition(":")
    started = time.monotonic()
    out = subprocess.run(
        ["bash", str(REPO / "containers" / "ci-build.sh")],
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ, "IMAGE": name, "TAG": tag or "latest"},
    )
    print(out.stderr, f"[ci-build] fixture total {time.monotonic() - started:.1f} s")
    if out.returncode == DOCKER_UNAVAILABLE:
        pytest.skip(f"docker: no Docker engine can start here: {out.stderr.strip().splitlines()[-1:]}")
    assert out.returncode == 0, out.stderr[-4000:]
    lines = out.stdout.strip().splitlines()
    docker_host = lines[-2].removeprefix("export DOCKER_HOST=")
    previous = os.environ.get("DOCKER_HOST")
    os.environ["DOCKER_HOST"] = docker_host  # the jobs inherit it through sbatch
    yield docker_host, lines[-1]
    if previous is None:
        os.environ.pop("DOCKER_HOST", None)
    else:
        os.environ["DOCKER_HOST"] = previous


@pytest.fixture(scope="module")
def slurm_env():
    if not slurm_cluster.cluster_available():
        pytest.skip("no SLURM cluster up and slurm/up.sh cannot start one here")
    return slurm_cluster.ensure_cluster()


def test_image_runs_harness(docker_image):
    _, image_id = docker_image
    out = subprocess.run(
        ["/usr/bin/docker", "run", "--rm", IMAGE, "--help"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0 and "usage" in out.stdout.lower(), out.stderr
    inspect = subprocess.run(
        ["/usr/bin/docker", "image", "inspect", "--format", "{{.Config.User}} {{.Id}}", IMAGE],
        capture_output=True,
        text=True,
        timeout=60,
    )
    user, digest = inspect.stdout.split()
    assert user == "1000:1000" and digest == image_id


def test_smoke_cell_in_docker_on_slurm_then_collect(docker_image, slurm_env, tmp_path):
    from harness.dispatch import render_status, submit, wait
    from harness.matrix import load_matrix
    from harness.result import load_result
    from harness.tracking.collect import collect, render_collect

    _, image_id = docker_image
    data = smoke_dict(tmp_path / "out", name="docker-smoke", models=["tiny-bert"], methods=["lora"], exclude=[])
    data["overrides"] = [o for o in data["overrides"] if o["match"].get("method") == "lora"]
    data["executor"].update(
        kind="slurm", container={"runtime": "docker", "image": IMAGE, "executable": "/usr/bin/docker"}
    )
    data["resources"].update(partition=slurm_env.get("HARNESS_SLURM_PARTITION", "debug"), mem_gb=None)
    path = write_matrix(tmp_path / "docker-smoke.yaml", data)

    started = time.monotonic()
    report = submit(path)
    assert report.ok and report.executor == "slurm" and len(report.submitted) == 1, report.errors
    final = wait(path, timeout_s=300, poll_s=2)
    print(f"[docker-smoke] submit to success: {time.monotonic() - started:.1f} s")
    assert final.counts() == {"success": 1}, render_status(final)

    cell = load_matrix(path).active[0]
    assert str(cell.folder).startswith(str(tmp_path / "out"))  # in the bind-mounted output folder
    result = load_result(cell.folder)
    container = result.environment["container"]
    assert container["runtime"] == "docker" and container["image"] == IMAGE and container["digest"] == image_id
    assert container["variant"] == "cpu"  # set by the image itself
    assert result.environment["packages"]["torch"] == "2.13.0+cpu"
    assert result.environment["python"].startswith("3.11.") and result.environment["git_commit"]
    # the job's python ran as the caller (files are the caller's) with its SLURM identity
    assert (cell.folder / "result.json").stat().st_uid == os.getuid()
    assert result.environment["slurm"].get("SLURM_JOB_ID")
    launcher = Path(load_matrix(path).submitit_folder) / "container-docker-gpu0.sh"
    assert launcher.exists() and image_id in launcher.read_text()

    collected = collect(path)
    assert collected.ok and len(collected.created) == 1, render_collect(collected)
