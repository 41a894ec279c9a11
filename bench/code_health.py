"""Structural health counts for a `hoi_cli` source tree (issue 15's before/after numbers).

    python bench/code_health.py hoi_cli                 # a summary table
    python bench/code_health.py /work/main/hoi_cli --format json --details

Counts, each computed from the source alone (nothing is imported):

- long_functions: functions (and methods) longer than 80 lines, decorators excluded.
- complex_functions: radon cyclomatic complexity over 10 (a class's methods are counted one by one).
- infunction_imports: `import hoi_cli...` / `from hoi_cli... import` / relative imports written
  inside a function body (they hide the real import graph).
- import cycles: strongly connected components of size > 1 in the graph of hoi_cli modules, once
  with every import (top-level and in-function) and once with top-level imports only (the cycles
  Python actually has to resolve at import time), and once more with modules collapsed to
  hoi_cli's first level (stages, render, store, ...: the layering view). Imports under
  `if TYPE_CHECKING:` are left out: annotations only, erased at run time. `from pkg import name` counts as an edge to
  `pkg.name` where that is a module, else to `pkg`; a package's `__init__` is its own node.
- stage_literals: stage-folder names (`00_frames` .. `07_genhoi`) written outside the stage module
  that owns them (stages/<name>.py owns `0N_<name>`): every occurrence, and those inside string
  constants that are not docstrings (the ones code uses to build paths).
- dead_symbols: undecorated module-level functions and classes (a decorator may register them)
  whose name occurs nowhere else in the tree, in
  the sibling `bench/` and `tests/` folders, or in the README (a word-level search, so a name
  that is merely mentioned elsewhere counts as used; private `_names` included).
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

LONG_FUNCTION_LINES = 80
COMPLEXITY_LIMIT = 10
STAGE_LITERAL = re.compile(r"\b0[0-7]_[a-z]+\b")


def module_name(path: Path, package_root: Path) -> str:
    parts = list(path.relative_to(package_root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def load_tree(package_root: Path) -> dict[str, tuple[Path, ast.Module, str]]:
    modules = {}
    for path in sorted(package_root.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        modules[module_name(path, package_root)] = (path, ast.parse(text, filename=str(path)), text)
    return modules


def iter_functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def long_functions(modules) -> list[dict]:
    found = []
    for name, (_, tree, _) in modules.items():
        for fn in iter_functions(tree):
            lines = fn.end_lineno - fn.lineno + 1
            if lines > LONG_FUNCTION_LINES:
                found.append({"where": f"{name}:{fn.lineno}", "function": fn.name, "lines": lines})
    return sorted(found, key=lambda f: -f["lines"])


def complex_functions(modules) -> list[dict]:
    from radon.complexity import cc_visit

    found = []
    for name, (_, _, text) in modules.items():
        for block in cc_visit(text):  # functions and methods, flat; classes are skipped
            if type(block).__name__ == "Function" and block.complexity > COMPLEXITY_LIMIT:
                found.append({"where": f"{name}:{block.lineno}", "function": block.fullname,
                              "complexity": block.complexity})
    return sorted(found, key=lambda f: -f["complexity"])


def resolve_import(node: ast.Import | ast.ImportFrom, current: str, is_package: bool,
                   known: set[str]) -> list[str]:
    """The hoi_cli modules an import statement reaches (empty for third-party imports)."""
    targets = []
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name.split(".")[0] == "hoi_cli":
                targets.append(alias.name)
    else:
        if node.level:
            base = current.split(".") if is_package else current.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
            if prefix.split(".")[0] != "hoi_cli":
                return []
        for alias in node.names:
            child = f"{prefix}.{alias.name}"
            targets.append(child if child in known else prefix)
    # an import of a.b.c that is not a module resolves to its nearest module ancestor
    resolved = []
    for target in targets:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target:
            resolved.append(target)
    return resolved


def import_edges(modules):
    """(top-level edges, in-function edges, list of in-function import sites)."""
    known = set(modules)
    top, inner, sites = defaultdict(set), defaultdict(set), []
    for name, (path, tree, _) in modules.items():
        is_package = path.name == "__init__.py"
        function_imports, type_only = set(), set()
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                type_only.update(id(n) for child in node.body for n in ast.walk(child))
        for fn in iter_functions(tree):
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    function_imports.add(id(node))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)) or id(node) in type_only:
                continue
            targets = [t for t in resolve_import(node, name, is_package, known) if t != name]
            is_hoi = bool(targets) or (isinstance(node, ast.ImportFrom) and node.level > 0) or (
                isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hoi_cli"))
            if id(node) in function_imports:
                if is_hoi:
                    sites.append({"where": f"{name}:{node.lineno}", "imports": sorted(set(targets))})
                inner[name].update(targets)
            else:
                top[name].update(targets)
    return top, inner, sites


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative); components of size > 1, largest first."""
    index, low, on_stack, stack, components = {}, {}, set(), [], []
    counter = 0
    nodes = set(graph) | {t for targets in graph.values() for t in targets}
    for root in sorted(nodes):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return sorted(components, key=lambda c: (-len(c), c))


