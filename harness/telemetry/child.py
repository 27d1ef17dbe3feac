"""The sampling process: runs next to training, writes ``telemetry.csv`` incrementally.

It must never outlive its parent (crash, SIGKILL, SLURM requeue), so it watches
three things: ``PR_SET_PDEATHSIG`` (the kernel sends SIGTERM when the parent
dies), EOF on the control pipe (the parent's end closes with the parent) and
``os.getppid()`` each tick (fallback for non-Linux and for pdeathsig being
disabled). SIGTERM always means a graceful exit that flushes the CSV and writes
the final meta (see ``_Termination``).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.jsonfile import write_json_atomic

from .host import HostBackend
from .nvml import NvmlBackend, NvmlUnavailable
from .schema import COMMON_COLUMNS, CSV_NAME, META_NAME, CsvSink

_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class ChildConfig:
    out_dir: str
    interval_s: float
    backend: str  # "auto" | "nvml" | "host"
    root_pid: int
    parent_pid: int
    exclude_pids: tuple[int, ...]
    t0_mono: float  # CLOCK_MONOTONIC is system-wide on Linux: parent and child agree
    flush_interval_s: float = 1.0
    tree_refresh_s: float = 1.0
    use_pdeathsig: bool = True


class SharedPhase:
    """The current phase in shared memory, guarded by a sequence counter (a seqlock).

    Writing is two integer stores and a memcpy: no lock, no IPC round trip, so
    ``set_phase`` can never block training. One writer (the parent, which
    serialises its threads); the child retries a read that raced a write.
    """

    SIZE = 256

    def __init__(self, ctx: Any, initial: str) -> None:
        self._seq = ctx.RawValue(ctypes.c_uint64, 0)
        self._buf = ctx.RawArray(ctypes.c_char, self.SIZE)
        self.set(initial)

    def set(self, name: str) -> None:
        data = name.encode("utf-8", "replace")[: self.SIZE - 1]
        self._seq.value += 1  # odd: write in progress
        self._buf.value = data
        self._seq.value += 1

    def get(self) -> str:
        data = b""
        for _ in range(1000):
            before = self._seq.value
            data = self._buf.value
            if before % 2 == 0 and self._seq.value == before:
                break
            time.sleep(0)
        return data.decode("utf-8", "replace")


def set_parent_death_signal(sig: int = signal.SIGTERM) -> bool:
    """Ask Linux to send ``sig`` to this process when its parent (thread) dies."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def open_backend(cfg: ChildConfig, nvml_module: Any | None = None) -> tuple[Any, str | None]:
    """The backend to sample with and, if NVML was not used, why.

    ``auto`` falls back to host; an explicit ``nvml`` that cannot start raises
    :class:`NvmlUnavailable` (sampling off) rather than silently measuring the CPU.
    """
    exclude = set(cfg.exclude_pids) | {os.getpid()}
    reason: str | None = None
    if cfg.backend in ("auto", "nvml"):
        try:
            return NvmlBackend(
                nvml_module, root_pid=cfg.root_pid, exclude_pids=exclude, tree_refresh_s=cfg.tree_refresh_s
            ), None
        except NvmlUnavailable as exc:
            if cfg.backend == "nvml":
                raise
            reason = str(exc)
    elif cfg.backend != "host":
        raise ValueError(f"unknown telemetry backend {cfg.backend!r} (auto, nvml, host)")
    else:
        reason = "host backend requested"
    return HostBackend(cfg.root_pid, exclude, tree_refresh_s=cfg.tree_refresh_s), reason


class _Terminated(BaseException):
    """Raised by the SIGTERM handler; BaseException so no `except Exception` eats it."""


class _Termination:
    """How SIGTERM is handled: raised during set-up (nothing to flush yet), then only noted.

    Once the CSV is open, an exception injected at an arbitrary bytecode could land inside the
    shutdown that writes the CSV tail and the final meta (the parent-death signal often arrives
    just as the loop has seen the parent go), so the loop polls ``requested`` instead: a stop
    takes at most one sampling interval.
    """

    raise_now = True
    requested = False


def _on_sigterm(signum: int, frame: Any) -> None:
    _Termination.requested = True
    if _Termination.raise_now:
        _Termination.raise_now = False
        raise _Terminated()


