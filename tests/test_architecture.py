"""The package's shape: no import cycle of any kind, the layer contract, small rooms.

The import graph is grimp's (the engine of import-linter): it counts imports inside functions
and under ``TYPE_CHECKING`` too, so a loop cannot hide in a lazy import.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "loralab"
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the strongly connected components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_tarjan_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _strongly_connected(graph) == [["a", "b", "c"]]
    assert _strongly_connected({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_of_any_kind():
    grimp = pytest.importorskip("grimp")
    g = grimp.build_graph("loralab", exclude_type_checking_imports=False)
    graph = {m: set(g.find_modules_directly_imported_by(m)) for m in g.modules}
    assert _strongly_connected(graph) == []


def test_layer_contract_holds():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if lint is None:
        pytest.skip("import-linter is not installed (make test installs it)")
    root = SRC.parents[1]
    proc = subprocess.run([lint, "--config", str(root / "pyproject.toml")], cwd=root,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def test_small_rooms():
    """No source file over 400 lines, no function over 60 (data tables are not functions)."""
    too_long = []
    for path in sorted(SRC.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(SRC)
        if len(text.splitlines()) > MAX_FILE_LINES:
            too_long.append(f"{rel}: {len(text.splitlines())} lines")
        for fn in _functions(ast.parse(text)):
            n = fn.end_lineno - fn.lineno + 1
            if n > MAX_FUNCTION_LINES:
                too_long.append(f"{rel}:{fn.lineno} {fn.name}: {n} lines")
    assert too_long == []


def _contract() -> dict:
    import tomllib

    root = SRC.parents[1]
    config = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    return next(c for c in config["tool"]["importlinter"]["contracts"] if c["id"] == "layers")


def test_layer_contract_has_no_exemptions():
    """Every upward arrow is forbidden: the figures read types that live below them."""
    assert _contract().get("ignore_imports", []) == []


def _doc_layers() -> list[set[str]]:
    """The layers of docs/architecture.md's diagram, top first, each a set of names."""
    text = (SRC.parents[1] / "docs" / "architecture.md").read_text(encoding="utf-8")
    block = text.split("## The layers", 1)[1].split("```text", 1)[1].split("```", 1)[0]
    layers = []
    for line in block.strip("\n").splitlines():
        head = line.replace("└─", "").strip()
        if not head or not line.lstrip().startswith(("└─", "cli")):
            continue                                   # a wrapped description line
        names = head.split("  ")[0]
        layers.append({n.strip() for n in names.split("|")})
    return layers


def test_docs_state_the_contracts_layer_order():
    """One layer order: docs/architecture.md's diagram is pyproject.toml's contract."""
    contract = [{n.strip().removeprefix("loralab.") for n in layer.split("|")}
                for layer in _contract()["layers"]]
    assert _doc_layers() == contract
