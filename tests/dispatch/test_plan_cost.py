"""harness plan estimates a sweep's compute before anything runs, in full-budget runs."""

from __future__ import annotations

import yaml


def test_plan_gives_the_sweeps_cost_in_runs_against_the_untuned_study(tmp_path):
    from harness.dispatch import commands

    path = tmp_path / "m.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "cost",
                "output_dir": str(tmp_path / "out"),
                "models": ["tiny-bert"],
                "methods": ["lora", "ia3", "zeroshot"],
                "tasks": ["emotion"],
                "seeds": [0, 1, 2],
                "executor": {"cluster": "debug"},
                "sweep": [{"values": {"train.learning_rate": [1e-4, 1e-3, 1e-2]}}],
                "select": {"metric": "f1_macro", "split": "validation"},
            }
        )
    )
    text = commands.render_plan(commands.plan(path, params=False), scripts=False)
    # lora and ia3: 3 grid points each on seed 0, then their 3 seeds, the first of which evaluates
    # the winner's run instead of training it again; zero-shot is not swept
    assert (
        "cost estimate: 6 stage-1 runs + 4 stage-2 runs (2 first seeds reuse the winner's run) = 10 "
        "runs-equivalent, x1.67 the 6 runs" in text
    )
