"""Bench: the harness's cell against a bare hand-written loop (bench/bare_loop.py), same settings.

MiniLM-L6, LoRA r8 on query/value (alpha 8, dropout 0), AdamW at 2e-3 constant, batch 32,
300 steps, max length 128, scored on the full 2,000-example emotion test set; for each seed
both are run side by side in this one process's order, then the mean accuracy and macro-F1
of each are printed with 95 % t intervals (harness.report.stats).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_parity.py [--seeds 0 1 2] [--steps 300]
        [--modes same defaults] [--train KEY=VALUE ...] [--json PATH]

Two harness sides by default, against the same bare-loop runs: ``same`` (the bare loop's
settings for everything the bare loop does: no clipping, no warmup, random batches) and
``defaults`` (the harness's own defaults for those; today they differ from the bare loop in
clipping at 1.0 only). ``--train`` changes train settings on the defaults side, to find what
costs quality (``--train warmup_ratio=0.06 group_by_length=true`` was the defaults before
bench/results/parity-probes.jsonl showed both cost quality). Each harness mean is
marked inside or outside the bare loop's interval, and the paired difference (harness minus
bare loop, seed by seed) is printed with its own 95 % interval: at 300 steps one seed's macro-F1
moves by 10 points or more with any change to the trajectory, so only the paired interval says
whether a gap is systematic. ``--json`` writes every run and summary (bench/results/ keeps the
committed ones). About 2-4 minutes per run on two CPU cores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


# what the bare loop does where the harness has a setting of its own
BARE_SETTINGS = {"max_grad_norm": None, "warmup_ratio": 0.0, "group_by_length": False}


def harness_run(
    seed: int, steps: int, out: Path, defaults: bool, changes: dict[str, object] | None = None
) -> dict[str, float]:
    """One harness cell; ``defaults``: the harness's defaults (then ``changes``) where the bare
    loop has settings of its own, else the bare loop's."""
    from harness.cell import run_cell
    from harness.config import CellConfig

    train = {
        "max_steps": steps,
        "batch_size": 32,
        "eval_batch_size": 64,
        "learning_rate": 2e-3,
        "scheduler": "constant",
        "progress_bar": False,
        "log_every": 0,
    }
    train |= (changes or {}) if defaults else BARE_SETTINGS
    config = CellConfig(
        model="minilm-l6",
        method="lora",
        task="emotion",
        seed=seed,
        output_dir=out / f"harness-{seed}",
        method_args={"r": 8, "lora_alpha": 8, "lora_dropout": 0.0, "target_modules": ["query", "value"]},
        train=train,
        data={"max_source_tokens": 128},
        tracking={"enabled": False},
        telemetry={"enabled": False},
    )
    result = run_cell(config)
    if result.status != "success":
        raise SystemExit(f"harness cell failed: {result.error}")
    return {"accuracy": result.metrics["accuracy"], "f1_macro": result.metrics["f1_macro"]}


def bare_run(seed: int, steps: int) -> dict[str, float]:
    from harness.models import resolve_model
    from harness.models.loading import materialise
    from harness.tasks import resolve_task

    bundled = resolve_task("emotion").bundled
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "bare_loop.py"),
            materialise(resolve_model("minilm-l6")),
            str(bundled["train"]),
            str(bundled["test"]),
            "--seed",
            str(seed),
            "--steps",
            str(steps),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


MODES = {"same": "same settings as the bare loop", "defaults": "at its defaults"}


def differing_defaults(changes: dict[str, object]) -> str:
    """The defaults side's settings that are not the bare loop's, e.g. ``max_grad_norm=1.0``."""
    from harness.config import TrainConfig

    ran = TrainConfig(**changes).model_dump()
    return ", ".join(f"{key}={ran[key]}" for key, bare in BARE_SETTINGS.items() if ran[key] != bare) or "none"


def setting(text: str) -> tuple[str, object]:
    from harness import safeyaml

    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE, e.g. warmup_ratio=0.06")
    return key, safeyaml.load_yaml_text(value)


def main() -> None:
    from harness.report.stats import summarize

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=sorted(MODES),
        default=["same", "defaults"],
        help="the harness side: the bare loop's settings, its own defaults, or both (default)",
    )
    parser.add_argument("--json", type=Path, help="write every run and the summaries to this file")
    parser.add_argument(
        "--train",
        type=setting,
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="train settings changed on the defaults side, e.g. warmup_ratio=0.06",
    )
    args = parser.parse_args()
    changes = dict(args.train)
    out = Path(tempfile.mkdtemp(prefix="parity-"))
    sides = [
        "bare loop",
        *(
            f"harness, {MODES[m]}" + (f" ({differing_defaults(changes)})" if m == "defaults" else "")
            for m in args.modes
        ),
    ]
    runs: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
    for seed in args.seeds:
        runs[sides[0]].append(bare_run(seed, args.steps))
        for side, mode in zip(sides[1:], args.modes):
            runs[side].append(harness_run(seed, args.steps, out / mode, mode == "defaults", changes))
        print(
            f"seed {seed}: "
            + "  ".join(
                f"{side.split(',')[0]}{'' if side == sides[0] else ' ' + mode} "
                f"{runs[side][-1]['accuracy']:.4f}/{runs[side][-1]['f1_macro']:.4f}"
                for side, mode in zip(sides, ["", *args.modes])
            ),
            flush=True,
        )
    print(f"\nparity, {len(args.seeds)} seeds, {args.steps} steps: mean ± half-width of the 95 % t interval")
    metrics = ("accuracy", "f1_macro")
    bare = {metric: summarize([r[metric] for r in runs[sides[0]]]) for metric in metrics}
    summary: dict[str, dict[str, dict[str, float | bool | None]]] = {}
    for name, rows in runs.items():
        cells, summary[name] = [], {}
        for metric in metrics:
            s = summarize([r[metric] for r in rows])
            entry: dict[str, float | bool | None] = {"mean": s.mean, "half_width": s.half_width}
            inside = ""
            if name != sides[0] and bare[metric].low is not None:
                entry["inside_bare_interval"] = bare[metric].low <= s.mean <= bare[metric].high
                inside = " (inside the bare loop's interval)" if entry["inside_bare_interval"] else " (OUTSIDE)"
            if name != sides[0]:  # seed by seed against the bare loop
                paired = summarize([h[metric] - b[metric] for h, b in zip(rows, runs[sides[0]])])
                entry |= {"paired_difference": paired.mean, "paired_half_width": paired.half_width}
            summary[name][metric] = entry
            cells.append(
                f"{metric} {s.mean:.4f}" + (f" ± {s.half_width:.4f}" if s.half_width is not None else "") + inside
            )
        print(f"  {name:<58} " + "   ".join(cells))
    print("paired, harness minus bare loop seed by seed (an interval that holds 0: no systematic gap found)")
    for name in sides[1:]:
        cells = []
        for metric in metrics:
            d, hw = summary[name][metric]["paired_difference"], summary[name][metric]["paired_half_width"]
            cells.append(f"{metric} {d:+.4f}" + (f" ± {hw:.4f}" if hw is not None else ""))
        print(f"  {name:<58} " + "   ".join(cells))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {"seeds": args.seeds, "steps": args.steps, "train_changes": changes, "runs": runs, "summary": summary},
                indent=1,
            )
            + "\n"
        )
        print(f"written to {args.json}")


if __name__ == "__main__":
    main()
