"""What every `hoi` command shares: the option types, the error printer, the batch exit rule.

One definition each, so that ``--format``, ``--device`` and ``--weights-dir`` read and behave
the same in every command, a known error prints the same two lines (and, with ``--format
json``, the same JSON object on stdout), and a batch (clips, generate rows, weight files)
ends with the same exit code for the same failures.
"""

from __future__ import annotations

import contextlib

import json
from enum import Enum
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from ..device import DEFAULT_DEVICE, DEVICE_HELP
from ..errors import ExitCode, HoiError, known_error, print_error

out = Console(soft_wrap=True)  # data
err = Console(stderr=True, soft_wrap=True)  # logs, progress (soft_wrap: a log line stays one line)


class Format(str, Enum):
    """What a command writes on stdout: a human table/lines, or one JSON document for scripts."""

    text = "text"
    json = "json"


FormatOption = Annotated[Format, typer.Option("--format", help="stdout: text, or json for scripts.")]
DeviceOption = Annotated[str, typer.Option("--device", help=DEVICE_HELP)]
WeightsDirOption = Annotated[str | None, typer.Option(
    "--weights-dir", envvar="HOI_WEIGHTS_DIR", help="Folder(s) of model weights (os.pathsep-separated).")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or log lines on stderr.")]
__all__ = ["DEFAULT_DEVICE", "DeviceOption", "Format", "FormatOption", "QuietOption", "WeightsDirOption",
           "batch_exit_code", "batch_summary", "err", "error_json", "fail", "out", "recipe_help"]


def error_json(exc: HoiError) -> dict:
    """The one JSON shape of a failed command (or of a failed row in a batch record)."""
    return {"ok": False, **exc.to_json()}


def fail(exc: BaseException, fmt: Format = Format.text) -> NoReturn:
    """Report a known error (ours, or a full disk) and exit with its code; re-raise anything else (a bug).

    ``error: ...`` and ``hint: ...`` go to stderr (`hoi_cli.errors.print_error`); with
    ``--format json`` stdout also gets `error_json`, so a script reading stdout sees why.
    """
    known = known_error(exc)
    if known is None:
        raise exc  # a bug: keep its traceback
    if fmt == Format.json:
        print(json.dumps(error_json(known)))
    print_error(known)
    raise typer.Exit(int(known.exit_code))


def batch_summary(records: list[dict], n_jobs: int) -> dict:
    """The counts every batch summary starts with; each record has ``ok`` (and ``exit_code`` when not ok)."""
    n_failed = sum(not r["ok"] for r in records)
    return {"ok": n_failed == 0, "n_ok": len(records) - n_failed,
            "n_failed": n_failed, "n_not_run": n_jobs - len(records)}


def batch_exit_code(records: list[dict]) -> int:
    """The exit code of a batch: 130 when interrupted; else the failures' code when they share one; else 1."""
    codes = {int(r.get("exit_code", ExitCode.FAILED)) for r in records if not r["ok"]}
    if ExitCode.INTERRUPTED in codes:
        return int(ExitCode.INTERRUPTED)
    if not codes:
        return int(ExitCode.OK)
    return codes.pop() if len(codes) == 1 else int(ExitCode.FAILED)


def recipe_help(what: str) -> str:
    """``--pipeline`` help naming the recipes the pipeline's lookup finds (``HOI_PIPELINES_DIR`` included)."""
    from ..pipeline import list_recipes

    try:
        names = ", ".join(list_recipes())
    except OSError:  # an unreadable HOI_PIPELINES_DIR must not break --help
        names = ""
    return f"{what}: {names or 'a recipe name'}; or a .toml path."


@contextlib.contextmanager
def sigterm_as_interrupt():
    """SIGTERM (SLURM's time limit, `kill`) stops a batch like Ctrl-C, so what it finished is written (its summary, the pairs scored)."""
    import signal

    def _raise(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, _raise)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
