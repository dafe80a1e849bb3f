"""The import structure of lamino (design.md, "The pipeline and the layout"), read from the source with ``ast``.

Every ``import`` and ``from … import …`` in every module under ``lamino/`` counts, at module level or inside a
function, except those under ``if TYPE_CHECKING:``. An import of ``lamino.a.b``, or ``from lamino.a import b``
where ``b`` is a submodule, is an edge to that module; ``from lamino.a import name`` is an edge to ``lamino.a``.
The implicit import of a module's parent packages is not an edge (a package's ``__init__`` importing its own
submodules is then no circle). Nothing is imported: the tests are pure ``ast`` and fast.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "lamino"

# design.md: studies → recon, simulate, phantoms, core; simulate → phantoms, core; recon → core; phantoms → core;
# the core (geometry, projector, materials, io and the small top-level helpers) imports none of the four
ALLOWED = {
    "core": {"core"},
    "phantoms": {"phantoms", "core"},
    "simulate": {"simulate", "phantoms", "core"},
    "recon": {"recon", "core"},
    "studies": {"studies", "recon", "simulate", "phantoms", "core"},
    "cli": {"cli", "studies", "recon", "simulate", "phantoms", "core"},
}


@dataclasses.dataclass(frozen=True)
class Import:
    """One imported module (``target``), and the name taken from it for ``from target import name``."""

    source: str       # importing module
    target: str       # imported lamino module
    name: str | None  # the name imported from ``target`` (None: the module itself)
    line: int


def module_files() -> dict[str, Path]:
    """Dotted module name → source file, for every module under ``lamino/``."""
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement below ``node``, skipping the bodies of ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:                 # the body runs only under a type checker
                yield from _import_nodes(ast.Module(body=[other], type_ignores=[]))
        else:
            yield from _import_nodes(child)


def _resolve(source: str, is_package: bool, node: ast.ImportFrom) -> str:
    """Absolute module name of ``from <module> import …`` in module ``source``."""
    if node.level == 0:
        return node.module or ""
    package = source.split(".") if is_package else source.split(".")[:-1]
    base = package[:len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


@functools.cache
def imports() -> tuple[Import, ...]:
    """Every import of a lamino module by a lamino module (parsed once per test session)."""
    files = module_files()
    out = []
    for source, path in files.items():
        is_package = path.name == "__init__.py"
        for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "lamino":
                        target = alias.name
                        while target not in files and "." in target:
                            target = target.rsplit(".", 1)[0]
                        out.append(Import(source, target, None, node.lineno))
                continue
            module = _resolve(source, is_package, node)
            if module.split(".")[0] != "lamino":
                continue
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                if sub in files:
                    out.append(Import(source, sub, None, node.lineno))
                else:
                    out.append(Import(source, module, alias.name, node.lineno))
    return tuple(out)


def report(found) -> str:
    """One line per import statement: ``source (line n) imports target[:name, name…]``."""
    lines: dict[tuple[str, int, str], list[str]] = {}
    for i in found:
        names = lines.setdefault((i.source, i.line, i.target), [])
        if i.name is not None:
            names.append(i.name)
    return "\n".join(f"    {source} (line {line}) imports {target}" + (f":{', '.join(names)}" if names else "")
                     for (source, line, target), names in lines.items())


def layer(module: str) -> str:
    """The pipeline stage of a module: core, phantoms, simulate, recon, studies or cli."""
    parts = module.split(".")
    if len(parts) == 1:
        return "core"                                # the lamino package itself: re-exports of the core
    if parts[1] in ("cli", "__main__"):
        return "cli"
    if parts[1] in ("phantoms", "simulate", "recon", "studies"):
        return parts[1]
    return "core"                                    # geometry, projector, materials, io, top-level helpers


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:                        # the graph is small: recursion is fine
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_graph_is_read():
    found = imports()
    sources = {i.source for i in found}
    assert {"lamino.recon.fbp", "lamino.studies.point", "lamino.cli"} <= sources
    assert any(i.source == "lamino.recon.fbp" and i.target == "lamino.geometry" for i in found)
    # the reader itself: relative imports, submodules named in ``from``, TYPE_CHECKING skipped
    tree = ast.parse("from . import b\nfrom .c import d\nif TYPE_CHECKING:\n    import lamino.x\n"
                     "else:\n    import lamino.z\ndef f():\n    import lamino.y\n")
    nodes = list(_import_nodes(tree))
    assert [getattr(n, "module", None) or n.names[0].name for n in nodes] == ["b", "c", "lamino.z", "lamino.y"]
    assert _resolve("lamino.recon", True, nodes[0]) == "lamino.recon"
    assert _resolve("lamino.recon.fbp", False, nodes[1]) == "lamino.recon.c"
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert [layer(m) for m in ("lamino", "lamino._checks", "lamino.io", "lamino.geometry.frame",
                                "lamino.phantoms.lego", "lamino.studies.metrics.image", "lamino.cli")] == [
        "core", "core", "core", "core", "phantoms", "studies", "cli"]


def test_no_import_circles():
    edges: dict[str, set[str]] = {}
    for i in imports():
        if i.target != i.source:
            edges.setdefault(i.source, set()).add(i.target)
    found = cycles(edges)
    lines = [" ↔ ".join(c) + ":\n" + report(i for i in imports() if i.source in c and i.target in c
                                              and i.source != i.target) for c in found]
    assert not found, "import circles in lamino:\n" + "\n".join(lines)


def test_imports_point_down_the_pipeline():
    bad = [i for i in imports() if layer(i.target) not in ALLOWED[layer(i.source)]]
    assert not bad, "imports against the pipeline of design.md (" + ", ".join(
        sorted({f"{layer(i.source)} → {layer(i.target)}" for i in bad})) + "):\n" + report(bad)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


@pytest.mark.parametrize("source, target, name, ok", [
    ("lamino.recon.calibrate", "lamino.projector._plan", None, False),
    ("lamino.recon.calibrate", "lamino.projector", "_plan_views", False),
    ("lamino.recon.fbp", "lamino.recon.filters", "_apply", True),
    ("lamino.studies.metrics.cracks", "lamino.studies.metrics.image", "_bool_mask", True),
    ("lamino.recon.fbp", "lamino._checks", "number", True),
    ("lamino.studies.report", "lamino", "__version__", True),
])
def test_privacy_rule(source, target, name, ok):
    assert (not _crosses_privacy(Import(source, target, name, 1))) == ok


def _subpackage(module: str) -> str:
    return ".".join(module.split(".")[:2])


def _crosses_privacy(i: Import) -> bool:
    """An underscore-named module or name of another subpackage (top-level modules such as lamino._checks are
    each their own subpackage, shared by all)."""
    if _subpackage(i.source) == _subpackage(i.target):
        return False
    below = i.target.split(".")[2:] + ([i.name] if i.name else [])
    return any(_private(p) for p in below)


def test_no_private_imports_across_subpackages():
    bad = [i for i in imports() if _crosses_privacy(i)]
    assert not bad, "underscore-named modules or names imported from another subpackage:\n" + report(bad)
