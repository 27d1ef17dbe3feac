"""What differs besides the code: environment facts and settings; a hardware difference makes
efficiency "not comparable" rather than a regression."""

from __future__ import annotations

from compare_helpers import GIB, cpu_facts, gpu_facts, sample, side

from harness.compare.checks import NOT_COMPARABLE, OK, REGRESSION
from harness.compare.comparability import fact_of
from harness.compare.comparison import compare_sides

SEEDS = {0: 0.80, 1: 0.805, 2: 0.795}


def test_a_changed_package_version_is_listed():
    ref = side("REFERENCE", [sample(s, v, facts=gpu_facts()) for s, v in SEEDS.items()])
    upgraded = gpu_facts(**{"packages.torch": "2.14.0", "host": "node-7", "slurm.SLURM_JOB_ID": "99"})
    new = side("NEW", [sample(s, v, facts=upgraded) for s, v in SEEDS.items()])
    comparison = compare_sides(new, ref)
    (difference,) = comparison.differences  # host and job id differ too, but mean nothing
    assert (difference.kind, difference.key, difference.ref, difference.new) == (
        "environment",
        "packages.torch",
        ["2.13.0"],
        ["2.14.0"],
    )
    assert difference.effect == "" and difference.shown == "package (packages.torch): 2.13.0 → 2.14.0"
    assert comparison.exit_code == 0


def test_a_different_gpu_model_makes_efficiency_not_comparable():
    ref = side(
        "REFERENCE", [sample(s, v, train_peak_bytes=10 * GIB, train_samples_per_s=100.0) for s, v in SEEDS.items()]
    )
    a100 = gpu_facts("NVIDIA A100-SXM4-80GB")
    new = side(
        "NEW",
        [
            sample(s, v - 0.03, facts=a100, train_peak_bytes=20 * GIB, train_samples_per_s=50.0)
            for s, v in SEEDS.items()
        ],
    )
    comparison = compare_sides(new, ref)
    verdicts = {f.name: f for f in comparison.findings}
    for name in ("train_peak_bytes", "train_samples_per_s"):
        assert verdicts[name].verdict == NOT_COMPARABLE, name
        assert verdicts[name].reason == "differs: accelerator.name"
    assert verdicts["f1_macro"].verdict == REGRESSION  # quality is still compared
    (difference,) = comparison.differences
    assert difference.key == "accelerator.name" and difference.effect == "efficiency not comparable"
    # the same drop in memory and speed on the same GPU would have failed; here only quality fails
    assert [f.name for f in comparison.failures] == ["f1_macro"]


def test_cpu_thread_counts_void_timings_only():
    assert fact_of("accelerator.torch_threads").voids == frozenset({"throughput", "time", "compile"})
    ref = side(
        "REFERENCE",
        [sample(s, v, facts=cpu_facts(), train_wall_s=10.0, train_peak_bytes=GIB) for s, v in SEEDS.items()],
    )
    threads = cpu_facts(**{"accelerator.torch_threads": "4"})
    new = side("NEW", [sample(s, v, facts=threads, train_wall_s=5.0, train_peak_bytes=GIB) for s, v in SEEDS.items()])
    verdicts = {f.name: f.verdict for f in compare_sides(new, ref).findings}
    assert verdicts["train_wall_s"] == NOT_COMPARABLE and verdicts["train_peak_bytes"] == OK


def test_setting_differences_of_paired_rows_are_listed():
    ref = side("REFERENCE", [sample(s, v, settings={"train.max_grad_norm": "1.0"}) for s, v in SEEDS.items()])
    new = side("NEW", [sample(s, v, settings={"train.max_grad_norm": "0.5"}) for s, v in SEEDS.items()])
    (difference,) = compare_sides(new, ref).differences
    assert (difference.kind, difference.key, difference.ref, difference.new, difference.rows) == (
        "setting",
        "train.max_grad_norm",
        ["1.0"],
        ["0.5"],
        1,
    )


def test_the_environment_records_whether_the_harness_had_uncommitted_changes(monkeypatch):
    from harness.environment import environment, git_dirty

    assert environment()["git_dirty"] in (True, False, None)
    monkeypatch.setenv("HARNESS_GIT_DIRTY", "true")  # a container image says so, having no .git
    assert git_dirty() is True
    monkeypatch.setenv("HARNESS_GIT_DIRTY", "0")
    assert git_dirty() is False
