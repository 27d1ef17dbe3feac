"""torch.distributed for a cell that runs as several processes (``resources``: nodes x tasks per node).

SLURM allocates the nodes and submitit starts one task per GPU (or, on a CPU, per gloo process);
every task runs the same cell job. :func:`export_environment` sets ``MASTER_ADDR``,
``MASTER_PORT``, ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` from submitit's job environment
(``submitit.helpers.TorchDistributedEnvironment``; no torchrun inside submitit, as its maintainers
advise), or keeps them when torchrun has set them. :func:`setup` starts the process group: NCCL
on GPUs, gloo on CPUs, with a collective timeout, so a rank that stops answering ends the others
instead of leaving them waiting.

How the work is split (``train.distributed: ddp``):

- every rank builds the same batch order (seeded) and trains its share of each global batch
  (:func:`shard`); ``train.batch_size`` is the global batch, which the plan refuses when the
  world size does not divide it;
- each rank's loss is scaled by its share of what the head's loss averages over (examples or
  label tokens: ``HeadSpec.loss_units``), so that DDP's averaged gradient is the one-process
  gradient of the whole batch, and the logged loss is the one-process loss;
- rank 0 alone holds the cell folder, writes result.json, log.txt, checkpoints, the adapter and
  the predictions, logs to MLflow, and evaluates (the evaluation is not sharded); the other
  ranks stop after training;
- a rank that raises writes its traceback to ``rank-<r>.error`` in the cell folder: rank 0's
  collective then fails within the timeout and the cell ends ``failed`` with that traceback.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from harness.config import CellConfig
from harness.errors import ConfigError

COLLECTIVE_TIMEOUT_ENV = "HARNESS_COLLECTIVE_TIMEOUT_S"
DEFAULT_COLLECTIVE_TIMEOUT_S = 600
ERROR_FILE = "rank-{rank}.error"
ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    mode: str = "none"
    local_world_size: int = 1  # processes on this node

    @property
    def node(self) -> int:
        return self.rank // max(self.local_world_size, 1)

    @property
    def samples_node(self) -> bool:
        """The rank that samples its node's devices (local rank 0): one sampler per node."""
        return self.local_rank == 0

    @property
    def main(self) -> bool:
        """The rank that writes (rank 0, or the only process)."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


SINGLE = Context()
_context = SINGLE


def current() -> Context:
    return _context


def distributed(config: CellConfig) -> bool:
    return config.train.distributed != "none"


def export_environment() -> Context:
    """The torch.distributed environment of this task: from torchrun's variables when they are
    set, else from submitit's job environment. Raises ConfigError outside both."""
    if not all(key in os.environ for key in ENV_KEYS):
        try:
            import submitit

            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
        except RuntimeError:
            raise ConfigError(
                "train.distributed: this process is not one task of a multi-task job; run the cell "
                "from a matrix (resources: nodes, gpus, tasks_per_node) or under torchrun"
            ) from None
    world = int(os.environ["WORLD_SIZE"])
    return Context(
        int(os.environ["RANK"]),
        world,
        int(os.environ["LOCAL_RANK"]),
        local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE") or world),
    )


def collective_timeout_s() -> float:
    return float(os.environ.get(COLLECTIVE_TIMEOUT_ENV) or DEFAULT_COLLECTIVE_TIMEOUT_S)


def setup(config: CellConfig) -> Context:
    """Start the process group for a distributed cell (a no-op otherwise); returns this rank's context."""
    global _context
    if not distributed(config):
        _context = SINGLE
        return _context
    import torch
    import torch.distributed as dist

    ctx = export_environment()
    if torch.cuda.is_available():
        torch.cuda.set_device(ctx.local_rank)
    if not dist.is_initialized():
        dist.init_process_group(
            "nccl" if torch.cuda.is_available() else "gloo", timeout=timedelta(seconds=collective_timeout_s())
        )
    _context = Context(ctx.rank, ctx.world_size, ctx.local_rank, config.train.distributed, ctx.local_world_size)
    return _context


def teardown() -> None:
    global _context
    if _context.active:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
    _context = SINGLE


def device() -> Any:
    """This rank's device: its GPU (one per task), else the CPU."""
    import torch

    return torch.device("cuda", _context.local_rank) if torch.cuda.is_available() else torch.device("cpu")


def shard(indices: Sequence[int]) -> list[int]:
    """This rank's share of a global batch (every rank holds the same order)."""
    ctx = _context
    return list(indices[ctx.rank :: ctx.world_size]) if ctx.active else list(indices)


def all_sum(values: Sequence[float]) -> list[float]:
    """Element-wise sums over the ranks (the values themselves in one process)."""
    if not _context.active:
        return list(values)
    import torch
    import torch.distributed as dist

    tensor = torch.tensor(list(values), dtype=torch.float64, device=device())
    dist.all_reduce(tensor)
    return tensor.tolist()


def gather(value: Any) -> list[Any]:
    """Every rank's ``value`` (picklable), in rank order, on every rank."""
    if not _context.active:
        return [value]
    import torch.distributed as dist

    out: list[Any] = [None] * _context.world_size
    dist.all_gather_object(out, value)
    return out


def rank_stats(device: Any) -> dict[str, Any]:
    """This rank's peak memory so far: the torch allocator's on its GPU, else the process's peak RSS."""
    import resource
    import socket
    import sys

    import torch

    if device.type == "cuda":
        peak, measure = int(torch.cuda.max_memory_allocated(device)), "gpu"
    else:
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak, measure = int(kib if sys.platform == "darwin" else kib * 1024), "rss"
    return {
        "rank": _context.rank,
        "node": _context.node,
        "host": socket.gethostname(),
        "peak_bytes": peak,
        "measure": measure,
    }


def barrier() -> None:
    if _context.active:
        import torch.distributed as dist

        dist.barrier()


def error_file(cell_dir: Path, rank: int) -> Path:
    return Path(cell_dir) / ERROR_FILE.format(rank=rank)


def record_error(cell_dir: Path, text: str, rank: int | None = None) -> None:
    """A rank other than 0 leaves its traceback where rank 0 (and a person) finds it; the first
    record of a rank stands (the job wrapper sees the same failure after the cell runner)."""
    path = error_file(cell_dir, _context.rank if rank is None else rank)
    try:
        with path.open("x") as handle:
            handle.write(text)
    except OSError:  # recorded already, or the folder is gone
        pass


def rank_errors(cell_dir: Path) -> list[tuple[int, str]]:
    """(rank, traceback) of every other rank that failed, for rank 0's result."""
    found = []
    for path in sorted(Path(cell_dir).glob(ERROR_FILE.format(rank="*"))):
        try:
            found.append((int(path.stem.split("-", 1)[1].split(".")[0]), path.read_text()))
        except (OSError, ValueError):
            continue
    return found
