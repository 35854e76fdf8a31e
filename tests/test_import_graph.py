"""The library's modules import each other without cycles, and never the application side."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("aimc", "device_models")
APPLICATION = ("hydra", "omegaconf", "experiments")  # never imported by the library
OPTIONAL = ("matplotlib", "sklearn", "tensorboard", "scipy", "yaml", "optuna", "ray")
# Lazy imports still closing a cycle, as (importer, imported) edges left out of the check until
# their registry lookup no longer needs them. Keep this list short; never add to it.
KNOWN_LAZY_EDGES: set[tuple[str, str]] = set()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, package: str) -> set[str]:
    """Every module named by an import in ``path`` (at any depth, lazy ones included), except
    those under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for b in node.body for n in ast.walk(b))
    names = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            names.add(mod)
            names.update(f"{mod}.{alias.name}" for alias in node.names)
    return names


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    graph = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = {m for m in _imports(path, package) if m in files and m != name}
        graph[name] = {m for m in found if (name, m) not in KNOWN_LAZY_EDGES}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle among the modules other than package ``__init__`` files (which
    re-export their children by design), or ``[]``."""
    inits = {n for n in graph if (ROOT / n.replace(".", "/") / "__init__.py").exists()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node] - inits):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(set(graph) - inits):
        if node not in state and (found := visit(node)):
            return found
    return []


def test_library_has_no_import_cycles():
    cycle = _cycle(_graph())
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_device_models_do_not_import_aimc_and_the_library_never_the_application():
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            name = _module_name(path)
            top = {m.split(".")[0] for m in _imports(path, name.rpartition(".")[0])}
            assert not top & set(APPLICATION), f"{name} imports {sorted(top & set(APPLICATION))}"
            if pkg == "device_models":
                assert "aimc" not in top, f"{name} imports aimc"


def test_importing_the_library_loads_no_optional_dependency():
    """``import aimc, device_models`` needs torch and numpy only; plotting, TensorBoard and
    scikit-learn load when a function that uses them runs."""
    code = (
        "import sys, aimc, device_models; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(sys.argv[1:])))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *OPTIONAL, *APPLICATION],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    assert out.stdout.strip() == "[]", out.stdout
