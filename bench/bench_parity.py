"""Bench: the harness's cell against a bare hand-written loop (bench/bare_loop.py), same settings.

MiniLM-L6, LoRA r8 on query/value (alpha 8, dropout 0), AdamW at 2e-3 constant, batch 32,
300 steps, max length 128, scored on the full 2,000-example emotion test set; for each seed
both are run side by side in this one process's order, then the mean accuracy and macro-F1
of each are printed with 95 % t intervals (harness.report.stats).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_parity.py [--seeds 0 1 2] [--steps 300]
        [--modes same defaults] [--except clipping|warmup|grouping ...]

Two harness sides by default, against the same bare-loop runs: ``same`` (the bare loop's
settings) and ``defaults`` (the harness's own defaults for what the bare loop does not do:
clipping at 1.0, 6 % warmup, length-grouped batches); ``--except`` switches the named
defaults back to the bare loop's, to find which one costs quality. Each harness mean is
marked inside or outside the bare loop's interval. About 2 minutes per run on two CPU cores.
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


# what the bare loop does, per harness default that differs from it
BARE_SETTINGS = {"clipping": {"max_grad_norm": None}, "warmup": {"warmup_ratio": 0.0}, "grouping": {"group_by_length": False}}


def harness_run(seed: int, steps: int, out: Path, defaults: bool, exceptions: tuple[str, ...] = ()) -> dict[str, float]:
    from harness.cell import run_cell
    from harness.config import CellConfig

    train = {"max_steps": steps, "batch_size": 32, "eval_batch_size": 64, "learning_rate": 2e-3,
             "scheduler": "constant", "progress_bar": False, "log_every": 0}
    for name, settings in BARE_SETTINGS.items():  # what the bare loop does: no clipping, no warmup, random batches
        if not defaults or name in exceptions:
            train |= settings
    config = CellConfig(model="minilm-l6", method="lora", task="emotion", seed=seed, output_dir=out / f"harness-{seed}",
                        method_args={"r": 8, "lora_alpha": 8, "lora_dropout": 0.0, "target_modules": ["query", "value"]},
                        train=train, data={"max_source_tokens": 128}, tracking={"enabled": False},
                        telemetry={"enabled": False})
    result = run_cell(config)
    if result.status != "success":
        raise SystemExit(f"harness cell failed: {result.error}")
    return {"accuracy": result.metrics["accuracy"], "f1_macro": result.metrics["f1_macro"]}


def bare_run(seed: int, steps: int) -> dict[str, float]:
    from harness.models import resolve_model
    from harness.models.loading import materialise
    from harness.tasks import resolve_task

    bundled = resolve_task("emotion").bundled
    done = subprocess.run([sys.executable, str(REPO / "bench" / "bare_loop.py"), materialise(resolve_model("minilm-l6")),
                           str(bundled["train"]), str(bundled["test"]), "--seed", str(seed), "--steps", str(steps)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


MODES = {"same": "same settings as the bare loop", "defaults": "harness at its defaults (clipping, warmup, grouping)"}


def main() -> None:
    from harness.report.stats import summarize

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--modes", nargs="+", choices=sorted(MODES), default=["same", "defaults"],
                        help="the harness side: the bare loop's settings, its own defaults, or both (default)")
    parser.add_argument("--except", dest="exceptions", nargs="+", choices=sorted(BARE_SETTINGS), default=[],
                        help="in the defaults mode: these settings as the bare loop has them")
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="parity-"))
    sides = ["bare loop", *(f"harness, {MODES[m]}" + (f" except {', '.join(args.exceptions)}" if m == "defaults" and args.exceptions else "")
                            for m in args.modes)]
    runs: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
    for seed in args.seeds:
        runs[sides[0]].append(bare_run(seed, args.steps))
        for side, mode in zip(sides[1:], args.modes):
            runs[side].append(harness_run(seed, args.steps, out / mode, mode == "defaults", tuple(args.exceptions)))
        print(f"seed {seed}: " + "  ".join(f"{side.split(',')[0]}{'' if side == sides[0] else ' ' + mode} "
                                          f"{runs[side][-1]['accuracy']:.4f}/{runs[side][-1]['f1_macro']:.4f}"
                                          for side, mode in zip(sides, ["", *args.modes])), flush=True)
    print(f"\nparity, {len(args.seeds)} seeds, {args.steps} steps: mean ± half-width of the 95 % t interval")
    bare = {metric: summarize([r[metric] for r in runs[sides[0]]]) for metric in ("accuracy", "f1_macro")}
    for name, rows in runs.items():
        cells = []
        for metric in ("accuracy", "f1_macro"):
            s = summarize([r[metric] for r in rows])
            inside = ""
            if name != sides[0] and bare[metric].low is not None:
                inside = " (inside the bare loop's interval)" if bare[metric].low <= s.mean <= bare[metric].high else " (OUTSIDE)"
            cells.append(f"{metric} {s.mean:.4f}" + (f" ± {s.half_width:.4f}" if s.half_width is not None else "") + inside)
        print(f"  {name:<58} " + "   ".join(cells))


if __name__ == "__main__":
    main()
