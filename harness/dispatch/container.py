"""Run each cell's python inside a pinned image: Apptainer on clusters, Docker where allowed.

``executor.container`` in a matrix file (``harness.matrix.schema.ContainerSpec``)::

    executor:
      container: {runtime: apptainer, image: ~/images/harness.sif, binds: [/scratch/data], env: {K: V}}

submitit starts every job with ``<python> -u -m submitit.core._submit <folder>``. With a
container, ``<python>`` is a launcher script written into the submitit folder at
submission (``container-<runtime>-gpu<N>.sh``): it runs ``python`` in the image with the
job's arguments. A script rather than an inline command because (1) submitit's local
executor splits the command on whitespace and runs it without a shell, and (2) the job's
own environment (``SLURM_*`` of the srun step, ``SUBMITIT_*``, ``CUDA_VISIBLE_DEVICES``)
exists only when the job runs, so the pass-through list is built then.

Decisions
---------
- **Same paths inside and out.** The matrix's output folder (with the cell folders), the
  submitit folder, ``$HARNESS_CACHE`` (models, tokenizers) and ``$HF_HOME`` (hub and
  datasets caches) are bound at their host paths, and ``HARNESS_CACHE``/``HF_HOME`` are
  set to those paths, so submitit's pickles, ``result.json`` and the configs' absolute paths
  mean the same thing on both sides. More paths: ``binds``.
- **Apptainer: ``--cleanenv``.** The host's environment (a venv's ``PATH``, the
  ``PYTHONPATH`` of the job's setup lines that points at the checkout, module-system
  ``LD_LIBRARY_PATH``) would otherwise leak into the image and shadow its pinned stack.
  What the job needs is passed explicitly: the static values with ``--env``, the dynamic
  ones (``SLURM_*``, ``SUBMITIT_*``, ``CUDA_VISIBLE_DEVICES``, ``HARNESS_*``, ``HF_*``,
  ``MLFLOW_*``, thread counts) as ``APPTAINERENV_*`` exported by the launcher. ``--nv``
  when the cell asks for GPUs. Apptainer binds ``$HOME`` itself.
- **Docker:** ``--rm``, ``--gpus all`` when the cell asks for GPUs (``CUDA_VISIBLE_DEVICES``
  from SLURM is passed in and selects among them), ``--pid=host`` (NVML's per-process
  memory and the ledger's worker pid need host pids), ``--ipc=host`` (PyTorch's shared
  memory; Docker's default /dev/shm is 64 MB), ``--network=host`` (a tracking server on
  the node or the login host), ``--user $(id -u):$(id -g)`` with ``-e HOME -e USER`` (files
  belong to the caller; a uid unknown to the image needs both), ``-w <output folder>``.
  Docker does not forward a SIGKILL to the container: a job killed hard leaves its
  container to finish; ``docker ps --filter label=harness.job=<job id>`` finds it.
- **The image is recorded.** At submission the host resolves the image's digest (Docker:
  ``docker image inspect`` ``.Id``, plus the first ``RepoDigests`` entry when there is
  one; Apptainer: the sha256 of the .sif file) and passes ``HARNESS_CONTAINER_RUNTIME``,
  ``HARNESS_CONTAINER_IMAGE``, ``HARNESS_CONTAINER_DIGEST`` (and ``..._REPO_DIGEST``) into
  the job; ``harness.environment`` copies them into ``result.environment["container"]``.
  A missing image fails the submission, not every job.
- **Requeue on preemption.** submitit requeues with ``scontrol requeue``, which needs the
  cluster's SLURM libraries, ``slurm.conf`` and munge socket: none is in the image, and
  binding them is fragile (library versions, plugin paths, site layouts). The image ships a
  stand-in ``scontrol`` that only explains this and succeeds, so a signalled cell still
  checkpoints and ends cleanly; the scheduler records it as TIMEOUT/PREEMPTED, and
  ``harness matrix MATRIX --retry-failed`` resubmits exactly the unfinished cells, which
  resume from their checkpoints (``run.json`` keeps counting attempts). A site that wants
  in-job requeues binds its own scontrol over it (``binds`` + ``env``; see README).
- **MLflow.** MLflow 3 refuses its file store and cannot create a default database in a
  read-only working folder, so ``MLFLOW_TRACKING_URI`` inside the image is the host's when
  that is a server or database URI, and otherwise a SQLite file in the mounted output
  folder (``sqlite:///<output_dir>/mlflow.db``). A cell's own ``tracking.uri`` still wins.

``harness run --local`` does not use the container (it runs the cell in this process).
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import ConfigError
from harness.matrix import Matrix
from harness.matrix.schema import ContainerSpec
from harness.names import cache_dir

RUNTIMES = ("none", "apptainer", "docker")
# passed from the job's environment into the image (the launcher checks each name at run time)
PASS_PREFIXES = ("SLURM_", "SUBMITIT_", "HARNESS_", "HF_", "MLFLOW_", "CUDA_", "NVIDIA_", "TORCH_")
PASS_NAMES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TOKENIZERS_PARALLELISM", "PYTORCH_CUDA_ALLOC_CONF", "TZ")
# never passed: they describe the host's python, not the image's
BLOCKED_NAMES = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "LD_LIBRARY_PATH", "PATH")


class Shell(str):
    """An argument the launcher leaves to the shell (``"$(id -u):$(id -g)"``): not quoted."""


@dataclass
class ContainerCommand:
    """The pieces of one launcher: the runtime's argv up to ``python``, and what the script adds."""

    runtime: str
    argv: list[str]
    # exported before the runtime starts (Apptainer: APPTAINERENV_* for values with commas)
    exports: dict[str, str] = field(default_factory=dict)
    static_env: dict[str, str] = field(default_factory=dict)

    def render(self) -> str:
        return render_launcher(self)


