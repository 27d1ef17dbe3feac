"""The house rules of ../shared/design/ARCHITECTURE.md, kept by tests rather than by memory.

- Behaviour that varies by method, task, task kind, scoring, head, model family or executor lives
  in that registry's entries: no other module compares a value with one of their names.
- The layer order and the absence of import cycles (architecture.ini) hold.
- The project's own modules never make a test skip.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from harness.dispatch.executors import EXECUTORS
from harness.heads import HEADS
from harness.methods.registry import methods
from harness.models.registry import FAMILIES
from harness.tasks.extract import EXTRACTORS
from harness.tasks.kinds import KINDS, SCORINGS
from harness.tasks.registry import TASKS

ROOT = Path(__file__).resolve().parents[1]

# The modules that define the entries (a folder: every module in it): the only places where an
# entry's name is compared with a value.
REGISTRIES = (
    "harness/methods/registry.py",
    "harness/methods/hooks.py",
    "harness/tasks/kinds.py",
    "harness/tasks/registry.py",
    "harness/tasks/extract.py",
    "harness/heads.py",
    "harness/models/registry.py",
    "harness/dispatch/executors/",
)
# (module, name): comparisons with a string that happens to spell a registry name but means
# something else there; each says what it is.
OTHER_MEANINGS = {
    ("harness/models/loading.py", "local"): "ModelSpec.origin: a model from a local folder, not the local executor",
}


def registry_names() -> dict[str, str]:
    """Every name a registry owns -> which registry."""
    names: dict[str, str] = {}
    for registry, entries in (
        ("method", methods()),
        ("task kind", KINDS),
        ("scoring", SCORINGS),
        ("head", HEADS),
        ("family", FAMILIES),
        ("task", TASKS),
        ("executor", EXECUTORS),
        ("answer extractor", EXTRACTORS),
    ):
        for name in entries:
            names.setdefault(name, registry)
    return names


def _strings(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [value for element in node.elts for value in _strings(element)]
    return []


def name_comparisons(root: Path, names: dict[str, str]) -> list[str]:
    """``x == "lora"``, ``kind != "slurm"``, ``family in ("t5", "llama")`` and ``case "seqcls":``
    outside the registries, as ``path:line: <registry> name``."""
    found = []
    for path in sorted((root / "harness").rglob("*.py")):
        module = path.relative_to(root).as_posix()
        if any(module == entry or (entry.endswith("/") and module.startswith(entry)) for entry in REGISTRIES):
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=module)):
            compared: list[str] = []
            if isinstance(node, ast.Compare) and any(
                isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn)) for op in node.ops
            ):
                compared = [s for side in (node.left, *node.comparators) for s in _strings(side)]
            elif isinstance(node, ast.MatchValue):
                compared = _strings(node.value)
            for value in compared:
                if value in names and (module, value) not in OTHER_MEANINGS:
                    found.append(f"{module}:{node.lineno}: {names[value]} {value!r}")
    return found


def test_registry_names_are_compared_only_in_their_registries() -> None:
    names = registry_names()
    assert {"lora", "zeroshot", "classification", "rouge", "seqcls", "t5", "slurm", "emotion"} <= set(names)
    found = name_comparisons(ROOT, names)
    assert not found, "ask the registry entry instead of comparing its name:\n" + "\n".join(found)


def test_the_check_finds_a_comparison(tmp_path: Path) -> None:
    """The scan itself works: a planted comparison of each kind is found, an allowed one is not."""
    (tmp_path / "harness" / "report").mkdir(parents=True)
    (tmp_path / "harness" / "report" / "x.py").write_text(
        "def f(method, kind, family):\n"
        '    if method == "zeroshot" or kind in ("debug", "local"):\n'
        "        return 1\n"
        "    match family:\n"
        '        case "llama":\n'
        "            return 2\n"
        '    return "lora"  # a value, not a comparison\n'
    )
    (tmp_path / "harness" / "heads.py").write_text('def g(h):\n    return h == "seqcls"\n')
    found = name_comparisons(tmp_path, registry_names())
    assert sorted(found) == [
        "harness/report/x.py:2: executor 'debug'",
        "harness/report/x.py:2: executor 'local'",
        "harness/report/x.py:2: method 'zeroshot'",
        "harness/report/x.py:5: family 'llama'",
    ]


def test_import_contracts_hold() -> None:
    """architecture.ini: the layer order, telemetry apart from training, no cycles in any package."""
    run = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), "--no-cache", "architecture.ini"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "Contracts: 3 kept, 0 broken." in run.stdout


def test_the_projects_own_modules_never_skip_a_test() -> None:
    """``pytest.importorskip("harness...")`` would turn a broken import into a silent skip."""
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sorted((ROOT / "tests").rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "importorskip" in line and "harness" in line and path.name != Path(__file__).name
    ]
    assert not offenders, "import the project's own modules plainly: " + ", ".join(offenders)
