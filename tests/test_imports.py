"""No import cycle in engine/ or server/: every import counts, at module level or inside a function."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"engine": "cllm.engine", "server": "cllm.server"}


def module_name(path: Path, folder: Path, package: str) -> str:
    """`cllm.engine.complete.generate` for engine/complete/generate.py, `cllm.engine` for engine/__init__.py."""
    parts = path.relative_to(folder).with_suffix("").parts
    return ".".join([package, *parts[:-1], *([] if parts[-1] == "__init__" else [parts[-1]])])


def import_graph(folders: dict[Path, str]) -> dict[str, set[str]]:
    """Module -> the modules of `folders` it imports anywhere in its source, resolved as Python does: `from .x
    import y` imports module x.y when there is one, else module x; the parent packages Python initialises first
    are not counted (they are set up before their modules run, so they close no cycle)."""
    sources = {module_name(path, folder, package): path
               for folder, package in folders.items() for path in sorted(folder.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in sources.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = package.rsplit(".", node.level - 1)[0] if node.level else ""
                module = ".".join(part for part in (base, node.module) if part)
                for alias in node.names:  # a submodule, else a name the module (or package) defines
                    submodule = f"{module}.{alias.name}"
                    targets.add(submodule if submodule in sources else module)
        graph[name] = {t for t in targets if t in sources and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, str] = {}  # "open" while on the search path, "done" after
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_engine_and_server_have_no_import_cycle():
    graph = import_graph({ROOT / folder: package for folder, package in PACKAGES.items()})
    assert "cllm.engine.complete.generate" in graph["cllm.engine.complete.serving"]  # the graph sees relative imports
    assert "cllm.engine" in graph["cllm.server.workspace"]  # and absolute ones
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_an_import_inside_a_function_closes_a_cycle(tmp_path):
    (tmp_path / "a.py").write_text("from . import b\n")
    (tmp_path / "b.py").write_text("def f():\n    from .a import g\n    return g\n")
    assert find_cycle(import_graph({tmp_path: "pkg"})) == ["pkg.a", "pkg.b", "pkg.a"]


def test_reading_the_config_does_not_load_numba():
    """cllm.engine imports its modules on first use: the CLI's flags and the settings read engine/config.py
    without paying for numba (a second at every start)."""
    code = ("import sys, cllm.engine.config, cllm.engine; "
            "print(sorted(m for m in sys.modules if m == 'numba' or m.startswith('cllm.engine.')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "['cllm.engine.config']"


def test_the_engine_facade_keeps_its_functions_over_their_subpackages():
    from cllm.engine.train import loop  # the subpackage first: its import sets it on cllm.engine
    from cllm.engine import train  # noqa: I001

    assert train is loop.train