# --------------------------------------------------------------------------- spec


def container_spec(matrix: Matrix) -> ContainerSpec | None:
    """The matrix's container settings, or None when cells run on the host."""
    spec = matrix.spec.executor.container
    return None if spec.runtime == "none" else spec


def image_reference(spec: ContainerSpec) -> str:
    image = (spec.image or "").strip()
    if spec.runtime == "apptainer" and "://" not in image:
        return str(Path(os.path.expanduser(os.path.expandvars(image))).absolute())
    return image


def executable(spec: ContainerSpec) -> str:
    if spec.executable:
        return spec.executable
    if spec.runtime == "apptainer":
        return "apptainer" if shutil.which("apptainer") or not shutil.which("singularity") else "singularity"
    return "docker"


# --------------------------------------------------------------------------- digest

_SIF_DIGESTS: dict[tuple[str, int, int], str] = {}


def image_digest(spec: ContainerSpec, *, check: bool = True) -> dict[str, str]:
    """``{"digest": ..., "repo_digest": ...}`` of the image, resolved on this host.

    With ``check``, a missing image (no .sif file, unknown Docker image) is a ConfigError.
    """
    ref = image_reference(spec)
    if spec.runtime == "apptainer":
        if "://" in ref:  # pulled by every job: nothing stable to record
            return {}
        path = Path(ref)
        if not path.is_file():
            if check:
                raise ConfigError(f"executor.container.image: {ref} is not a file (build it with `make sif`)")
            return {}
        stat = path.stat()
        key = (str(path), stat.st_size, int(stat.st_mtime_ns))
        if key not in _SIF_DIGESTS:
            digest = hashlib.sha256()
            with path.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 22), b""):
                    digest.update(chunk)
            _SIF_DIGESTS[key] = f"sha256:{digest.hexdigest()}"
        return {"digest": _SIF_DIGESTS[key]}
    if spec.runtime == "docker":
        try:
            out = subprocess.run(
                [executable(spec), "image", "inspect", "--format", "{{.Id}} {{range .RepoDigests}}{{.}},{{end}}", ref],
                capture_output=True,
                text=True,
                timeout=60,
            )
        except (OSError, subprocess.SubprocessError) as error:
            if check:
                raise ConfigError(
                    f"executor.container: cannot run {executable(spec)} image inspect: {error}"
                ) from error
            return {}
        if out.returncode != 0:
            if check:
                message = (out.stderr.strip().splitlines() or ["not found"])[-1]
                raise ConfigError(
                    f"executor.container.image: docker image {ref!r}: {message} (build it with `make container`)"
                )
            return {}
        image_id, _, repo = out.stdout.strip().partition(" ")
        result = {"digest": image_id}
        if repo.strip():
            result["repo_digest"] = repo.strip().split(",")[0]
        return result
    return {}


