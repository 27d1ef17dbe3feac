"""Nothing a matrix file says can inject a command into a job script or end its #SBATCH block early."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from dispatch_helpers import smoke_dict

from harness.dispatch.executor import group_cells
from harness.dispatch.executors import get_executor
from harness.errors import ConfigError
from harness.matrix import matrix_from_dict

HOSTILE = ["x\ntouch /tmp/pwned", "x\r\n#SBATCH --time=1", "x\x00y", "x\x1b[2Jy", "x\u2028y", "x\x85y"]

# (where in the matrix, how to set it): every value that reaches a job script
FIELDS = {
    "name": lambda v: {"name": v},
    "output_dir": lambda v: {"output_dir": v},
    "executor.folder": lambda v: {"executor": {"folder": v}},
    "executor.job_name": lambda v: {"executor": {"job_name": v}},
    "executor.python": lambda v: {"executor": {"python": v}},
    "resources.partition": lambda v: {"resources": {"partition": v}},
    "resources.account": lambda v: {"resources": {"account": v}},
    "resources.qos": lambda v: {"resources": {"qos": v}},
    "resources.constraint": lambda v: {"resources": {"constraint": v}},
    "resources.sbatch_extra value": lambda v: {"resources": {"sbatch_extra": {"mail-type": v}}},
    "resources.sbatch_extra key": lambda v: {"resources": {"sbatch_extra": {v: "END"}}},
    "resources.setup": lambda v: {"resources": {"setup": ["module load cuda", v]}},
    "executor.container.image": lambda v: {"executor": {"container": {"runtime": "docker", "image": v}}},
    "executor.container.binds": lambda v: {
        "executor": {"container": {"runtime": "docker", "image": "h", "binds": [v]}}
    },
    "executor.container.options": lambda v: {
        "executor": {"container": {"runtime": "docker", "image": "h", "options": [v]}}
    },
    "executor.container.env": lambda v: {
        "executor": {"container": {"runtime": "docker", "image": "h", "env": {"A": v}}}
    },
    "models axis": lambda v: {"models": [v]},
    "models axis entry": lambda v: {"models": [{"name": v}]},
}


def _merge(base: dict, patch: dict) -> dict:
    out = dict(base)
    for key, value in patch.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("value", HOSTILE, ids=repr)
def test_control_characters_are_refused_in_one_line(tmp_path: Path, field: str, value: str) -> None:
    data = _merge(smoke_dict(tmp_path / "out"), FIELDS[field](value))
    with pytest.raises(ConfigError) as info:
        matrix_from_dict(data)
    message = str(info.value)
    assert message.isprintable(), message
    assert "control character" in message or "sbatch_extra key" in message


# characters that change what a terminal shows without being seen: an escape sequence, the bidi
# overrides and isolates, zero-width and other invisible format characters (category Cf)
INVISIBLE = {
    "\x1b": "control character U+001B",
    "\u202e": "invisible format character U+202E (RIGHT-TO-LEFT OVERRIDE)",
    "\u2066": "invisible format character U+2066 (LEFT-TO-RIGHT ISOLATE)",
    "\u200b": "invisible format character U+200B (ZERO WIDTH SPACE)",
    "\ufeff": "invisible format character U+FEFF (ZERO WIDTH NO-BREAK SPACE)",
    "\u00ad": "invisible format character U+00AD (SOFT HYPHEN)",
}
PRINTED = {
    **{field: patch for field, patch in FIELDS.items() if field != "resources.sbatch_extra key"},  # [a-z0-9-] only
    "exclude reason": lambda v: {"exclude": [{"match": {"method": "ia3"}, "reason": v}]},
    "exclude match": lambda v: {"exclude": [{"match": {"method": ["ia3", v]}, "reason": "r"}]},
    "overrides match": lambda v: {"overrides": [{"match": {"model": v}, "set": {"seed": 1}}]},
    "methods axis name": lambda v: {"methods": ["lora", v]},
    "tracking experiment": lambda v: {"tracking": {"experiment": v}},
}


@pytest.mark.parametrize("field", PRINTED)
@pytest.mark.parametrize("char", INVISIBLE, ids=lambda c: f"U+{ord(c):04X}")
def test_invisible_characters_are_refused_by_codepoint_and_position(tmp_path: Path, field: str, char: str) -> None:
    """A name, an exclusion's reason or a rule's selector is printed (plan, status, warnings) or
    put in the job name: an escape sequence or a bidi override there would change what a person
    reads. Refused in one line that names the character by code point and where it is."""
    data = _merge(smoke_dict(tmp_path / "out"), PRINTED[field](f"ab{char}c"))
    with pytest.raises(ConfigError) as info:
        matrix_from_dict(data)
    message = str(info.value)
    assert message.isprintable() and "\n" not in message, message
    assert f"{INVISIBLE[char]} at position 2 in " in message, message


def test_visible_unicode_is_kept(tmp_path: Path) -> None:
    """Accents, non-Latin scripts and a no-break space are printable text, not refused."""
    data = _merge(
        smoke_dict(tmp_path / "out"),
        {"name": "étude\u00a0café", "exclude": [{"match": {"method": "ia3"}, "reason": "Grüße, 日本語, עברית"}]},
    )
    matrix = matrix_from_dict(data)
    assert matrix.name == "étude\u00a0café"


@pytest.mark.parametrize("key", ["--hold", "Mail-Type", "mail type", "x=1", "", "-"])
def test_sbatch_extra_keys_are_long_option_names(tmp_path: Path, key: str) -> None:
    data = _merge(smoke_dict(tmp_path / "out"), {"resources": {"sbatch_extra": {key: "1"}}})
    with pytest.raises(ConfigError, match="write an sbatch long option without its dashes"):
        matrix_from_dict(data)


# Printable but awkward: quotes, $(...), ;, spaces, globs. Allowed, and must stay inert.
AWKWARD = 'we\'ird "$(touch /tmp/pwned)";`id` *'


def _sbatch_block(script: str) -> tuple[list[str], list[str]]:
    """(the #SBATCH directives before the first command, every line after it)."""
    lines = script.splitlines()
    assert lines[0].startswith("#!")
    directives, index = [], 1
    while index < len(lines) and (lines[index].startswith("#") or not lines[index].strip()):
        if lines[index].startswith("#SBATCH"):
            directives.append(lines[index])
        index += 1
    return directives, lines[index:]


def test_rendered_script_parses_and_keeps_every_directive(tmp_path: Path) -> None:
    data = _merge(
        smoke_dict(tmp_path / "out"),
        {
            "name": "study o'brien",
            "resources": {
                "partition": "gpu",
                "account": AWKWARD,
                "qos": "normal",
                "constraint": "a100&nvlink",
                "sbatch_extra": {"mail-type": "END,FAIL", "comment": AWKWARD, "exclusive": True},
                "setup": ["export X='a b'"],
            },
            "executor": {"job_name": AWKWARD, "cluster": "slurm"},
        },
    )
    matrix = matrix_from_dict(data)
    for group in group_cells(matrix.active):
        script = get_executor("slurm").job_script(matrix, group)
        checked = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True, timeout=30)
        assert checked.returncode == 0, checked.stderr
        directives, rest = _sbatch_block(script)
        names = {re.match(r"#SBATCH --([a-z-]+)", d).group(1) for d in directives}
        expected = {
            "job-name",
            "time",
            "signal",
            "array",
            "output",
            "error",
            "partition",
            "account",
            "qos",
            "constraint",
            "mail-type",
            "comment",
            "exclusive",
            "cpus-per-task",
            "nodes",
            "ntasks-per-node",
            "mem",
        }
        assert expected <= names, expected - names
        assert not any(line.startswith("#SBATCH") for line in rest), "a directive after the first command is ignored"
        # the awkward text stays inside its directive, and no line runs it
        assert not any("touch /tmp/pwned" in line for line in rest)
