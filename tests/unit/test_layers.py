"""The package's layering, read from the source: no import cycle between modules, and no module
imports from a layer above its own (lazy imports inside functions included)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "irlalign"

# Lower number = lower layer. A module may import from its own layer or below.
LAYERS = {
    "losses": 0,
    "config": 0,
    "runs": 0,
    "guard": 0,
    "errors": 0,
    "paths": 0,
    "integrity": 0,
    "trackers": 0,  # where tracker files go in a run folder
    "data": 1,
    "modeling": 1,
    "generation": 1,
    "eval": 1,
    "synthetic": 1,
    "frft": 1,
    "extract": 1,
    "report": 1,
    "cards": 1,  # model cards and the Hub upload of a final checkpoint
    "trainers": 2,
    "loops": 2,
    "pipelines": 3,
    "preflight": 3,  # checks a resolved config against loops' and models' rules
    "methods": 4,
    "integrations": 4,  # wraps other libraries' trainers around reward models
    "api": 5,  # the one-call Python API over methods.train
    "demo": 5,
    "cli": 6,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in SRC.rglob("*.py")}


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The irlalign modules ``path`` imports, anywhere in the file."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from pkg import submodule` imports the submodule; `from mod import name` the module
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name.startswith("irlalign.") or name == "irlalign":
                out.add(name)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {m: _imports(p, modules) - {m} for m, p in modules.items()}


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def test_every_module_belongs_to_a_layer():
    unknown = sorted(m for m in _modules() if m != "irlalign" and _layer(m) is None)
    assert not unknown, f"modules outside the layer table: {unknown}"


def test_no_module_imports_from_a_higher_layer():
    bad = []
    for module, deps in _graph().items():
        for dep in deps:
            if dep != "irlalign" and _layer(dep) > _layer(module):
                bad.append(f"{module} -> {dep}")
    assert not bad, bad


def test_no_import_cycle():
    graph, state, cycles = _graph(), {}, []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == "open":
                cycles.append(" -> ".join(stack[stack.index(dep) :] + [dep]))
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, cycles


def test_the_layer_check_sees_lazy_imports(tmp_path):
    """The parser counts an import inside a function body (the way cycles used to hide)."""
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from irlalign.methods import train\n")
    assert _imports(source, _modules()) == {"irlalign.methods"}
