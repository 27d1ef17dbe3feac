"""One benchmark cell (model x method x task x seed): resolve its config, then run it by phase.

- :mod:`harness.cell.resolve`: the edge where a cell config is checked against the registries
  (method and task names, ``method_args: {from: ...}``, a bundled task's held-out split);
- :mod:`harness.cell.plan`: every name resolved and every input checked, nothing loaded;
- the phases: :mod:`~harness.cell.load`, :mod:`~harness.cell.train`, :mod:`~harness.cell.save`,
  :mod:`~harness.cell.evaluate`, :mod:`~harness.cell.record` (with :mod:`~harness.cell.measure`:
  phase memory and telemetry);
- :mod:`harness.cell.run`: :func:`run_cell`, which composes them and writes ``result.json``
  (through :class:`harness.result.ResultFile`).

Names are imported on first use (:mod:`harness.lazy`): ``harness plan`` resolves configs
without torch."""

from harness.lazy import lazy_exports

_EXPORTS = {
    "CellPlan": "plan",
    "prepare_cell": "plan",
    "load_trained": "load",
    "Recorder": "record",
    "run_cell": "run",
    "load_cell_config": "resolve",
    "parse_cell_config": "resolve",
    "resolve_cell_config": "resolve",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
