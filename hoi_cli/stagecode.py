"""Which code each stage runs, as digests: the guard that a stage's ``VERSION`` is bumped when its outputs change.

A stage's cache key holds its ``VERSION``, not its code (an edit to a comment must not rerun
every clip). The risk is the opposite: a change to a helper that alters a stage's outputs without
a ``VERSION`` bump, after which the cache serves stale results (this happened to 01_detect). So
the code each stage runs is digested here, and ``tests/stage_code.lock.json`` records, per stage,
the ``VERSION`` and the per-module digests it was last reviewed at. A test fails when a stage's
code differs from the lock while its ``VERSION`` is unchanged, naming the modules that changed;
the developer then either bumps ``VERSION`` (the outputs change) or rewrites the lock (they do
not: a refactor, a message), which is a decision recorded in the diff.

A stage's code = its module and every ``hoi_cli`` module it imports, transitively, including
imports inside functions (the stages import lazily), but not other stage modules: those are
imported for their loaders, and what they compute reaches this stage as data, whose digests
are already in its fingerprint. A module's digest is the SHA-256 of its
syntax tree without docstrings, so comments, docstrings and formatting do not count.

    python -m hoi_cli.stagecode                  # the table: stage, VERSION, modules, status
    python -m hoi_cli.stagecode --write LOCK     # record the current code as reviewed
"""

from __future__ import annotations

import ast
import hashlib
import json
import sys
from pathlib import Path

PACKAGE = "hoi_cli"
STAGES_PACKAGE = "hoi_cli.stages."


ROOT = Path(__file__).resolve().parent


def _source_path(module: str) -> Path | None:
    """The source file of a ``hoi_cli`` module, found on disk (nothing is imported); None if it is
    not a module (a name imported from one)."""
    parts = module.split(".")[1:]
    for cand in (ROOT.joinpath(*parts).with_suffix(".py") if parts else None, ROOT.joinpath(*parts, "__init__.py")):
        if cand is not None and cand.is_file():
            return cand
    return None


def _imports(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """``hoi_cli`` modules imported anywhere in ``tree`` (absolute or relative, at any depth)."""
    base = module.split(".") if is_package else module.split(".")[:-1]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == PACKAGE}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parent = base[:len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join(parent + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != PACKAGE:
                continue
            out.add(target)
            for a in node.names:  # `from . import x` / `from .pkg import sub` may name modules
                out.add(f"{target}.{a.name}")
    return out


def _is_docstring(node: ast.AST) -> bool:
    return isinstance(node, ast.Expr) and isinstance(getattr(node, "value", None), ast.Constant) \
        and isinstance(node.value.value, str)


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    """Without docstrings: the first string of a module, class or function, and in a class every bare
    string (the attribute docstrings under Params fields, `hoi_cli.params`)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            node.body = [n for n in node.body if not _is_docstring(n)] or [ast.Pass()]
        elif isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and _is_docstring(body[0]):
                node.body = body[1:] or [ast.Pass()]
    return tree


def _tree_digest(tree: ast.AST) -> str:
    return hashlib.sha256(ast.dump(_strip_docstrings(tree)).encode()).hexdigest()[:16]


def source_digest(text: str) -> str:
    """The digest of one module's source: its syntax tree without docstrings (comments and layout don't count)."""
    return _tree_digest(ast.parse(text))


def module_digests(root_module: str) -> dict[str, str]:
    """``{module: digest}`` for ``root_module`` and every ``hoi_cli`` module it imports, transitively."""
    seen: dict[str, str] = {}
    todo = [root_module]
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        path = _source_path(mod)
        if path is None:  # a name imported from a module (not a module itself)
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        # other stages are upstream data (their outputs' digests are in the fingerprint), not code
        # this stage runs: don't follow them (a stage imports them only for their loaders)
        todo.extend(m for m in _imports(tree, mod, path.name == "__init__.py") - set(seen)
                    if not (m.startswith(STAGES_PACKAGE) and m != root_module and m != STAGES_PACKAGE + "base"))
        seen[mod] = _tree_digest(tree)
    return dict(sorted(seen.items()))


def current() -> dict[str, dict]:
    """``{stage: {"version": VERSION, "modules": {module: digest}}}`` for every stage in the pipeline."""
    import importlib

    from .pipeline import STAGES

    out = {}
    for name, mod in STAGES.items():
        version = str(importlib.import_module(mod).VERSION)
        out[name] = {"version": version, "modules": module_digests(mod)}
    return out


def check(lock: dict, now: dict | None = None) -> list[str]:
    """Problems (one line each) between a lock and the current code; empty when they agree."""
    now = now or current()
    problems = []
    for stage, cur in now.items():
        old = lock.get(stage)
        if old is None:
            problems.append(f"{stage}: not in the lock (a new stage): record it with --write")
            continue
        changed = sorted(m for m in set(cur["modules"]) | set(old["modules"])
                         if cur["modules"].get(m) != old["modules"].get(m))
        if cur["version"] != old["version"]:
            problems.append(f"{stage}: VERSION {old['version']} -> {cur['version']}: record the new version with --write")
        elif changed:
            problems.append(f"{stage}: code changed at VERSION {cur['version']} ({', '.join(changed)}): bump its "
                            f"VERSION if its outputs change for the same inputs, else record the change with --write")
    return problems


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", type=Path, help="write the lock file (the current code, reviewed)")
    ap.add_argument("--lock", type=Path, default=Path(__file__).resolve().parents[1] / "tests" / "stage_code.lock.json")
    a = ap.parse_args(argv)
    now = current()
    if a.write:
        a.write.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n")
        print(f"wrote {a.write} ({len(now)} stages)", file=sys.stderr)
        return 0
    lock = json.loads(a.lock.read_text()) if a.lock.exists() else {}
    problems = {p.split(":")[0]: p for p in check(lock, now)}
    for stage, cur in now.items():
        print(f"{stage:14s} v{cur['version']:3s} {len(cur['modules']):3d} modules  "
              f"{'ok' if stage not in problems else problems[stage].split(': ', 1)[1]}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