def docstring_nodes(tree: ast.AST) -> set[int]:
    nodes = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                nodes.add(id(body[0].value))
    return nodes


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The module graph collapsed to hoi_cli's first level (hoi_cli.stages.* -> hoi_cli.stages)."""
    def node(module: str) -> str:
        return ".".join(module.split(".")[:2])

    collapsed = defaultdict(set)
    for source, targets in graph.items():
        collapsed[node(source)] |= {node(t) for t in targets if node(t) != node(source)}
    return collapsed


def stage_literals(modules, package_root: Path) -> tuple[list[dict], int]:
    """Every occurrence (comments and docstrings too), and how many sit in code strings."""
    found, in_code = [], 0
    for name, (path, tree, text) in modules.items():
        rel = path.relative_to(package_root).as_posix()

        def owned(literal: str, rel: str = rel) -> bool:
            return rel == f"stages/{literal[3:]}.py"

        for lineno, line in enumerate(text.splitlines(), 1):
            for match in STAGE_LITERAL.finditer(line):
                if not owned(match.group(0)):
                    found.append({"where": f"{name}:{lineno}", "literal": match.group(0)})
        docstrings = docstring_nodes(tree)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and id(node) not in docstrings):
                in_code += sum(not owned(m.group(0)) for m in STAGE_LITERAL.finditer(node.value))
    return found, in_code


def dead_symbols(modules, package_root: Path) -> list[dict]:
    project = package_root.parent
    texts = {str(path): text for path, _, text in modules.values()}
    for folder in ("bench", "tests"):
        for path in sorted((project / folder).rglob("*.py")) if (project / folder).is_dir() else []:
            texts[str(path)] = path.read_text(encoding="utf-8")
    for doc in ("README.md",):
        if (project / doc).is_file():
            texts[str(project / doc)] = (project / doc).read_text(encoding="utf-8")
    words = defaultdict(int)
    for text in texts.values():
        for word in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text):
            words[word] += 1
    found = []
    for name, (_, tree, _) in modules.items():
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                if node.name.startswith("__") or node.decorator_list:
                    continue  # dunders, and functions a decorator registers (typer commands)
                if words[node.name] <= 1:  # only its own definition
                    found.append({"where": f"{name}:{node.lineno}", "symbol": node.name})
    return found


def measure(package_root: Path) -> dict:
    modules = load_tree(package_root)
    top, inner, sites = import_edges(modules)
    every = defaultdict(set)
    for graph in (top, inner):
        for source, targets in graph.items():
            every[source] |= targets
    cycles_all = strongly_connected(every)
    cycles_top = strongly_connected(top)
    cycles_packages = strongly_connected(package_graph(every))
    literals, literals_in_code = stage_literals(modules, package_root)
    details = {
        "long_functions": long_functions(modules),
        "complex_functions": complex_functions(modules),
        "infunction_imports": sites,
        "import_cycles": cycles_all,
        "import_cycles_toplevel": cycles_top,
        "import_cycles_packages": cycles_packages,
        "stage_literals": literals,
        "dead_symbols": dead_symbols(modules, package_root),
    }
    counts = {
        "modules": len(modules),
        f"functions_over_{LONG_FUNCTION_LINES}_lines": len(details["long_functions"]),
        f"complexity_over_{COMPLEXITY_LIMIT}": len(details["complex_functions"]),
        "infunction_imports": len(sites),
        "import_cycles": len(cycles_all),
        "modules_in_cycles": sum(len(c) for c in cycles_all),
        "import_cycles_toplevel": len(cycles_top),
        "modules_in_toplevel_cycles": sum(len(c) for c in cycles_top),
        "package_import_cycles": len(cycles_packages),
        "stage_literals_outside_owner": len(literals),
        "stage_literals_in_code_strings": literals_in_code,
        "dead_symbols": len(details["dead_symbols"]),
    }
    return {"root": str(package_root), "counts": counts, "details": details}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default="hoi_cli", help="the hoi_cli package folder")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument("--details", action="store_true", help="list every finding")
    args = parser.parse_args(argv)
    root = Path(args.root).resolve()
    if not (root / "__init__.py").is_file():
        print(f"error: {root} is not a package folder (no __init__.py); hint: pass .../hoi_cli",
              file=sys.stderr)
        return 2
    result = measure(root)
    if args.format == "json":
        if not args.details:
            result.pop("details")
        print(json.dumps(result, indent=1))
        return 0
    for key, value in result["counts"].items():
        print(f"{key:32s} {value}")
    if args.details:
        for key, items in result["details"].items():
            print(f"\n## {key} ({len(items)})")
            for item in items:
                print("  " + (" ".join(item) if isinstance(item, list) else
                              "  ".join(str(v) for v in item.values())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
