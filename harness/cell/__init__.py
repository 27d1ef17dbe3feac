"""One benchmark cell (model x method x task x seed): resolve its config, then run it by phase.

- :mod:`harness.cell.resolve`: the edge where a cell config is checked against the registries
  (method and task names, ``method_args: {from: ...}``, a bundled task's held-out split);
- :mod:`harness.cell.run`: the phases (load, train, evaluate, save, record) and ``result.json``.

Names are imported on first use (:mod:`harness.lazy`): ``harness plan`` resolves configs
without torch."""

from harness.lazy import lazy_exports

_EXPORTS = {
    "CellPlan": "run", "load_trained": "run", "prepare_cell": "run", "run_cell": "run",
    "load_cell_config": "resolve", "parse_cell_config": "resolve", "resolve_cell_config": "resolve",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
