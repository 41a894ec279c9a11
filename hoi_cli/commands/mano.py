"""`hoi mano ...`: official MANO files without chumpy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .common import Format, FormatOption, fail

app = typer.Typer(help="Official MANO model files: convert to chumpy-free npz.", no_args_is_help=True,
                  rich_markup_mode=None)


@app.callback()
def _main() -> None:
    """Official MANO model files."""


@app.command()
def convert(
    src: Annotated[Path, typer.Argument(metavar="SRC", help="MANO_RIGHT.pkl / MANO_LEFT.pkl, or a folder holding them")],
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="output .npz (file input) or folder (folder input); default: beside the input")] = None,
    fmt: FormatOption = Format.text,
) -> None:
    """Write chumpy-free .npz copies of official MANO pickles (the left model's shapedirs fixed)."""
    try:
        results = _convert(Path(src), out)
    except Exception as exc:
        fail(exc, fmt)
    if fmt == Format.json:
        typer.echo(json.dumps(results, indent=1))
    else:
        for r in results:
            fix = " (left shapedirs fixed)" if r["left_shapedirs_fixed"] else ""
            typer.echo(f"{r['src']} -> {r['dst']}: {r['side']}, {r['vertices']} vertices{fix}")


def _convert(src: Path, out: Path | None) -> list[dict]:
    from ..errors import BadInputError
    from ..handmodel.mano_io import convert_mano_file

    if src.is_dir():
        files = [p for p in (src / "MANO_RIGHT.pkl", src / "MANO_LEFT.pkl") if p.exists()]
        if not files:
            raise BadInputError(f"no MANO_RIGHT.pkl or MANO_LEFT.pkl in {src}", "pass the MANO 'models' folder")
        out_dir = Path(out) if out else src
        jobs = [(p, out_dir / (p.stem + ".npz")) for p in files]
    else:
        jobs = [(src, Path(out) if out else src.with_suffix(".npz"))]
    results = []
    for s, d in jobs:
        right = s.with_name("MANO_RIGHT.pkl")
        results.append(convert_mano_file(s, d, right if right.exists() and right != s else None))
    return results
