"""`hoi weights list` / `hoi weights get NAME...`: the model files the toolkit can use.

`list` shows each file's purpose, licence, official source, size, how a download is checked,
and where it was found. `get` downloads into the first weights folder (``--weights-dir``, else
``HOI_WEIGHTS_DIR``, else ``~/.cache/hoi/weights``) with a progress bar and resume, and moves a
file into place only after its checks pass. Nothing is downloaded by any other command.

Exit codes: 0 all present afterwards; 3 an unknown name; 4 a file still missing (a failed
download, or one that must be obtained by hand: its hint says how); 6 the folder is not writable.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from .common import Format, FormatOption, WeightsDirOption, batch_exit_code, err, error_json, fail

app = typer.Typer(help="Model files: list what the toolkit can use, download what you ask for.",
                  no_args_is_help=True, rich_markup_mode=None)


@app.callback()
def _main() -> None:
    """Model files: list them, download them."""


def _entries(names: list[str]):
    from ..errors import BadInputError
    from ..model_files import MODEL_FILES

    unknown = [n for n in names if n not in MODEL_FILES]
    if unknown:
        raise BadInputError(f"unknown model file {', '.join(unknown)}", f"known: {', '.join(MODEL_FILES)}")
    return [MODEL_FILES[n] for n in names]


def _size(mb: float) -> str:
    return f"~{mb / 1000:.1f} GB" if mb >= 1000 else f"~{mb:.0f} MB"


@app.command("list")
def list_command(
    weights_dir: WeightsDirOption = None,
    fmt: FormatOption = Format.text,
) -> None:
    """Every model file: purpose, licence, source, size, check, and where it was found."""
    from ..model_files import MODEL_FILES
    from ..weights import download_dir, locate, weights_dirs

    rows = []
    for m in MODEL_FILES.values():
        found = locate(m, weights_dir)
        rows.append({"name": m.key, "file": m.expected_name, "purpose": m.purpose, "licence": m.licence,
                     "source": m.source, "approx_mb": m.approx_mb, "sha256": m.sha256 or None,
                     "sha256_prefix": m.sha256_prefix or None, "check": m.check,
                     "get": "manual" if m.manual else ("huggingface_hub" if m.hf_repo else "download"),
                     "found": str(found) if found else None})
    if fmt == Format.json:
        print(json.dumps({"download_dir": str(download_dir(weights_dir)),
                          "search_path": [str(d) for d in weights_dirs(weights_dir)], "files": rows}, indent=1))
        return
    print(f"downloads go to {download_dir(weights_dir)}; `hoi weights get NAME` fetches one\n")
    for r in rows:
        found = r["found"] or ("missing (obtained by hand: `hoi weights get` says how)" if r["get"] == "manual"
                               else "missing")
        print(f"{r['name']}: {found}\n    {r['purpose']}\n    {r['source']}\n"
              f"    {r['licence']}; {_size(r['approx_mb'])}; check: {r['check']}")


@app.command("get")
def get_command(
    names: Annotated[list[str], typer.Argument(metavar="NAME", help="Names from `hoi weights list`.")],
    weights_dir: WeightsDirOption = None,
    fmt: FormatOption = Format.text,
) -> None:
    """Download model files into the first weights folder (resumable, checked before they are moved into place)."""
    from ..download import fetch
    from ..errors import HoiError, print_error

    try:
        entries = _entries(names)
    except HoiError as exc:
        fail(exc, fmt)
    results = []
    for entry in entries:
        try:
            with _progress_bar(entry.key, quiet=fmt == Format.json) as progress:
                path, action = fetch(entry, weights_dir, progress=progress)
            results.append({"name": entry.key, "ok": True, "action": action, "path": str(path)})
            if fmt != Format.json:
                print(f"{entry.key}: {action} {path}")
        except HoiError as exc:
            results.append({"name": entry.key, **error_json(exc)})
            print_error(exc, prefix=f"{entry.key}: ")
    code = batch_exit_code(results)
    if fmt == Format.json:
        print(json.dumps({"ok": not code, "files": results}, indent=1))
    if code:
        raise typer.Exit(code)


class _progress_bar:
    """A rich download bar on stderr (only on a terminal); yields the ``(done, total)`` callback."""

    def __init__(self, label: str, quiet: bool):
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

        self.progress = Progress(TextColumn(label), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                                 console=err, disable=quiet or not err.is_terminal, transient=True)
        self.task = None

    def __enter__(self):
        self.progress.__enter__()
        self.task = self.progress.add_task("", total=None)
        return lambda done, total: self.progress.update(self.task, completed=done, total=total)

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)
