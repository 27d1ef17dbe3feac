"""The ``harness compare`` subcommand: its arguments and what it runs. Light to import (the CLI
builds its parser from here); the comparison itself is imported when the command runs.

    harness compare NEW --against REF [--tolerance [METRIC=]POINTS] [--bound=[MEASURE|ASPECT=]LO:HI]
                    [--gate ASPECT,...] [--gate-cpu] [--output DIR] [--tracking-uri URI] [--quiet]
    harness compare NEW --save REF.json      # freeze NEW's figures into a reference file

Exit status: 0 nothing gated regressed, 1 something did, 2 bad input (one line).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "new", metavar="NEW", help="a matrix file, an output folder, mlflow:EXPERIMENT, or a reference file (.json)"
    )
    parser.add_argument("--against", metavar="REF", help="the reference: any of the same")
    parser.add_argument("--save", metavar="REF.json", help="write NEW's figures into this reference file")
    parser.add_argument(
        "--tolerance",
        action="append",
        default=[],
        metavar="[METRIC=]POINTS",
        help="quality: a drop must exceed this many points (x100) to count; default 1, per metric with METRIC=",
    )
    parser.add_argument(
        "--bound",
        action="append",
        default=[],
        metavar="[MEASURE|ASPECT=]LO:HI",
        help="efficiency: the relative change allowed, in percent (default -10:10); write --bound=-5:5",
    )
    parser.add_argument(
        "--gate",
        metavar="ASPECT,...",
        help="the aspects that decide the exit status (default quality,memory,throughput,time,ratio)",
    )
    parser.add_argument("--gate-cpu", action="store_true", help="gate throughput and time measured on a CPU too")
    parser.add_argument("--output", metavar="DIR", help="CSV and HTML here (default: <NEW's output folder>/compare)")
    parser.add_argument("--tracking-uri", help="for mlflow:EXPERIMENT sides (default $MLFLOW_TRACKING_URI)")
    parser.add_argument("--quiet", action="store_true", help="print the summary only, not the tables")


def run(args: argparse.Namespace) -> int:
    from harness.compare.comparison import compare_sides, default_output
    from harness.compare.gate import Gate, parse_aspects, parse_bounds, parse_tolerance
    from harness.compare.measures import DEFAULT_GATE
    from harness.compare.reference import save_reference
    from harness.compare.render import console, summary_lines, write
    from harness.compare.sources import load_side

    if not args.against and not args.save:
        raise ConfigError("harness compare: give --against REF (compare) or --save REF.json (freeze NEW), or both")
    # every option is checked before anything is read or written
    given = Gate(
        aspects=parse_aspects(args.gate) if args.gate is not None else frozenset(DEFAULT_GATE),
        cpu_timings=args.gate_cpu,
        tolerance=parse_tolerance(args.tolerance),
        bounds=parse_bounds(args.bound),
    )
    new = load_side(args.new, "NEW", tracking_uri=args.tracking_uri)
    ref = load_side(args.against, "REFERENCE", tracking_uri=args.tracking_uri) if args.against else None
    if not new.has_results:
        raise ConfigError(f"NEW has no results: {new.source} (no cell has written a result.json)")
    code = 0
    if ref is not None:
        gate = given.over(ref.gate, aspects=args.gate is not None, cpu_timings=args.gate_cpu)
        comparison = compare_sides(new, ref, gate)
        folder = write(comparison, Path(args.output) if args.output else default_output(new))
        print("\n".join(summary_lines(comparison)) if args.quiet else console(comparison))
        print(f"tables written to {folder} (compare_*.csv, compare.html)")
        code = comparison.exit_code
    if args.save:
        stored = given if (args.tolerance or args.bound or args.gate is not None or args.gate_cpu) else None
        print(f"reference written to {save_reference(new, Path(args.save), stored)}")
    return code
