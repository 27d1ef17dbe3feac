"""``harness methods``: every method, its peft config class, and where it runs (and why not)."""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.methods.registry import MethodSpec, methods
from harness.models.registry import FAMILIES
from harness.tasks.kinds import KINDS


@dataclass
class MethodRow:
    name: str
    config_class: str  # "-" for full fine-tuning and zero-shot
    description: str
    families: dict[str, bool]  # t5/llama/bert -> runs on at least one of its heads
    kinds: dict[str, bool]  # classification/generation -> runs on at least one family
    why_not: dict[str, str] = field(default_factory=dict)  # "family/head" -> reason


def method_rows() -> list[MethodRow]:
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    from harness.methods.build import combination_refusal

    rows = []
    for spec in methods().values():
        runs: dict[tuple[str, str], bool] = {}
        why_not: dict[str, str] = {}
        for kind in KINDS.values():
            for family, head in kind.heads.items():
                reason = combination_refusal(spec, family, head)
                runs[(family, head)] = reason is None
                if reason:
                    why_not[f"{family}/{head}"] = reason
        config_class = PEFT_TYPE_TO_CONFIG_MAPPING[spec.peft_type].__name__ if spec.peft_type else "-"
        rows.append(
            MethodRow(
                name=spec.name,
                config_class=config_class,
                description=_describe(spec),
                families={family: any(ok for (f, _), ok in runs.items() if f == family) for family in FAMILIES},
                kinds={name: any(runs[(f, h)] for f, h in kind.heads.items()) for name, kind in KINDS.items()},
                why_not=why_not,
            )
        )
    return rows


def _describe(spec: MethodSpec) -> str:
    if spec.description:
        return spec.description
    return f"peft {spec.peft_type} with peft's defaults" if spec.generated else ""


def render_methods(rows: list[MethodRow]) -> str:
    kinds = list(KINDS)
    header = ["method", "peft config", *FAMILIES, *kinds, "notes"]
    lines = []
    for row in rows:
        reasons = sorted(set(row.why_not.values()))
        where = {reason: [k for k, v in row.why_not.items() if v == reason] for reason in reasons}
        notes = "; ".join(f"not on {', '.join(keys)}: {reason}" for reason, keys in where.items()) or row.description
        lines.append(
            [
                row.name,
                row.config_class,
                *("yes" if row.families[f] else "no" for f in FAMILIES),
                *("yes" if row.kinds[k] else "no" for k in kinds),
                notes,
            ]
        )
    widths = [max(len(str(r[i])) for r in [header, *lines]) for i in range(len(header) - 1)]
    out = []
    for values in [header, ["-" * w for w in widths] + ["-----"], *lines]:
        out.append("  ".join(str(v).ljust(w) for v, w in zip(values, widths)) + "  " + str(values[-1]))
    runnable = sum(1 for r in rows if any(r.kinds.values()))
    out.append(
        f"\n{len(rows)} methods ({runnable} runnable in a cell); the rest are refused at plan time with the "
        "reason above. Any method takes its peft config's fields as method_args, or "
        "method_args: {from: adapter_config.json}."
    )
    return "\n".join(out)