# --------------------------------------------------------------------------- binds and env


def _host_cache(var: str, default: Path) -> Path:
    return Path(os.path.expanduser(os.environ.get(var) or str(default))).absolute()


def default_binds(matrix: Matrix) -> list[str]:
    """Host paths every cell needs, bound at the same path (created when missing)."""
    home = Path.home()
    paths = [
        matrix.output_dir,
        matrix.submitit_folder,
        cache_dir().absolute(),
        _host_cache("HF_HOME", home / ".cache" / "huggingface"),
    ]
    binds: list[str] = []
    for path in paths:
        path = Path(path).absolute()
        if any(path == Path(b) or Path(b) in path.parents for b in binds):
            continue  # already inside a bound folder
        binds.append(str(path))
    return binds


def tracking_uri(matrix: Matrix) -> str:
    """MLFLOW_TRACKING_URI inside the image: a server/database URI as is, else SQLite in the output folder."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or matrix.tracking_uri
    scheme = uri.split("://", 1)[0] if "://" in uri else ""
    if scheme and scheme != "file":
        return uri
    return f"sqlite:///{matrix.output_dir / 'mlflow.db'}"


def container_env(matrix: Matrix, spec: ContainerSpec, digest: dict[str, str] | None) -> dict[str, str]:
    """The static environment of every cell in the image (the user's ``env`` last)."""
    home = Path.home()
    env = {
        "HARNESS_CONTAINER_RUNTIME": spec.runtime,
        "HARNESS_CONTAINER_IMAGE": image_reference(spec),
        "HARNESS_CACHE": str(_host_cache("HARNESS_CACHE", home / ".cache" / "harness")),
        "HF_HOME": str(_host_cache("HF_HOME", home / ".cache" / "huggingface")),
        "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
        "HF_DATASETS_OFFLINE": os.environ.get("HF_DATASETS_OFFLINE", "1"),
        "MLFLOW_TRACKING_URI": tracking_uri(matrix),
    }
    for key, value in (digest or {}).items():
        env[f"HARNESS_CONTAINER_{key.upper()}"] = value
    env.update(spec.env)
    return env


# --------------------------------------------------------------------------- command lines


def apptainer_command(
    spec: ContainerSpec, *, gpus: int, binds: list[str], env: dict[str, str], workdir: str
) -> ContainerCommand:
    argv = [executable(spec), "exec", "--cleanenv"]
    if gpus > 0:
        argv.append("--nv")
    all_binds = [*binds, *spec.binds]
    if all_binds:
        argv += ["--bind", ",".join(all_binds)]
    argv += ["--pwd", workdir]
    exports: dict[str, str] = {}
    for key, value in env.items():
        if "," in value:  # --env splits on commas
            exports[f"APPTAINERENV_{key}"] = value
        else:
            argv += ["--env", f"{key}={value}"]
    argv += [*spec.options, image_reference(spec), "python"]
    return ContainerCommand("apptainer", argv, exports=exports, static_env=env)


def docker_command(
    spec: ContainerSpec, *, gpus: int, binds: list[str], env: dict[str, str], workdir: str
) -> ContainerCommand:
    argv = [executable(spec), "run", "--rm", "--pid=host", "--ipc=host", "--network=host"]
    if gpus > 0:
        argv += ["--gpus", "all"]
    argv += [
        "--user",
        Shell('"$(id -u):$(id -g)"'),
        "-e",
        "HOME",
        "-e",
        "USER",
        "--label",
        Shell('"harness.job=${SLURM_JOB_ID:-${SUBMITIT_LOCAL_JOB_ID:-}}"'),
    ]
    for bind in [*binds, *spec.binds]:
        parts = bind.split(":")
        argv += ["-v", bind if len(parts) > 1 else f"{bind}:{bind}"]
    argv += ["-w", workdir]
    for key, value in env.items():
        argv += ["-e", f"{key}={value}"]
    argv += [Shell('"${passthrough[@]}"'), *spec.options, "--entrypoint", "python", image_reference(spec)]
    return ContainerCommand("docker", argv, static_env=env)


def build_command(matrix: Matrix, spec: ContainerSpec, *, gpus: int, digest: dict[str, str] | None) -> ContainerCommand:
    env = container_env(matrix, spec, digest)
    binds = default_binds(matrix)
    workdir = str(matrix.output_dir)
    make = apptainer_command if spec.runtime == "apptainer" else docker_command
    return make(spec, gpus=gpus, binds=binds, env=env, workdir=workdir)


def render_launcher(command: ContainerCommand) -> str:
    """The bash launcher: pass the job's dynamic variables, then exec the runtime with the job's args."""
    static = sorted(command.static_env) + ["HOME", "USER"]
    patterns = "|".join([*(f"{p}*" for p in PASS_PREFIXES), *PASS_NAMES])
    lines = [
        "#!/bin/bash",
        f"# harness: runs the job's python inside the image ({command.runtime}); written by `harness matrix`,",
        "# see harness/dispatch/container.py. Arguments: those of python (-u -m submitit.core._submit FOLDER).",
        "set -euo pipefail",
        *(f"export {key}={shlex.quote(value)}" for key, value in command.exports.items()),
        "passthrough=()",
        "for name in $(compgen -e); do",
        '    case "$name" in',
        f"        {'|'.join(static)}|{'|'.join(BLOCKED_NAMES)}) ;;",
    ]
    if command.runtime == "apptainer":
        lines.append(f'        {patterns}) export "APPTAINERENV_$name=${{!name}}" ;;')
    else:
        lines.append(f'        {patterns}) passthrough+=(-e "$name") ;;')
    lines += ["    esac", "done"]
    if command.runtime == "docker":
        lines.append(': "${USER:=$(id -un 2>/dev/null || echo user)}"; export USER')
    words = [a if isinstance(a, Shell) else shlex.quote(a) for a in command.argv]
    # one option per line: a flag with its value, the runtime with its subcommand
    groups: list[list[str]] = [words[:2]]
    for arg, word in zip(command.argv[2:], words[2:]):
        last = groups[-1]
        takes_value = (
            len(last) == 1
            and last[0].startswith("-")
            and "=" not in last[0]
            and last[0] not in ("--rm", "--cleanenv", "--nv")
        )
        if takes_value and not arg.startswith("-"):
            last.append(word)
        else:
            groups.append([word])
    lines.append("exec " + " \\\n    ".join(" ".join(g) for g in groups) + ' "$@"')
    return "\n".join(lines) + "\n"


def launcher_path(matrix: Matrix, spec: ContainerSpec, gpus: int) -> Path:
    return matrix.submitit_folder / f"container-{spec.runtime}-gpu{gpus}.sh"


def write_launcher(matrix: Matrix, gpus: int) -> Path:
    """Resolve the image's digest, write the launcher into the submitit folder; its path."""
    spec = container_spec(matrix)
    if spec is None:
        raise ValueError("the matrix runs cells on the host (executor.container.runtime: none)")
    command = build_command(matrix, spec, gpus=gpus, digest=image_digest(spec))
    for bind in default_binds(matrix):
        Path(bind).mkdir(parents=True, exist_ok=True)  # docker -v needs the source; apptainer --bind too
    path = launcher_path(matrix, spec, gpus)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(command.render())
    tmp.chmod(0o755)
    tmp.replace(path)
    return path


def python_command(matrix: Matrix, gpus: int, *, write: bool = True) -> str | None:
    """The ``python`` submitit starts jobs with when the matrix uses a container, else None.

    ``write=False`` (``harness plan``) names the launcher without resolving the image.
    """
    spec = container_spec(matrix)
    if spec is None:
        return None
    path = write_launcher(matrix, gpus) if write else launcher_path(matrix, spec, gpus)
    return shlex.quote(str(path))


def describe(matrix: Matrix, gpus: int) -> str | None:
    """The launcher as ``harness plan`` shows it (digest resolved at submission)."""
    spec = container_spec(matrix)
    if spec is None:
        return None
    return build_command(matrix, spec, gpus=gpus, digest={"digest": "<resolved at submission>"}).render()
