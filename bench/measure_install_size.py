"""What each extra of `hoi` pulls in, and its size on disk, from the installed environment.

For the base install and each extra, resolves the requirement closure from the installed
packages' metadata (markers evaluated here) and adds up the files each distribution
installed (its RECORD). An extra's figure is what it adds on top of the base install.

    python bench/measure_install_size.py            # table
    python bench/measure_install_size.py --json
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from importlib import metadata
from pathlib import Path

try:
    from packaging.requirements import Requirement
except ImportError:  # pip vendors it
    from pip._vendor.packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def dist_size(dist: metadata.Distribution) -> int:
    total = 0
    for f in dist.files or []:
        p = Path(dist.locate_file(f))
        if p.is_file():
            total += p.stat().st_size
    return total


def closure(requirements: list[str], project: dict) -> set[str]:
    """Installed distributions needed by ``requirements`` (hoi's own extras expanded from pyproject)."""
    seen: set[str] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        name = _norm(req.name)
        if name == "hoi":  # a self-reference: hoi[mesh] -> the mesh extra
            for extra in req.extras:
                todo += [Requirement(r) for r in project["optional-dependencies"][extra]]
            continue
        key = (name, tuple(sorted(req.extras)))
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            continue
        for r in dist.requires or []:
            sub = Requirement(r)
            envs = [{"extra": e} for e in req.extras] or [{"extra": ""}]
            if sub.marker is None or any(sub.marker.evaluate(env) for env in envs):
                todo.append(sub)
    return {n for n, _ in seen}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    sizes: dict[str, int] = {}

    def size(names):
        total = 0
        for n in names:
            if n not in sizes:
                try:
                    sizes[n] = dist_size(metadata.distribution(n))
                except metadata.PackageNotFoundError:
                    sizes[n] = 0
            total += sizes[n]
        return total

    base = closure(project["dependencies"], project)
    torch = closure(["torch"], project) - base  # torch and its CUDA libraries (nvidia-*, triton) on Linux
    rows = {"base": {"mb": round(size(base) / 1e6), "without_torch_mb": round(size(base) / 1e6),
                     "largest": _largest(base, size)}}
    for extra in project["optional-dependencies"]:
        names = closure([f"hoi[{extra}]"], project) - base
        rows[extra] = {"mb": round(size(names) / 1e6), "without_torch_mb": round(size(names - torch) / 1e6),
                       "largest": _largest(names - torch, size)}
    rows["torch"] = {"mb": round(size(torch) / 1e6), "without_torch_mb": 0, "largest": _largest(torch, size),
                     "torch_build": _torch_build()}
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"python {sys.version.split()[0]}; MB = 10^6 bytes on disk; extras: on top of the base install; "
          f"torch here: {rows['torch']['torch_build']}")
    print(f"{'':>11}  {'total':>8}  {'not torch':>9}  largest of the rest (MB)")
    for name, row in rows.items():
        top = ", ".join(f"{n} {mb}" for n, mb in row["largest"])
        print(f"{name:>11}: {row['mb']:>5} MB  {row['without_torch_mb']:>6} MB  {top}")


def _torch_build() -> str:
    try:
        import torch
    except ImportError:
        return "not installed"
    return f"{torch.__version__}, CUDA {torch.version.cuda}" if torch.version.cuda else f"{torch.__version__}, CPU-only"


def _largest(names, size, k: int = 4):
    ranked = sorted(((n, round(size([n]) / 1e6)) for n in names), key=lambda t: -t[1])
    return ranked[:k]


if __name__ == "__main__":
    main()
