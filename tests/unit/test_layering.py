"""No import circles, and imports only point down the layering (issue 26, item 2).

``LAYERS`` below is the one statement of the layering, lowest first; README's architecture
section repeats its chain (a test holds them equal):

    contract → verify/runtime → data → backends → stages → engine → cli → operator

A module may import modules of its own layer or of a lower one. Every module of
``trainer/polya_trainer`` and ``operator/polya_operator`` is parsed with ``ast`` (never
imported) and every import counts: module-level, function-local (lazy), under ``if``/``try``
alike. A lazy import is still a dependency: it only moves the circle from import time to call
time. ``EXEMPT`` would list an import left out, each with its reason; it is empty.

What the walk cannot see, and how it is handled:

* ``importlib.import_module``: ``DYNAMIC`` lists each dynamic import as the edges it makes,
  and a test fails when a module calls ``import_module`` without an entry there;
* the implicit import of parent packages (``import a.b.c`` first runs ``a/__init__`` and
  ``a/b/__init__``) is not an edge: a package's ``__init__`` is walked as a module of its own,
  and counting it would make every package whose ``__init__`` imports a submodule a circle.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"polya_trainer": ROOT / "trainer" / "polya_trainer",
            "polya_operator": ROOT / "operator" / "polya_operator"}

# Lowest first. ``name`` is the module itself; ``name.*`` is the package and its submodules.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("contract", ("polya_trainer", "polya_trainer.spec", "polya_trainer.crd")),
    ("verify/runtime", ("polya_trainer.verify.*", "polya_trainer.runtime.*")),
    ("data", ("polya_trainer.data.*",)),
    ("backends", ("polya_trainer.backends.*", "polya_trainer.toy")),
    ("stages", ("polya_trainer.stages.*", "polya_trainer.report.*", "polya_trainer.browse")),
    ("engine", ("polya_trainer.engine.*",)),
    ("cli", ("polya_trainer.cli", "polya_trainer.__main__")),
    ("operator", ("polya_operator.*",)),
)

# Imports the walk cannot see: importer -> the modules it loads with importlib.
DYNAMIC: dict[str, tuple[str, ...]] = {
    # run_stage loads the stage's module by name (stages.MODULES)
    "polya_trainer.stages": tuple(f"polya_trainer.stages.{m}"
                                  for m in ("generate", "midtrain", "rl", "evaluate")),
}

# (importer, imported) -> why this import is not counted. None today.
EXEMPT: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str
    where: str  # "path:line", or "dynamic"


# --------------------------------------------------------------------------- the walk


def module_files(packages: Mapping[str, Path] = PACKAGES) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the packages."""
    out: dict[str, Path] = {}
    for name, root in packages.items():
        for path in sorted(root.rglob("*.py")):
            parts = [name, *path.relative_to(root).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _ours(name: str, modules: Iterable[str]) -> str | None:
    """The longest prefix of ``name`` that is one of our modules (None: not ours)."""
    mods = set(modules)
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str, source: str, modules: Iterable[str], is_package: bool,
               path: str = "<source>") -> list[Edge]:
    """Every import in ``source`` (lazy ones too) that names one of ``modules``."""
    mods = set(modules)
    edges: list[Edge] = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the package of this module, up level - 1
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                prefix = ".".join([*base, *([node.module] if node.module else [])])
            else:
                prefix = node.module or ""
            # ``from pkg import sub`` imports the submodule; ``from mod import name`` the module
            names = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in mods else prefix
                     for a in node.names]
        for name in names:
            dst = _ours(name, mods)
            if dst is not None and dst != module:
                edges.append(Edge(module, dst, f"{path}:{node.lineno}"))
    return edges


def import_graph() -> list[Edge]:
    files = module_files()
    edges: list[Edge] = []
    for module, path in files.items():
        edges += imports_of(module, path.read_text(), files, path.name == "__init__.py",
                            str(path.relative_to(ROOT)))
    for src, dsts in DYNAMIC.items():
        edges += [Edge(src, dst, "dynamic (importlib)") for dst in dsts]
    return [e for e in edges if (e.src, e.dst) not in EXEMPT]


