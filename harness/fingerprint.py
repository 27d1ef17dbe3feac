"""Content hashes of input files (data files, model weights), computed once per file version.

A plan of 500 cells on one data file, or every cell of a matrix loading the same 6 GB model,
must not read the file each time: a hash is kept per path, size and modification time, in
memory for the process and on disk under the harness cache (``$HARNESS_CACHE/sha256/``) for
the next process (a job, the next plan). A file rewritten in place gets a new mtime, and so a
new hash.
"""

from __future__ import annotations

import hashlib
import os
import re
from functools import lru_cache
from pathlib import Path

from harness.errors import ConfigError
from harness.names import cache_dir

_BLOCK = 1 << 20
_HEX = re.compile(r"[0-9a-f]{64}")


def file_sha256(path: Path) -> str:
    """The sha256 of a file's content; a ConfigError naming it when it is not a file."""
    if not path.is_file():
        raise ConfigError(f"data file not found: {path}")
    stat = path.stat()
    return _cached(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def files_sha256(folder: Path, *, limit: int = 1000) -> dict[str, str]:
    """relative path -> sha256 of every file under a folder (a model directory), sorted; at most
    ``limit`` files (a folder past it is not a model: its hashes would say nothing)."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    if len(files) > limit:
        raise ConfigError(f"{folder}: more than {limit} files; not hashed")
    return {p.relative_to(folder).as_posix(): file_sha256(p) for p in files}


@lru_cache(maxsize=1024)
def _cached(name: str, size: int, mtime_ns: int) -> str:
    key = hashlib.sha256(f"{name}\0{size}\0{mtime_ns}".encode()).hexdigest()
    stored = cache_dir() / "sha256" / key
    try:
        known = stored.read_text().strip()
        if _HEX.fullmatch(known):
            return known
    except OSError:
        pass
    digest = hashlib.sha256()
    with open(name, "rb") as handle:
        for block in iter(lambda: handle.read(_BLOCK), b""):
            digest.update(block)
    value = digest.hexdigest()
    try:  # written whole or not at all: two jobs hashing one file at once both write the same
        stored.parent.mkdir(parents=True, exist_ok=True)
        temporary = stored.with_name(f".{key}.{os.getpid()}")
        temporary.write_text(value)
        os.replace(temporary, stored)
    except OSError:
        pass  # a read-only cache only costs the next process a hash
    return value
