"""Pairing the rows of two sides on (task, model, method, swept values), not on cell ids: a
version or default change alters the id of the same experiment. Rows on one side only are kept
and listed."""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.compare.sides import RowKey, Sample, Side, key_label
from harness.errors import ConfigError


@dataclass
class Pair:
    key: RowKey
    new: list[Sample]  # every cell of the row on each side, finished or not, by seed
    ref: list[Sample]

    @property
    def label(self) -> str:
        return key_label(self.key)


@dataclass
class Pairing:
    pairs: list[Pair] = field(default_factory=list)
    only_new: dict[RowKey, list[Sample]] = field(default_factory=dict)
    only_ref: dict[RowKey, list[Sample]] = field(default_factory=dict)


def _rows(side: Side) -> dict[RowKey, list[Sample]]:
    rows: dict[RowKey, list[Sample]] = {}
    for sample in side.samples:
        rows.setdefault(sample.key, []).append(sample)
    for samples in rows.values():
        samples.sort(key=lambda s: s.row.seed)
    return rows


def pair_sides(new: Side, ref: Side) -> Pairing:
    """The rows both sides have, in the new side's order; raises ConfigError when there is none."""
    new_rows, ref_rows = _rows(new), _rows(ref)
    pairing = Pairing(
        pairs=[Pair(key, samples, ref_rows[key]) for key, samples in new_rows.items() if key in ref_rows],
        only_new={k: v for k, v in new_rows.items() if k not in ref_rows},
        only_ref={k: v for k, v in ref_rows.items() if k not in new_rows},
    )
    if not pairing.pairs:
        raise ConfigError(
            f"no row of {new.name} pairs with one of {ref.name} on (task, model, method, swept values): "
            f"{new.name} has {_some(new_rows)}; {ref.name} has {_some(ref_rows)}"
        )
    return pairing


def _some(rows: dict[RowKey, list[Sample]], shown: int = 3) -> str:
    labels = [key_label(k) for k in rows]
    more = f" and {len(labels) - shown} more" if len(labels) > shown else ""
    return ", ".join(labels[:shown]) + more if labels else "none"