# --------------------------------------------------------------------------- the checks


def find_cycles(edges: Iterable[Edge]) -> list[tuple[list[str], list[Edge]]]:
    """Per strongly connected component: its modules, and one circle through them (the
    shortest from its first module, as a closed chain of edges)."""
    graph: dict[str, dict[str, Edge]] = {}
    for e in edges:
        graph.setdefault(e.src, {}).setdefault(e.dst, e)
        graph.setdefault(e.dst, {})
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def connect(v: str) -> None:  # Tarjan; the graph is a few dozen modules deep at most
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(comp)

    for v in sorted(graph):
        if v not in index:
            connect(v)
    cycles = []
    for comp in components:  # the shortest way round from the component's first module
        start = min(comp)
        came: dict[str, Edge] = {}
        frontier = [start]
        while frontier and start not in came:
            nxt = []
            for v in frontier:
                for w, e in sorted(graph[v].items()):
                    if w in comp and w not in came:
                        came[w] = e
                        nxt.append(w)
            frontier = nxt
        chain = [came[start]]
        while chain[0].src != start:
            chain.insert(0, came[chain[0].src])
        cycles.append((sorted(comp), chain))
    return sorted(cycles, key=lambda c: c[0])


def layer_of(module: str, layers: tuple[tuple[str, tuple[str, ...]], ...] = LAYERS) -> int | None:
    """Index of the layer whose most specific pattern names ``module`` (None: no layer)."""
    best: tuple[int, int] | None = None  # (pattern length, layer)
    for i, (_, patterns) in enumerate(layers):
        for pat in patterns:
            base = pat.removesuffix(".*")
            named = module == base or (pat.endswith(".*") and module.startswith(base + "."))
            if named and (best is None or len(base) > best[0]):
                best = (len(base), i)
    return None if best is None else best[1]


def upward(edges: Iterable[Edge],
           layers: tuple[tuple[str, tuple[str, ...]], ...] = LAYERS) -> list[str]:
    """A line per import that points up the layering."""
    out = []
    for e in edges:
        src, dst = layer_of(e.src, layers), layer_of(e.dst, layers)
        if src is not None and dst is not None and dst > src:
            out.append(f"{e.src} (layer {layers[src][0]}) imports {e.dst} "
                       f"(layer {layers[dst][0]}) at {e.where}")
    return sorted(set(out))


def describe(cycle: tuple[list[str], list[Edge]]) -> str:
    members, chain = cycle
    return (" -> ".join([*(e.src for e in chain), chain[0].src])
            + "".join(f"\n    {e.src} -> {e.dst} at {e.where}" for e in chain)
            + f"\n    (modules in this circle: {', '.join(members)})")


# --------------------------------------------------------------------------- the project


def test_every_module_has_a_layer() -> None:
    missing = [m for m in module_files() if layer_of(m) is None]
    assert not missing, f"modules in no layer (add them to LAYERS): {missing}"


def test_no_import_circles() -> None:
    cycles = find_cycles(import_graph())
    assert not cycles, "import circles:\n" + "\n".join(describe(c) for c in cycles)


def test_imports_point_down_the_layering() -> None:
    bad = upward(import_graph())
    order = " → ".join(name for name, _ in LAYERS)
    assert not bad, f"imports up the layering ({order}):\n" + "\n".join(bad)


def test_the_workspace_imports_only_the_contract() -> None:
    """runtime/workspace.py owns the run-directory layout for every layer above it."""
    bad = [e for e in import_graph()
           if e.src == "polya_trainer.runtime.workspace" and layer_of(e.dst) != 0]
    assert not bad, bad


def test_the_trainer_never_imports_the_operator() -> None:
    bad = [e for e in import_graph()
           if e.src.startswith("polya_trainer") and e.dst.startswith("polya_operator")]
    assert not bad, bad


