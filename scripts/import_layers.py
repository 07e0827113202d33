"""Print the static import graph of plasticity/: its strongly connected components (import
circles), every import that points up DESIGN.md's layer table, and private names imported
from another module.

    python scripts/import_layers.py            # the report
    python scripts/import_layers.py --edges    # also every edge
    python scripts/import_layers.py --package ../other-checkout/plasticity   # another copy (a before)

Imports are read with `ast` (nothing is imported), at any depth (a function's late import
counts as much as a top-level one: it is still a dependency). `from . import x` counts as an
import of the submodule `x` when there is one. A submodule's implicit dependency on its
package's `__init__` (importing it runs that first) is checked against the layers but left out
of the circles (a package that imports its own submodules is no knot).
"""
from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "plasticity"

#: DESIGN.md "The layers": module (dotted, without the `plasticity.` prefix; a trailing `.*`
#: covers a package's modules) -> layer. The first matching entry wins.
LAYERS: list[tuple[str, int]] = [
    # 8 judge and present
    ("__init__", 8), ("verdicts", 8), ("verdicts.*", 8), ("frames", 8), ("report.*", 8), ("report", 8),
    ("cli", 8), ("testing", 8), ("api", 8), ("__main__", 8),
    # 7 schedule
    ("runner", 7), ("worker", 7), ("pool", 7), ("schedule", 7), ("executors", 7), ("executors.*", 7),
    ("search.space", 3), ("search", 7), ("search.*", 7),
    # 6 store
    ("results", 6), ("writer", 6), ("store", 6), ("store.*", 6), ("finished", 6), ("runfiles", 6),
    # 5 engine
    ("engine", 5), ("evaluate", 5),
    # 4 identity
    ("fingerprint", 4), ("sources", 4), ("identity", 4),
    # 3 spec (no torch)
    ("suite", 3), ("catalog", 3), ("suite_parse", 3), ("cells", 3), ("points", 3), ("execution", 3), ("claim_spec", 3),
    ("search_space", 3), ("spec", 3), ("spec.*", 3),
    # 2 model contract
    ("network", 2), ("models", 2), ("feedback", 2), ("rule", 2), ("task", 2), ("optimizers", 2),
    ("gofau", 2), ("metrics", 2),
    # 1 base
    ("errors", 1), ("params", 1), ("linalg", 1), ("losses", 1), ("registry", 1), ("data", 1), ("data.*", 1),
    ("claims", 1), ("provenance", 1), ("checks", 1), ("version", 1), ("toml_text", 1),
]


def layer_of(module: str) -> int | None:
    for pattern, layer in LAYERS:
        if pattern.endswith(".*"):
            if module.startswith(pattern[:-1]):
                return layer
        elif module == pattern:
            return layer
    return None


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    out = {}
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def resolve(current: str, is_pkg: bool, level: int, target: str | None) -> str:
    base = current.split(".") if current != "__init__" else []
    if not is_pkg:
        base = base[:-1]
    if level > 1:
        base = base[:len(base) - (level - 1)]
    return ".".join([*base, *(target.split(".") if target else [])])


def imports_torch(path: Path) -> bool:
    """Whether a file imports torch anywhere (at the top or inside a function)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "torch" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "torch":
            return True
    return False


def imports(mods: dict[str, Path]) -> tuple[dict[str, set[str]], list[tuple[str, str, str]]]:
    """{module: modules it imports} and [(importer, imported module, private name)]."""
    graph: dict[str, set[str]] = {m: set() for m in mods}
    private: list[tuple[str, str, str]] = []
    for mod, path in mods.items():
        is_pkg = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                if node.level == 0:
                    if not (node.module or "").startswith("plasticity"):
                        continue
                    target = node.module[len("plasticity."):] if node.module != "plasticity" else ""
                else:
                    target = resolve(mod, is_pkg, node.level, node.module)
                for alias in node.names:
                    sub = f"{target}.{alias.name}" if target else alias.name
                    if sub in mods:
                        graph[mod].add(sub)
                    elif target in mods or target == "":
                        dest = target or "__init__"
                        graph[mod].add(dest)
                        if alias.name.startswith("_") and not alias.name.startswith("__") and dest != mod:
                            private.append((mod, dest, alias.name))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("plasticity."):
                        name = alias.name[len("plasticity."):]
                        if name in mods:
                            graph[mod].add(name)
        graph[mod].discard(mod)
    return graph, private


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm; components of more than one module, largest first."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out, key=lambda c: (-len(c), c))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--edges", action="store_true", help="print every edge too")
    ap.add_argument("--package", type=Path, default=PACKAGE,
                    help="the package folder to read (default: this checkout's)")
    args = ap.parse_args()
    mods = modules(args.package)
    graph, private = imports(mods)
    unknown = sorted(m for m in mods if layer_of(m) is None)
    if args.edges:
        for m in sorted(graph):
            print(f"{m} -> {', '.join(sorted(graph[m])) or '-'}")
        print()
    comps = strongly_connected(graph)
    print(f"modules: {len(mods)}, imports: {sum(len(v) for v in graph.values())}")
    print(f"import circles (strongly connected components of more than one module): {len(comps)}")
    for comp in comps:
        print(f"  {len(comp)} modules: {', '.join(comp)}")
    parents = {m: {m.rsplit(".", 1)[0]} & set(mods) if "." in m else set() for m in mods}
    up = [(a, b) for a in sorted(graph) for b in sorted(graph[a] | parents[a])
          if layer_of(a) is not None and layer_of(b) is not None and layer_of(b) > layer_of(a)]
    print(f"imports pointing up the layer table: {len(up)}")
    for a, b in up:
        print(f"  {a} (layer {layer_of(a)}) -> {b} (layer {layer_of(b)})")
    print(f"private names imported from another module: {len(private)}")
    for a, b, name in sorted(set(private)):
        print(f"  {a} imports {b}.{name}")
    spec_torch = [m for m in sorted(mods) if layer_of(m) == 3 and imports_torch(mods[m])]
    print(f"spec-layer modules that import torch themselves: {len(spec_torch)}"
          + "".join(f"\n  {m}" for m in spec_torch))
    # ... or through the package modules they import (the package facade `__init__` left out)
    reach = {}
    for m in sorted(mods):
        if layer_of(m) != 3:
            continue
        seen, todo = set(), [m]
        while todo:
            for w in graph[todo.pop()] - seen - {"__init__"}:
                seen.add(w)
                todo.append(w)
        torchy = sorted(w for w in seen if imports_torch(mods[w]))
        if torchy:
            reach[m] = torchy
    print(f"spec-layer modules that reach torch through package imports: {len(reach)}"
          + "".join(f"\n  {m} (via {', '.join(t[:4])}{', ...' if len(t) > 4 else ''})" for m, t in reach.items()))
    if unknown:
        print(f"modules with no layer in scripts/import_layers.py: {', '.join(unknown)}")
    long = sorted(((sum(1 for _ in p.open(encoding='utf-8')), m) for m, p in mods.items()), reverse=True)
    over = [(n, m) for n, m in long if n > 500]
    print(f"modules over 500 lines: {len(over)}" + "".join(f"\n  {m} {n}" for n, m in over))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
