"""Count stage-folder literals outside their owning stage module (issue 15's figure).

A literal is a string constant in ``hoi_cli/`` that is exactly a stage folder name or a path
starting with one (``"01_detect"``, ``"01_detect/detections.npz"``), outside the module that
owns that stage (``"01_detect"`` in ``hoi_cli/stages/detect.py`` is not counted). Docstrings and
messages that merely mention a stage are not counted (they are not string constants equal to a
name). Usage: ``python bench/stage_literals.py [ROOT] [-v]`` (ROOT defaults to ``hoi_cli``).
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

OWNER = {"00_frames": "frames", "01_detect": "detect", "02_hands": "hands", "03_segment": "segment",
         "04_mlo": "mlo", "05_silhouette": "silhouette", "06_layout": "layout", "07_genhoi": "genhoi"}
LITERAL = re.compile(r"^(0[0-7]_(?:frames|detect|hands|segment|mlo|silhouette|layout|genhoi))(/\S*)?$")


def count(root: Path, verbose: bool = False) -> dict[str, int]:
    per_file: dict[str, int] = {}
    for path in sorted(root.rglob("*.py")):
        n = 0
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                m = LITERAL.match(node.value)
                if m and not (path.parent.name == "stages" and path.stem == OWNER[m.group(1)]):
                    n += 1
                    if verbose:
                        print(f"  {path}:{node.lineno} {node.value}")
        if n:
            per_file[str(path)] = n
    return per_file


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "-v"]
    counts = count(Path(args[0] if args else "hoi_cli"), verbose="-v" in sys.argv)
    for name, n in counts.items():
        print(f"{n:4d} {name}")
    print("total", sum(counts.values()))
