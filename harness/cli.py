"""The ``harness`` command line. Thin: parse, call one function, print.

    harness run --local --model tiny-llama --method lora --task emotion --max-steps 30
    harness run --local --config cell.yaml
    harness prefetch --model minilm-l6 --model smollm2-135m
    harness methods [--json]
    harness plan jobs/demo.yaml [--json]
    harness matrix jobs/demo.yaml [--retry-failed] [--force] [--only method=lora] [--wait]
    harness status jobs/demo.yaml [--watch [--interval SECONDS]]
    harness collect jobs/demo.yaml
    harness report jobs/demo.yaml
    harness compare jobs/demo.yaml --against reference.json   # --save reference.json freezes a run

Exit codes: 0 success, 1 a cell or command failed, 2 bad input (one-line error on stderr),
130 interrupted (Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.cell.resolve import load_cell_config, parse_cell_config
from harness.compare.command import add_arguments as compare_arguments
from harness.config import CellConfig
from harness.dispatch.cell_state import ended_as_planned
from harness.dispatch.executors import executor_names
from harness.dotted import dotted_conflict, set_dotted
from harness.errors import ConfigError, one_line, shorten
from harness.redact import redact
from harness.safeyaml import MAX_DEPTH

if TYPE_CHECKING:
    from harness.matrix import Limits


def _parse_value(text: str) -> Any:
    """`--set key=value` values are YAML scalars/lists: 8 -> int, 1e-3 -> float, [q,v] -> list
    (within the limits of cell files: no aliases, no duplicate keys)."""
    from harness.safeyaml import YamlMalformed, YamlRefused, load_yaml_text

    try:
        return load_yaml_text(text)
    except YamlMalformed:
        return text  # not YAML: the plain string
    except YamlRefused as error:
        raise ConfigError(f"--set value {shorten(text, 40)}: {error}") from None


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for name, key in (
        ("model", "model"),
        ("method", "method"),
        ("task", "task"),
        ("seed", "seed"),
        ("max_steps", "train.max_steps"),
        ("tracking_uri", "tracking.uri"),
    ):
        value = getattr(args, name, None)
        if value is not None:
            overrides[key] = value
    if getattr(args, "no_tracking", False):
        overrides["tracking.enabled"] = False
    for item in args.set or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {shorten(item)}")
        key, value = item.split("=", 1)
        key = key.strip()
        if key.count(".") >= MAX_DEPTH:  # the depth a cell file may have (harness.safeyaml)
            raise ConfigError(f"--set {shorten(key)}: more than {MAX_DEPTH} levels deep")
        overrides[key] = _parse_value(value)
    conflict = dotted_conflict(list(overrides))
    if conflict:
        outer, inner = (shorten(key) for key in conflict)
        raise ConfigError(f"--set: {outer} is given a value and {inner} a key inside it; give one of them")
    return overrides


def cell_from_args(args: argparse.Namespace) -> CellConfig:
    """The cell ``harness run`` runs: its file or flags, then ``--set``, checked (ConfigError)."""
    if not args.local:
        raise ConfigError(
            "`harness run` runs one cell in this process: add --local (use `harness matrix` for a cluster)"
        )
    overrides = _overrides(args)
    if args.config:
        return load_cell_config(Path(args.config), overrides)
    missing = [k for k in ("model", "method", "task") if k not in overrides]
    if missing:
        raise ConfigError(f"missing --{', --'.join(missing)} (or give --config FILE)")
    data: dict[str, Any] = {}
    for key, value in overrides.items():
        set_dotted(data, key, value)  # no conflict: _overrides refused those
    return parse_cell_config(data, where="command line")


def cmd_run(args: argparse.Namespace) -> int:
    from harness.tracking.record import run_cell  # the cell, recorded to MLflow

    config = cell_from_args(args)
    if args.output:
        config = config.model_copy(update={"output_dir": Path(args.output)})
    elif config.output_dir == Path("outputs/local"):
        from harness.matrix import cell_folder  # the matrix's layout: a model of ".." cannot climb out

        folder = cell_folder(Path("outputs/local"), config, config.cell_id)
        config = config.model_copy(update={"output_dir": folder})
    result = run_cell(config)
    print(render_result(result, Path(config.output_dir)))
    return 0 if result.status == "success" else 1


def render_result(result: Any, cell_dir: Path) -> str:
    eff = result.efficiency
    lines = [
        f"cell {result.cell_id}  {result.model} / {result.method} / {result.task} / seed {result.seed}: {result.status}"
    ]
    if result.error:
        lines.append(f"  error: {result.error.splitlines()[0]}")
    for key, value in result.metrics.items():
        lines.append(f"  {key:<24} {value:.4f}")
    lines.append(
        f"  {'trainable params':<24} {eff.trainable_params:,} of {eff.total_params:,} "
        f"({100 * eff.trainable_share:.3f}%)"
    )
    if eff.train_samples_per_s:
        lines.append(f"  {'train samples/s':<24} {eff.train_samples_per_s:.2f}")
    for phase, stats in eff.phases.items():
        peak = stats.peak_allocated_bytes or stats.peak_rss_bytes or 0
        lines.append(f"  {phase + ' phase':<24} {stats.wall_s:.1f} s, peak {peak / 2**20:.0f} MiB")
    lines.append(
        f"  tracking: {result.tracking.status}" + (f" ({result.tracking.error})" if result.tracking.error else "")
    )
    lines.append(f"  folder: {cell_dir}")
    return redact("\n".join(lines))


def cmd_prefetch(args: argparse.Namespace) -> int:
    from harness.prefetch import prefetch_dataset, prefetch_model

    models = list(args.model or [])
    tasks = list(args.task or [])
    if args.matrix:
        from harness.matrix import load_matrix

        matrix = load_matrix(args.matrix, limits=_limits(args))
        models += sorted({cell.config.model for cell in matrix.cells})
    if not models and not tasks:
        raise ConfigError("nothing to prefetch: give --model NAME, --task NAME or --matrix FILE")
    for name in dict.fromkeys(models):
        print(f"prefetched {name}: {prefetch_model(name)}")
    for name in dict.fromkeys(tasks):
        prefetch_dataset(name)
        print(f"prefetched dataset for {name}")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from harness.dispatch import commands

    report = commands.plan(args.matrix, limits=_limits(args))
    if args.json:
        print(redact(json.dumps(report.as_json(), indent=2)))
    else:
        print(redact(commands.render_plan(report, scripts=not args.no_scripts)))
    return 0


def cmd_matrix(args: argparse.Namespace) -> int:
    from harness.dispatch import commands

    # with --wait, SIGTERM and Ctrl-C stop the cells this command started, from the first job on:
    # a signal during submission (local workers already starting) must not orphan them
    submitted: list[Any] = []
    interrupts = _sigterm_interrupts() if args.wait else contextlib.nullcontext()
    try:
        with interrupts:
            report = commands.submit(
                args.matrix,
                retry_failed=args.retry_failed,
                force=args.force,
                only=args.only,
                executor=args.executor,
                continue_stages=not args.wait,
                limits=_limits(args),
                on_submitted=submitted.extend,
            )
    except KeyboardInterrupt:
        if not args.wait:
            raise
        return _stop_waiting(args, submitted, None)
    print(redact(commands.render_submit(report)))
    if not report.ok:
        return 1
    if args.wait:  # a sweep's stage 2 is submitted from here when its stage 1 has ended
        from harness.dispatch.progress import ProgressPrinter

        printer, started = ProgressPrinter(), time.monotonic()
        try:
            with _sigterm_interrupts():
                final = commands.wait(
                    args.matrix,
                    only=args.only,
                    continue_stages=True,
                    executor=args.executor,
                    limits=_limits(args),
                    on_poll=lambda status: printer.show(status, time.monotonic() - started),
                    submitted=submitted,
                )
        except KeyboardInterrupt:
            return _stop_waiting(args, submitted, printer)
        printer.close()
        print(redact(commands.render_status(final)))
        return 0 if all(ended_as_planned(state) for state in final.states) else 1
    return 0


INTERRUPTED = 130  # exit status after Ctrl-C or SIGTERM (128 + SIGINT, as shells report it)


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM stops the wait as Ctrl-C does (a KeyboardInterrupt)."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stop_waiting(args: argparse.Namespace, submitted: list[Any], printer: Any | None) -> int:
    """An interrupted `matrix --wait`: cancel the local jobs it submitted (their cells end
    ``cancelled``, checkpoints kept), wait for them to end, say how to resume."""
    from harness.dispatch import commands
    from harness.dispatch.cell_state import ACTIVE

    # a second Ctrl-C (or SIGTERM) kills at once
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if printer is not None:
        printer.close()
    print("harness: interrupted: stopping the cells this command started (Ctrl-C again kills at once)", file=sys.stderr)
    states = commands.stop_jobs(args.matrix, submitted, only=args.only, limits=_limits(args))
    if not states:  # nothing of ours ran here: a scheduler's jobs run on without this command
        print(
            f"harness: interrupted: no cell of this command was running on this machine; submitted jobs "
            f"run on (watch them with `harness status {args.matrix} --watch`)",
            file=sys.stderr,
        )
        return INTERRUPTED
    cancelled = sum(s.status == "cancelled" for s in states)
    running = sum(s.status in ACTIVE for s in states)
    still = f"; {running} still running (see `harness status {args.matrix}`)" if running else ""
    print(
        f"harness: interrupted: {cancelled} cell(s) cancelled, their last checkpoints kept{still}; "
        f"resume with `harness matrix {args.matrix} --retry-failed --wait`",
        file=sys.stderr,
    )
    return INTERRUPTED


def cmd_status(args: argparse.Namespace) -> int:
    from harness.dispatch import commands

    if not args.watch:
        print(redact(commands.render_status(commands.status(args.matrix, limits=_limits(args)))))
        return 0
    from harness.dispatch.progress import ProgressPrinter

    if not args.interval > 0:
        raise ConfigError(f"--interval must be a positive number of seconds, not {args.interval}")
    printer, started = ProgressPrinter(), time.monotonic()
    try:
        while True:
            report = commands.status(args.matrix, limits=_limits(args))
            printer.show(report, time.monotonic() - started)
            if report.finished:
                break
            time.sleep(args.interval)
    except KeyboardInterrupt:  # watching only: the cells run on
        printer.close()
        return INTERRUPTED
    printer.close()
    return 0


def cmd_collect(args: argparse.Namespace) -> int:
    from harness.tracking.collect import collect, render_collect

    report = collect(args.matrix, tracking_uri=args.tracking_uri, limits=_limits(args))
    print(redact(render_collect(report)))
    return 0 if report.ok else 1


def cmd_ui_path(args: argparse.Namespace) -> int:
    from mlflow.tracking import MlflowClient

    from harness.matrix import load_matrix
    from harness.tracking.ui import runs_view_path

    matrix = load_matrix(args.matrix, limits=_limits(args))
    found = MlflowClient(tracking_uri=matrix.tracking_uri).get_experiment_by_name(matrix.experiment)
    if found is None:
        raise ConfigError(
            f"experiment {matrix.experiment!r} is not in {redact(matrix.tracking_uri)} yet; "
            f"run `harness collect {args.matrix}` first"
        )
    print(runs_view_path(found.experiment_id, matrix.name))
    return 0


def cmd_tracking_uri(args: argparse.Namespace) -> int:
    from harness.matrix import load_matrix

    print(load_matrix(args.matrix, limits=_limits(args)).tracking_uri)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from harness.report import build_report

    folder = build_report(
        args.matrix,
        experiment=args.experiment,
        output=args.output,
        limits=_limits(args),
        peft_results=args.peft_results,
    )
    if not args.quiet:
        print((folder / "report.md").read_text())
    print(f"report written to {folder} (report.md, report.html, CSV tables, plots/)")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from harness.compare.command import run

    return run(args)


def cmd_methods(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from harness.methods.catalog import method_rows, render_methods

    rows = method_rows()
    print(json.dumps([asdict(r) for r in rows], indent=2) if args.json else render_methods(rows))
    return 0


def _limits(args: argparse.Namespace) -> Limits:
    from harness.matrix import Limits

    return Limits(cells=args.max_cells, grid_points=args.max_grid_points)


def _limit_flags(parser: argparse.ArgumentParser) -> None:
    """The caps a matrix is expanded under (harness.matrix.expand.MAX_CELLS, MAX_GRID_POINTS)."""
    from harness.matrix.expand import MAX_CELLS, MAX_GRID_POINTS

    parser.add_argument(
        "--max-cells",
        type=int,
        default=MAX_CELLS,
        metavar="N",
        help=f"refuse a matrix of more cells, sweeps' stages included (default {MAX_CELLS:,})",
    )
    parser.add_argument(
        "--max-grid-points",
        type=int,
        default=MAX_GRID_POINTS,
        metavar="N",
        help=f"refuse a sweep grid of more points (default {MAX_GRID_POINTS:,})",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness", description="PEFT benchmark harness")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run one cell")
    run.add_argument("--local", action="store_true", help="run in this process")
    run.add_argument("--config", help="cell config file (YAML or JSON)")
    run.add_argument("--model")
    run.add_argument("--method")
    run.add_argument("--task")
    run.add_argument("--seed", type=int)
    run.add_argument("--max-steps", type=int)
    run.add_argument("--output", help="cell folder (default outputs/local/<task>/<model>/<method>/seed<k>-<id>)")
    run.add_argument("--tracking-uri")
    run.add_argument("--no-tracking", action="store_true")
    run.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override any config field, e.g. --set method_args.r=4 --set train.batch_size=2",
    )
    run.set_defaults(func=cmd_run)

    # "stage" was this command's first name; it stays as an alias (a sweep's stages are another idea)
    prefetch = sub.add_parser(
        "prefetch", aliases=["stage"], help="fetch models/datasets into the cache for offline nodes"
    )
    prefetch.add_argument("--model", action="append")
    prefetch.add_argument("--task", action="append")
    prefetch.add_argument("--matrix")
    _limit_flags(prefetch)
    prefetch.set_defaults(func=cmd_prefetch)

    plan = sub.add_parser("plan", help="dry run: the cell table and sbatch scripts")
    plan.add_argument("matrix")
    plan.add_argument("--json", action="store_true")
    plan.add_argument("--no-scripts", action="store_true")
    _limit_flags(plan)
    plan.set_defaults(func=cmd_plan)

    matrix = sub.add_parser("matrix", help="submit every pending cell")
    matrix.add_argument("matrix")
    matrix.add_argument("--retry-failed", action="store_true")
    matrix.add_argument("--force", action="store_true")
    matrix.add_argument("--only", help="filter, e.g. method=lora,task=emotion")
    matrix.add_argument(
        "--executor",
        choices=executor_names(),
        help="run with this executor instead of the file's executor.cluster (submitit's cluster)",
    )
    matrix.add_argument("--wait", action="store_true", help="block until every cell has finished")
    _limit_flags(matrix)
    matrix.set_defaults(func=cmd_matrix)

    status = sub.add_parser("status", help="cell states from results and one sacct call")
    status.add_argument("matrix")
    status.add_argument(
        "--watch", action="store_true", help="a live one-line progress summary until every cell has finished"
    )
    status.add_argument("--interval", type=float, default=5.0, metavar="SECONDS", help="--watch: seconds between reads")
    _limit_flags(status)
    status.set_defaults(func=cmd_status)

    collect = sub.add_parser("collect", help="import finished cells into MLflow")
    collect.add_argument("matrix")
    collect.add_argument("--tracking-uri")
    _limit_flags(collect)
    collect.set_defaults(func=cmd_collect)

    methods = sub.add_parser("methods", help="every method (each PeftType of the installed peft) and where it runs")
    methods.add_argument("--json", action="store_true")
    methods.set_defaults(func=cmd_methods)

    ui_path = sub.add_parser("ui-path", help="the MLflow UI path of a collected matrix's runs view")
    ui_path.add_argument("matrix")
    _limit_flags(ui_path)
    ui_path.set_defaults(func=cmd_ui_path)

    uri = sub.add_parser("tracking-uri", help="print the MLflow tracking URI of a matrix")
    uri.add_argument("matrix")
    _limit_flags(uri)
    uri.set_defaults(func=cmd_tracking_uri)

    report = sub.add_parser("report", help="tables, plots and HTML from finished cells")
    report.add_argument("matrix", nargs="?")
    report.add_argument("--experiment")
    report.add_argument("--output")
    report.add_argument("--quiet", action="store_true", help="do not print the tables")
    report.add_argument(
        "--peft-results",
        metavar="DIR",
        help="peft's method_comparison/MetaMathQA result files: a table beside them for cells tagged peft_experiment",
    )
    _limit_flags(report)
    report.set_defaults(func=cmd_report)

    compare = sub.add_parser("compare", help="a run against reference figures: exit 1 when something regressed")
    compare_arguments(compare)
    compare.set_defaults(func=cmd_compare)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as error:
        # redacted first, then cut: a cut could leave part of a password the pattern no longer finds
        print(f"harness: error: {one_line(redact(str(error)))}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
