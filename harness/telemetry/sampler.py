"""``TelemetrySampler``: the training-side handle of the sampling process.

Contract with the cell runner: no public method ever raises, and a sampler
problem never fails training. Fatal problems (sampling off) land in ``error``,
non-fatal ones in ``warnings``; both also go into the summary.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import os
import sys
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.config import TelemetryBackend

from .child import ChildConfig, SharedPhase, child_main
from .schema import CSV_NAME, META_NAME, PNG_NAME, PhaseMarker, read_json, read_rows
from .summary import metrics_from_summary, summarize

BackendName = TelemetryBackend  # defined with the config that names it
INITIAL_PHASE = "none"


@contextlib.contextmanager
def _spawn_without_main() -> Iterator[None]:
    """Hide ``__main__`` while spawning.

    A spawn child re-imports the parent's main module (``init_main_from_path``/
    ``_from_name``); for a training entry point that means importing torch and
    the whole stack into a process that only needs psutil and pynvml. The target
    lives in an importable module, so the child does not need ``__main__``.
    """
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


def _resource_tracker_pid() -> int | None:
    # Spawning starts multiprocessing's resource tracker, a child of ours that is
    # not part of the workload; start it now to learn its pid and exclude it.
    try:
        from multiprocessing import resource_tracker

        resource_tracker.ensure_running()
        return resource_tracker._resource_tracker._pid  # type: ignore[attr-defined]
    except Exception:
        return None


class TelemetrySampler:
    """Samples NVML (or host CPU/RSS) in a separate process, stamped with the current phase.

    >>> with TelemetrySampler(cell_dir) as s:
    ...     s.set_phase("train"); train()
    >>> s.summary(), s.metrics(), s.artifacts
    """

    def __init__(
        self,
        out_dir: str | os.PathLike[str],
        interval_s: float = 0.2,
        backend: BackendName = "auto",
        *,
        root_pid: int | None = None,
        initial_phase: str = INITIAL_PHASE,
        flush_interval_s: float = 1.0,
        tree_refresh_s: float = 1.0,
        start_timeout_s: float = 30.0,
        stop_timeout_s: float = 5.0,
        plot: bool = True,
    ) -> None:
        self.out_dir = Path(out_dir)
        self._dir = self.out_dir.absolute()  # the child and a later chdir must agree on it
        self.interval_s = float(interval_s)
        self.requested_backend = backend
        self.root_pid = root_pid if root_pid is not None else os.getpid()
        self.flush_interval_s = flush_interval_s
        self.tree_refresh_s = tree_refresh_s
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.plot = plot
        self.error: str | None = None
        self.warnings: list[str] = []
        self.markers: list[PhaseMarker] = []
        self.meta: dict[str, Any] = {}
        self.exit_code: int | None = None
        self._phase_name = initial_phase
        self._owner_pid = os.getpid()  # a forked copy of this object must not act
        self._lock = threading.Lock()
        self._proc: Any = None
        self._conn: Any = None
        self._phase: SharedPhase | None = None
        self._t0 = 0.0
        self._t_end_rel: float | None = None
        self._started = False
        self._stopped = False
        self._summary: dict[str, Any] | None = None

    # -- paths --------------------------------------------------------------
    @property
    def csv_path(self) -> Path:
        return self._dir / CSV_NAME

    @property
    def png_path(self) -> Path:
        return self._dir / PNG_NAME

    @property
    def meta_path(self) -> Path:
        return self._dir / META_NAME

    @property
    def artifacts(self) -> dict[str, Path]:
        """Files written so far: ``telemetry_csv`` and (after stop) ``timeline_png``."""
        out = {}
        for key, name in (("telemetry_csv", CSV_NAME), ("timeline_png", PNG_NAME)):
            try:
                if (self._dir / name).exists():
                    out[key] = self.out_dir / name
            except OSError:
                pass
        return out

    @property
    def pid(self) -> int | None:
        """Pid of the sampling process (None if it never started)."""
        return getattr(self._proc, "pid", None)

    @property
    def backend(self) -> str | None:
        """The backend actually used ("nvml" / "host"), known once the child is ready."""
        return self.meta.get("backend")

    @property
    def phase(self) -> str:
        return self._phase_name

    @property
    def running(self) -> bool:
        try:
            return self._proc is not None and self._proc.is_alive()
        except Exception:
            return False

    # -- lifecycle --------------------------------------------------------------
    def start(self) -> TelemetrySampler:
        """Spawn the sampling process and wait (bounded) until it samples. Never raises."""
        if self._started or os.getpid() != self._owner_pid:
            return self
        self._started = True
        try:
            self._start()
        except Exception as exc:
            self._fail(f"telemetry start failed: {type(exc).__name__}: {exc}")
            self._reap()
        return self

    def _start(self) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)
        for stale in (self.csv_path, self.png_path, self.meta_path):  # e.g. a requeued cell in the same folder
            stale.unlink(missing_ok=True)
        ctx = multiprocessing.get_context("spawn")
        self._phase = SharedPhase(ctx, self._phase_name)
        self._conn, child_conn = ctx.Pipe(duplex=True)
        self._t0 = time.monotonic()
        self.markers = [PhaseMarker(self._phase_name, 0.0, time.time())]
        tracker = _resource_tracker_pid()
        cfg = ChildConfig(
            out_dir=str(self._dir),
            interval_s=self.interval_s,
            backend=self.requested_backend,
            root_pid=self.root_pid,
            parent_pid=os.getpid(),
            exclude_pids=(tracker,) if tracker else (),
            t0_mono=self._t0,
            flush_interval_s=self.flush_interval_s,
            tree_refresh_s=self.tree_refresh_s,
            # pdeathsig fires when the *thread* that spawned the child exits: only
            # safe from the main thread; elsewhere the pipe/getppid watch suffices.
            use_pdeathsig=threading.current_thread() is threading.main_thread(),
        )
        self._proc = ctx.Process(
            target=child_main, args=(cfg, self._phase, child_conn), name="harness-telemetry", daemon=True
        )
        with _spawn_without_main():
            self._proc.start()
        child_conn.close()  # so the child's death shows up as EOF on our end
        atexit.register(self._atexit)
        self._wait_ready()

    def _wait_ready(self) -> None:
        try:
            ready = self._conn.poll(self.start_timeout_s)
            msg = self._conn.recv() if ready else None
        except (EOFError, OSError):
            self._proc.join(1.0)
            self._fail(f"telemetry process died during start (exit code {self._proc.exitcode})")
            self._reap()
            return
        if msg is None:
            self.warnings.append(f"telemetry process not ready after {self.start_timeout_s:.0f}s; left running")
            return
        kind, meta = msg
        self.meta = dict(meta)
        if kind != "ready":
            self._fail(str(meta.get("error") or "telemetry process failed to start"))
            self._reap()

    def set_phase(self, name: str) -> None:
        """Stamp ``name`` on every later sample. Lock-free shared memory; never blocks on the child."""
        try:
            name = str(name)
            with self._lock:
                self._phase_name = name
                if not self._started:
                    return  # becomes the initial phase
                if self._stopped:
                    return
                if self._phase is not None:
                    self._phase.set(name)
                self.markers.append(PhaseMarker(name, time.monotonic() - self._t0, time.time()))
        except Exception as exc:
            self.warnings.append(f"set_phase({name!r}) failed: {exc}")

    def stop(self) -> None:
        """Stop sampling, then write the summary and ``timeline.png``. Idempotent; never raises."""
        if self._stopped or os.getpid() != self._owner_pid:
            return
        self._stopped = True
        try:
            atexit.unregister(self._atexit)
        except Exception:
            pass
        if self._started:
            self._t_end_rel = time.monotonic() - self._t0
        else:
            self._fail("telemetry sampler was never started")
        try:
            self._stop_process()
        except Exception as exc:
            self.warnings.append(f"stopping the telemetry process: {type(exc).__name__}: {exc}")
        reason = read_json(self.meta_path).get("exit_reason") if self._started and self.error is None else None
        if reason not in (None, "stopped"):
            self.warnings.append(
                f"telemetry process ended before stop() ({reason}); samples cover only part of the run"
            )
        try:
            self._summary = self._compute_summary()
        except Exception as exc:
            self.warnings.append(f"telemetry summary failed: {type(exc).__name__}: {exc}")
            self._summary = self._empty_summary()
        if self.plot and self._summary.get("sample_count"):
            try:
                from .plot import plot_timeline

                plot_timeline(
                    read_rows(self.csv_path),
                    self.png_path,
                    markers=self.markers,
                    t_end_rel_s=self._t_end_rel,
                    backend=self._summary.get("backend"),
                    title=f"telemetry: {self.out_dir.name} ({self._summary.get('backend')})",
                )
            except Exception as exc:
                self.warnings.append(f"timeline plot failed: {type(exc).__name__}: {exc}")
                self._summary["warnings"] = list(self.warnings)

    def _stop_process(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.is_alive():
            try:
                self._conn.send("stop")
            except (OSError, ValueError):
                pass  # the child is gone already
            proc.join(self.stop_timeout_s)
            if proc.is_alive():
                self.warnings.append(f"telemetry process did not stop within {self.stop_timeout_s}s; killed")
                proc.kill()
                proc.join(2.0)
        self._reap()

    def _reap(self) -> None:
        """Make sure the child is gone and release the pipe (used on every failure path)."""
        proc = self._proc
        try:
            if proc is not None:
                if proc.is_alive():
                    proc.kill()
                proc.join(2.0)
                self.exit_code = proc.exitcode
        except Exception:
            pass
        try:
            if self._conn is not None:
                self._conn.close()
        except Exception:
            pass

    def _atexit(self) -> None:
        self.stop()

    def _fail(self, message: str) -> None:
        self.error = message
        self.warnings.append(message)

    def __enter__(self) -> TelemetrySampler:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- results ------------------------------------------------------------------
    def _empty_summary(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "sample_count": 0,
            "phases": {},
            "unavailable_fields": [],
            "error": self.error,
            "warnings": list(self.warnings),
        }

    def _compute_summary(self) -> dict[str, Any]:
        meta = {**self.meta, **read_json(self.meta_path)} if self._started else dict(self.meta)
        if meta:
            self.meta = meta
        if self.error is None and meta.get("error"):
            self._fail(str(meta["error"]))
        rows = read_rows(self.csv_path) if self._started and self.meta.get("backend") else []
        summary = summarize(
            rows,
            markers=self.markers,
            t_end_rel_s=self._t_end_rel if self._stopped else time.monotonic() - self._t0,
            backend=meta.get("backend"),
            meta=meta,
        )
        summary["interval_s"] = self.interval_s
        summary["phase_markers"] = [m.to_dict() for m in self.markers]
        summary["requested_backend"] = self.requested_backend
        summary["exit_reason"] = meta.get("exit_reason")
        summary["error"] = self.error
        summary["warnings"] = list(self.warnings)
        return summary

    def summary(self) -> dict[str, Any]:
        """JSON-serialisable per-phase summary (final after ``stop()``, live before). Never raises."""
        if self._summary is not None:
            return self._summary
        try:
            return self._compute_summary()
        except Exception as exc:
            self.warnings.append(f"telemetry summary failed: {type(exc).__name__}: {exc}")
            return self._empty_summary()

    def metrics(self) -> dict[str, float]:
        """Flat ``{gpu|host}/{phase}/{stat}`` floats for MLflow. Never raises."""
        try:
            return metrics_from_summary(self.summary())
        except Exception:
            return {}
