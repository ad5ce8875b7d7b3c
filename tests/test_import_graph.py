"""The package's import graph, read with `ast`: no cycles among the steering modules, and `saekit.steer`
never reaches `saekit.sweep`.

Every `import` and `from ... import` counts, at module level, inside functions and under
`TYPE_CHECKING`: a lazy import hides a cycle from Python, not from the design. `from pkg import name`
is an edge to `pkg.name` when that is a module, else to `pkg` itself. The parent packages Python
initialises on the way are not edges (every module would otherwise "import" the `saekit` package).

Which packages are checked is `CHECKED`; the graph is built over the whole package, so a cycle that
leaves the checked packages and comes back is still found. Widen `CHECKED` to `("saekit",)` once the
other packages are free of cycles too.
"""

from __future__ import annotations

import ast
from collections import deque
from pathlib import Path

import saekit

CHECKED = ("saekit.steer", "saekit.sweep")
"""Packages whose modules may not take part in any import cycle."""
LAYERS = (("saekit.steer", "saekit.sweep"),)
"""(lower, upper): the lower package may never import the upper one, directly or through others."""


def _modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under the package root (packages by `__init__`)."""
    out = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _target(name: str, modules: dict[str, Path]) -> str | None:
    """The most specific known module `name` refers to (a package's `__init__` for a package)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the package modules it imports anywhere in its source."""
    modules = _modules(root)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for name in names:
                target = _target(name, modules)
                if target is not None and target != mod:
                    graph[mod].add(target)
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Components with more than one module (Tarjan, iterative: the graph has hundreds of modules)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def _path(graph: dict[str, set[str]], src: str, dst: str, within: set[str] | None = None) -> list[str] | None:
    """A shortest import chain src -> ... -> dst (through `within` only, when given)."""
    prev: dict[str, str | None] = {src: None}
    queue = deque([src])
    while queue:
        node = queue.popleft()
        for nxt in sorted(graph[node]):
            if nxt in prev or (within is not None and nxt not in within):
                continue
            prev[nxt] = node
            if nxt == dst:
                chain = [dst]
                while prev[chain[-1]] is not None:
                    chain.append(prev[chain[-1]])
                return chain[::-1]
            queue.append(nxt)
    return None


def cycle_of(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One concrete cycle through the component's first module, e.g. [a, b, a]."""
    first = component[0]
    back = min(
        (p for m in graph[first] if m in component for p in [_path(graph, m, first, set(component))] if p),
        key=len,
    )
    return [first, *back]


def _in(mod: str, packages: tuple[str, ...]) -> bool:
    return any(mod == p or mod.startswith(p + ".") for p in packages)


ROOT = Path(saekit.__file__).parent


def test_the_graph_sees_lazy_and_from_imports():
    """A sanity check of the parser on imports this codebase is known to make."""
    graph = import_graph(ROOT)
    assert "saekit.steer.methods" in graph["saekit.steer.concept.arms"]  # module-level `from`
    assert "saekit.steer.concept.judges" in graph["saekit.steer.concept.judging"]  # `from pkg import mod`
    assert "saekit.steer.image.flux" in graph["saekit.steer.image.run"]  # inside a function


def test_no_import_cycle_touches_the_checked_packages():
    graph = import_graph(ROOT)
    bad = [c for c in strongly_connected(graph) if any(_in(m, CHECKED) for m in c)]
    cycles = "\n".join(" -> ".join(cycle_of(graph, c)) for c in bad)
    assert not bad, f"import cycles (imports inside functions count):\n{cycles}"


def test_lower_layers_never_reach_upper_ones():
    graph = import_graph(ROOT)
    found = []
    for lower, upper in LAYERS:
        uppers = {m for m in graph if _in(m, (upper,))}
        for mod in sorted(m for m in graph if _in(m, (lower,))):
            for target in sorted(uppers):
                chain = _path(graph, mod, target)
                if chain:
                    found.append(" -> ".join(chain))
                    break
    assert not found, f"{LAYERS}: a lower package imports an upper one:\n" + "\n".join(found)


def test_the_cycle_finder_finds_and_prints_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    (comp,) = strongly_connected(graph)
    assert comp == ["a", "b", "c"] and cycle_of(graph, comp) == ["a", "b", "c", "a"]