def test_dynamic_imports_are_listed() -> None:
    calls = {m for m, path in module_files().items()
             if re.search(r"\bimport_module\(\s*f?[\"']polya_", path.read_text())}
    assert calls <= set(DYNAMIC), f"dynamic imports not in DYNAMIC: {sorted(calls - set(DYNAMIC))}"
    files = module_files()
    assert all(d in files for dsts in DYNAMIC.values() for d in dsts)


def test_exemptions_are_real_imports() -> None:
    files = module_files()
    edges = {(e.src, e.dst) for m, p in files.items()
             for e in imports_of(m, p.read_text(), files, p.name == "__init__.py")}
    assert set(EXEMPT) <= edges, f"stale exemptions: {sorted(set(EXEMPT) - edges)}"


def test_readme_states_the_same_layering() -> None:
    chain = " → ".join(name for name, _ in LAYERS)
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert chain in readme, f"README's architecture section should state: {chain}"


# --------------------------------------------------------------------------- the checker itself


MODS = {"p", "p.a", "p.b", "p.c", "p.sub", "p.sub.x"}


def test_walk_sees_lazy_relative_and_submodule_imports() -> None:
    src = """
import os
from p import a
from . import b
def f():
    from .sub import x
    import p.c as c
try:
    from p.sub import nothing_here
except ImportError:
    pass
"""
    got = {(e.dst, int(e.where.rsplit(":", 1)[1])) for e in imports_of("p.mod", src, MODS, False)}
    assert got == {("p.a", 3), ("p.b", 4), ("p.sub.x", 6), ("p.c", 7), ("p.sub", 9)}
    # in a package's __init__, "." is the package itself; ".." its parent
    pkg = imports_of("p.sub", "from . import x\nfrom .. import a\n", MODS, True)
    assert [e.dst for e in pkg] == ["p.sub.x", "p.a"]


def test_a_made_up_circle_is_found_and_named() -> None:
    edges = [Edge("p.a", "p.b", "a:1"), Edge("p.b", "p.c", "b:2"), Edge("p.c", "p.a", "c:3"),
             Edge("p.c", "p.sub", "c:4"), Edge("p.x", "p.y", "x:1"), Edge("p.y", "p.x", "y:9")]
    cycles = find_cycles(edges)
    assert [describe(c).splitlines()[0] for c in cycles] == ["p.a -> p.b -> p.c -> p.a",
                                                             "p.x -> p.y -> p.x"]
    assert cycles[0][0] == ["p.a", "p.b", "p.c"]
    assert "p.y -> p.x at y:9" in describe(cycles[1])
    assert find_cycles(edges[:2] + edges[3:5]) == []


def test_an_upward_import_is_found_and_named() -> None:
    layers = (("low", ("p.a", "p.sub.*")), ("high", ("p.*",)))
    assert layer_of("p.sub.x", layers) == 0 and layer_of("p.b", layers) == 1
    assert layer_of("q", layers) is None
    bad = upward([Edge("p.b", "p.a", "b:1"), Edge("p.sub.x", "p.b", "x:7"),
                  Edge("p.a", "p.sub", "a:2")], layers)
    assert bad == ["p.sub.x (layer low) imports p.b (layer high) at x:7"]


def test_the_project_graph_is_not_empty() -> None:
    """The walk finds the imports it should (so an empty graph cannot pass the checks)."""
    edges = {(e.src, e.dst) for e in import_graph()}
    assert ("polya_operator.handlers", "polya_trainer.engine.planner") in edges
    assert ("polya_trainer.engine.local", "polya_trainer.stages.entry") in edges  # lazy
    assert len(edges) > 100


@pytest.mark.parametrize(("module", "layer"), [
    ("polya_trainer.spec", "contract"), ("polya_trainer.runtime.checkpoints", "verify/runtime"),
    ("polya_trainer.runtime.workspace", "verify/runtime"),
    ("polya_trainer.stages.entry", "stages"), ("polya_operator.cli", "operator")])
def test_layer_of_project_modules(module: str, layer: str) -> None:
    assert LAYERS[layer_of(module)][0] == layer
