"""One live writer per cell folder.

A cell's process holds an exclusive ``flock`` on ``<cell>/.writer.lock`` from before it
writes anything until it exits (the kernel drops the lock when the process dies, however
it dies). A second run of the same cell, say a ``--retry-failed`` while an orphaned
worker still trains, finds the lock taken and stops before touching the folder;
``harness status`` reports such a folder as running, whatever its job record says.

The lock is re-entrant within a process: the job wrapper takes it, and the cell runner
it calls finds it already held.
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from harness.errors import ConfigError

LOCK_FILE = ".writer.lock"

_held: dict[str, int] = {}  # lock path -> open descriptor, for the locks this process holds


class CellBusy(ConfigError):
    """The cell folder has a live writer already."""


def acquire(cell_dir: Path) -> bool:
    """Hold the folder's lock for the rest of this process (or until :func:`release`).

    Returns False when this process held it already (the caller then must not release it).
    Raises :class:`CellBusy` naming the holder when another live process has it."""
    path = _path(cell_dir)
    if path in _held:
        return False
    Path(cell_dir).mkdir(parents=True, exist_ok=True)
    handle = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = _read_holder(handle)
        os.close(handle)
        raise CellBusy(
            f"cell folder {cell_dir} is in use by a live run ({holder}); wait for it to end or stop "
            "that process: a folder never has two writers"
        ) from None
    os.ftruncate(handle, 0)
    os.write(handle, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
    _held[path] = handle
    return True


def release(cell_dir: Path) -> None:
    handle = _held.pop(_path(cell_dir), None)
    if handle is not None:
        os.close(handle)  # closing the descriptor drops the flock


def holder(cell_dir: Path) -> str | None:
    """Who holds the folder's lock ("pid N on HOST"), or None when nobody does."""
    path = _path(cell_dir)
    if path in _held:
        return f"pid {os.getpid()} on {socket.gethostname()}"
    try:
        handle = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return _read_holder(handle)
    else:
        fcntl.flock(handle, fcntl.LOCK_UN)
        return None
    finally:
        os.close(handle)


def _read_holder(handle: int) -> str:
    try:
        text = os.pread(handle, 200, 0).decode(errors="replace").strip()
    except OSError:
        text = ""
    return text or "another process"


def _path(cell_dir: Path) -> str:
    return str((Path(cell_dir) / LOCK_FILE).absolute())
