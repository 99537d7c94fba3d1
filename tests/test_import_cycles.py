"""The library's import graph has no circles.

Every ``import`` and ``from ... import`` in every module counts, at module level or inside
a function: a function-level import hides a circle from the interpreter, not from a
reader. A circle is a strongly connected component of more than one module.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import genrec_lib

ROOT = Path(genrec_lib.__file__).resolve().parent


def _modules() -> dict[str, Path]:
    base = ROOT.parent
    modules = {}
    for path in ROOT.rglob("*.py"):
        name = ".".join(path.relative_to(base).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    return modules


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Modules of the package that ``name`` imports (a name resolves to its longest module prefix)."""
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            prefix = node.module or ""
            if node.level:
                package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                package = package[: len(package) - node.level + 1]
                prefix = ".".join(package + ([node.module] if node.module else []))
            candidates = [prefix] + [f"{prefix}.{alias.name}" for alias in node.names]
        else:
            continue
        for candidate in candidates:
            while candidate and candidate not in modules:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name:
                targets.add(candidate)
    return targets


def import_circles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    modules = _modules()
    graph = {name: sorted(_imports(name, path, modules)) for name, path in modules.items()}
    index, low, stack, on_stack, circles = {}, {}, [], set(), []
    for root in graph:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            if i < len(graph[node]):
                work.append((node, i + 1))
                child = graph[node][i]
                if child not in index:
                    work.append((child, 0))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    circles.append(sorted(component))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return circles


def test_the_package_has_no_import_circle():
    circles = import_circles()
    assert not circles, "import circles: " + "; ".join(" <-> ".join(c) for c in circles)


def test_the_check_finds_a_circle(tmp_path, monkeypatch):
    package = tmp_path / "genrec_lib"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from genrec_lib.b import g\n")
    (package / "b.py").write_text("from genrec_lib import a\n")
    (package / "c.py").write_text("import genrec_lib.a\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", package)
    assert import_circles() == [["genrec_lib.a", "genrec_lib.b"]]
