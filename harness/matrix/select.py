"""Cell selection for ``--only``: ``method=lora,task=emotion``, ``model=tiny-bert|tiny-llama``.

Keys combine with AND, ``|`` separates alternatives. ``cell`` matches a cell-id prefix.
``status`` is resolved by the caller (it needs the dispatch layer) and is kept apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.errors import ConfigError
from harness.matrix.cells import Cell

FILTER_KEYS: tuple[str, ...] = ("model", "method", "task", "seed", "cell", "status")


@dataclass(frozen=True)
class CellFilter:
    terms: dict[str, frozenset[str]] = field(default_factory=dict)

    def matches(self, cell: Cell) -> bool:
        values = {"model": cell.model, "method": cell.method, "task": cell.task, "seed": str(cell.seed)}
        for key, wanted in self.terms.items():
            if key == "cell":
                if not any(cell.cell_id.startswith(prefix) for prefix in wanted):
                    return False
            elif key != "status" and values[key] not in wanted:
                return False
        return True

    @property
    def statuses(self) -> frozenset[str] | None:
        return self.terms.get("status")

    def __bool__(self) -> bool:
        return bool(self.terms)


def parse_filter(text: str | None) -> CellFilter:
    """Parse ``key=value[|value],...``; an unknown key is a one-line error listing the valid ones."""
    if not text or not text.strip():
        return CellFilter()
    terms: dict[str, frozenset[str]] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or not value.strip():
            raise ConfigError(f"--only: expected key=value, got {part!r}; keys: {', '.join(FILTER_KEYS)}")
        if key not in FILTER_KEYS:
            raise ConfigError(f"--only: unknown key {key!r}; valid keys: {', '.join(FILTER_KEYS)}")
        alternatives = frozenset(v.strip() for v in value.split("|") if v.strip())
        terms[key] = terms[key] & alternatives if key in terms else alternatives
    return CellFilter(terms)
