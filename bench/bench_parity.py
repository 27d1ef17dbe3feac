"""Bench: the harness's cell against a bare hand-written loop (bench/bare_loop.py), same settings.

MiniLM-L6, LoRA r8 on query/value (alpha 8, dropout 0), AdamW at 2e-3 constant, batch 32,
300 steps, max length 128, scored on the full 2,000-example emotion test set; for each seed
both are run side by side in this one process's order, then the mean accuracy and macro-F1
of each are printed with 95 % t intervals (harness.report.stats).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_parity.py [--seeds 0 1 2] [--steps 300] [--harness-defaults
        [--except clipping|warmup|grouping ...]]

``--harness-defaults`` runs the harness side with its own defaults for what the bare loop
does not do (clipping at 1.0, 6 % warmup, length-grouped batches) instead of matching it;
``--except`` switches the named ones back to the bare loop's, to find which default costs
quality.
About 3.5 minutes per run on two CPU cores.
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


def main() -> None:
    from harness.report.stats import summarize

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--harness-defaults", action="store_true")
    parser.add_argument("--except", dest="exceptions", nargs="+", choices=sorted(BARE_SETTINGS), default=[],
                        help="with --harness-defaults: these settings as the bare loop has them")
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="parity-"))
    runs: dict[str, list[dict[str, float]]] = {"bare loop": [], "harness": []}
    for seed in args.seeds:
        runs["bare loop"].append(bare_run(seed, args.steps))
        runs["harness"].append(harness_run(seed, args.steps, out, args.harness_defaults, tuple(args.exceptions)))
        print(f"seed {seed}: bare {runs['bare loop'][-1]['accuracy']:.4f}/{runs['bare loop'][-1]['f1_macro']:.4f}  "
              f"harness {runs['harness'][-1]['accuracy']:.4f}/{runs['harness'][-1]['f1_macro']:.4f}", flush=True)
    print(f"\nparity, {len(args.seeds)} seeds, {args.steps} steps"
          + ((" (harness at its defaults" + (f", except {', '.join(args.exceptions)})" if args.exceptions else ")"))
             if args.harness_defaults else " (same settings)"))
    for name, rows in runs.items():
        cells = []
        for metric in ("accuracy", "f1_macro"):
            s = summarize([r[metric] for r in rows])
            cells.append(f"{metric} {s.mean:.4f}" + (f" ± {s.half_width:.4f}" if s.half_width is not None else ""))
        print(f"  {name:<10} " + "   ".join(cells))


if __name__ == "__main__":
    main()
