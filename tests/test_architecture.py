"""The module graph of ``src/mouse`` (read with ``ast``, every import, lazy ones included).

No cycle between modules, and packages import only from the layers below them (DESIGN.md's data
flow): leaf helpers → models / tasks → losses / rollout → data → eval → train → cli.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# Top-level part of ``mouse`` → its layer; a package may import only from strictly lower layers.
LAYERS = {
    "contract": 0,
    "device": 0,
    "checkpoint_io": 0,
    "hub": 1,
    "models": 2,
    "tasks": 2,
    "losses": 3,
    "rollout": 3,
    "data": 4,
    "eval": 5,
    "train": 6,
    "online": 7,
    "cli": 8,
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / "mouse").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The ``mouse`` modules ``name`` imports anywhere in its body (a ``from pkg import sub`` counts as
    ``pkg.sub`` when ``sub`` is a module, else as ``pkg``)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for a in node.names:
                found.add(f"{mod}.{a.name}" if f"{mod}.{a.name}" in modules else mod)
    return {m for m in found if m in modules and m != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_graph_is_read():
    graph = _graph()
    assert "mouse.rollout.engine" in graph["mouse.rollout.streams"] or graph["mouse.rollout.streams"]
    assert "mouse.models.loading" in graph["mouse.train.trainer"]  # a lazy import counts too


def test_no_import_cycles():
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_packages_import_only_lower_layers():
    wrong = []
    for module, imported in _graph().items():
        if module == "mouse":
            continue
        top = module.split(".")[1]
        assert top in LAYERS, f"{module}: give mouse.{top} a layer in LAYERS"
        for other in imported:
            if other == "mouse" or other.split(".")[1] == top:
                continue
            if LAYERS[other.split(".")[1]] >= LAYERS[top]:
                wrong.append(f"{module} -> {other}")
    assert wrong == []


def test_below_the_cli_nothing_takes_a_dictconfig():
    """Each CLI converts its composed config once; the library's public functions take typed
    dataclasses (a private helper may still walk an OmegaConf node it built itself)."""
    takers = []
    for name, path in _modules().items():
        if name.startswith("mouse.cli"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not node.name.startswith("_"):
                for arg in node.args.args + node.args.kwonlyargs:
                    if arg.annotation is not None and "DictConfig" in ast.unparse(arg.annotation):
                        takers.append(f"{name}.{node.name}({arg.arg})")
    assert takers == []
