"""The package's shape (README "Layout"): subpackages whose imports run one way only, no import cycles,
the tiny world reached only through its own package, and modules a reader can take in at one sitting.

Layers, lowest first; a module may import its own package and the packages its layer allows:

    core  <-  world  <-  judge, data, models  <-  train, score  <-  study  <-  cli, vd/__init__

`data` may use `judge` (synthetic pairs are verified by a judge); `judge` and `models` use neither.
"""

from __future__ import annotations

import ast
import re
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VD = ROOT / "vd"
ALLOWED = {
    "core": set(),
    "world": {"core"},
    "judge": {"core"},
    "models": {"core", "world"},
    "data": {"core", "world", "judge"},
    "train": {"core", "world", "judge", "data", "models"},
    "score": {"core", "world", "judge", "data", "models"},
    "study": {"core", "world", "judge", "data", "models", "train", "score"},
}
MAX_LINES = 420  # "no module over ~400 lines"


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(VD.rglob("*.py")):
        parts = path.relative_to(VD.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports_of(path: Path, name: str) -> set[str]:
    """Every vd module `path` imports, at the top or inside functions (both are dependencies)."""
    found = set()
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "vd"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            if base.split(".")[0] == "vd":
                submodules = {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES}
                found |= submodules
                if len(submodules) < len(node.names):  # names defined in `base` itself
                    found.add(base)
    return {m for m in found if m in MODULES}


MODULES = modules()
GRAPH = {name: imports_of(path, name) for name, path in MODULES.items()}


def layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ALLOWED else None


def violations(graph: dict[str, set[str]]) -> list[str]:
    out = []
    for src, targets in graph.items():
        here = layer(src)
        if here is None:  # vd/__init__.py, vd/cli.py: the top, may import anything
            continue
        for dst in targets:
            there = layer(dst)
            if there is None:
                out.append(f"{src} imports {dst} (the top of the package)")
            elif there != here and there not in ALLOWED[here]:
                out.append(f"{src} imports {dst}: {here} may not import {there}")
    return sorted(out)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles between modules (a package's __init__ importing its own modules is not one)."""
    edges = {s: {d for d in ds if not s.startswith(d + ".") and d != s} for s, ds in graph.items()}
    found, state = [], defaultdict(int)

    def visit(node, stack):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state[nxt] == 1:
                found.append(stack[stack.index(nxt):] + [nxt])
            elif state[nxt] == 0:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if state[node] == 0:
            visit(node, [])
    return found


def test_imports_run_one_way():
    assert violations(GRAPH) == []


def test_a_reversed_import_is_caught():
    """The checker itself: core importing train, or world importing data, must be reported."""
    graph = {k: set(v) for k, v in GRAPH.items()}
    graph["vd.core.config"].add("vd.train.stage")
    graph["vd.world.text"].add("vd.data.probes")
    assert violations(graph) == ["vd.core.config imports vd.train.stage: core may not import train",
                                 "vd.world.text imports vd.data.probes: world may not import data"]


def test_no_import_cycles():
    assert cycles(GRAPH) == []


def test_a_cycle_is_caught():
    graph = {k: set(v) for k, v in GRAPH.items()}
    graph["vd.core.io"].add("vd.core.cache")  # cache imports io already
    assert any({"vd.core.cache", "vd.core.io"} <= set(c) for c in cycles(graph))


def test_the_tiny_world_is_reached_only_through_its_package():
    """No `== "tiny"` (or `!= "tiny"`) outside vd/world/: the tiny world sits behind the hub's interfaces."""
    leaks = []
    for name, path in MODULES.items():
        if layer(name) == "world":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare) and any(
                    isinstance(c, ast.Constant) and c.value == "tiny" for c in [node.left, *node.comparators]):
                leaks.append(f"{path.relative_to(VD.parent)}:{node.lineno}")
    assert leaks == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_stay_readable_in_one_sitting(name):
    n = len(MODULES[name].read_text().splitlines())
    assert n <= MAX_LINES, f"{MODULES[name].relative_to(VD.parent)} has {n} lines; split it by what it does"


DOCSTRING_PROSE = 10  # "module docstrings at most about 10 lines plus a usage line"


@pytest.mark.parametrize("path", [*sorted(VD.rglob("*.py")), *sorted((ROOT / "benchmarks").glob("*.py"))],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_module_docstrings_are_short(path):
    """At most DOCSTRING_PROSE lines of prose; indented blocks (usage, a folder tree) do not count. Longer
    explanations belong in docs/method.md (definitions) or docs/decisions.md (why), cited from the docstring."""
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    prose = [line for line in doc.splitlines() if line.strip() and not line.startswith("    ")]
    assert len(prose) <= DOCSTRING_PROSE, f"{path.relative_to(ROOT)}: {len(prose)} lines of prose in its docstring"


def test_the_code_passes_the_pinned_linter():
    """`make lint`: the ruff that pyproject's dev extra pins finds nothing in vd, tests, benchmarks, notebooks."""
    ruff = pytest.importorskip("ruff", reason="ruff comes with the dev extra (make setup)")
    from importlib.metadata import version

    pin = re.search(r'"ruff==([^"]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    assert version("ruff") == pin
    out = subprocess.run([ruff.find_ruff_bin(), "check", "vd", "tests", "benchmarks", "notebooks"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:]