def child_main(cfg: ChildConfig, phase: SharedPhase, conn: Any) -> None:
    """Process entry point (spawn): set up the death watch, open the backend, sample."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    # Ctrl-C reaches the whole process group; the parent decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        _run(cfg, phase, conn)
    except _Terminated:
        pass  # terminated before the CSV was open: nothing to flush


def _run(cfg: ChildConfig, phase: SharedPhase, conn: Any) -> None:
    pdeathsig = cfg.use_pdeathsig and set_parent_death_signal()
    if os.getppid() != cfg.parent_pid:
        return  # the parent died before prctl took effect
    out = Path(cfg.out_dir)
    meta_path = out / META_NAME
    meta: dict[str, Any] = {
        "pid": os.getpid(),
        "interval_s": cfg.interval_s,
        "requested_backend": cfg.backend,
        "pdeathsig": pdeathsig,
        "config": asdict(cfg),
    }
    try:
        backend, reason = open_backend(cfg)
        meta.update(backend.meta())
        meta["backend"] = backend.name
        meta["nvml_unavailable_reason"] = reason
        _Termination.raise_now = False  # from here a SIGTERM is a request the loop honours
        sink = CsvSink(out / CSV_NAME, COMMON_COLUMNS + backend.columns)
    except Exception as exc:
        meta["backend"] = None
        meta["error"] = f"{type(exc).__name__}: {exc}"
        meta["nvml_unavailable_reason"] = str(exc) if isinstance(exc, NvmlUnavailable) else None
        _safe_write_meta(meta_path, meta)
        _safe_send(conn, ("error", meta))
        return
    _safe_write_meta(meta_path, meta)
    _safe_send(conn, ("ready", meta))
    try:
        meta["exit_reason"] = _loop(cfg, phase, conn, backend, sink, meta, meta_path)
    except Exception:
        meta["exit_reason"] = "crashed"
        meta["error"] = traceback.format_exc(limit=5)
    finally:
        # Each step on its own: with the parent gone, a backend may fail to describe its process
        # tree, and that must not cost the CSV flush or the final meta (exit_reason).
        for step in (sink.close, backend.close, lambda: meta.update(backend.meta())):
            try:
                step()
            except Exception as exc:
                meta.setdefault("shutdown_errors", []).append(f"{type(exc).__name__}: {exc}")
        _safe_write_meta(meta_path, meta)


def _loop(
    cfg: ChildConfig, phase: SharedPhase, conn: Any, backend: Any, sink: CsvSink, meta: dict[str, Any], meta_path: Path
) -> str:
    seq = 0
    errors: list[str] = []
    n_errors = 0
    unavailable = list(meta.get("unavailable_fields") or [])

    def take_sample() -> None:
        nonlocal seq, n_errors
        t_mono = time.monotonic()
        t_wall = time.time()
        name = phase.get()  # the phase at sampling time, before the (slower) reads
        try:
            rows = backend.sample()
        except Exception as exc:  # one bad tick must not end sampling
            n_errors += 1
            if len(errors) < 10:
                errors.append(f"{type(exc).__name__}: {exc}")
            meta["sample_errors"] = {"count": n_errors, "first": errors}
            return
        stamp = {"seq": seq, "t_wall": t_wall, "t_mono": t_mono, "t_rel_s": t_mono - cfg.t0_mono, "phase": name}
        sink.write({**row, **stamp} for row in rows)
        seq += 1

    next_t = time.monotonic()
    last_flush = next_t
    while True:
        if _Termination.requested:
            return "sigterm"
        if os.getppid() != cfg.parent_pid:
            return "parent_gone"
        try:
            if conn.poll(max(0.0, next_t - time.monotonic())):
                if conn.recv() == "stop":
                    take_sample()  # close the last phase with a fresh reading
                    return "stopped"
                continue
        except (EOFError, OSError):
            return "parent_gone"  # the parent's end of the pipe closed with it
        now = time.monotonic()
        if now < next_t:
            continue
        take_sample()
        next_t += cfg.interval_s
        if next_t <= now:  # fell behind (loaded host): skip ticks, the gap shows in max_gap_s
            next_t = now + cfg.interval_s
        if now - last_flush >= cfg.flush_interval_s:
            sink.flush()
            last_flush = now
            current = backend.meta()
            if current.get("unavailable_fields") != unavailable:  # keep the on-disk record crash-safe
                unavailable = list(current.get("unavailable_fields") or [])
                meta.update(current)
                _safe_write_meta(meta_path, meta)


def _safe_write_meta(path: Path, meta: dict[str, Any]) -> None:
    try:
        write_json_atomic(path, meta, indent=1, sort_keys=True)
    except Exception:
        pass


def _safe_send(conn: Any, msg: Any) -> None:
    try:
        conn.send(msg)
    except Exception:
        pass
